"""Neuron dynamics against closed-form solutions and against snnTorch's own neurons."""

import math

import pytest
import snntorch as snn
import torch

from neurolearn.errors import ConfigError
from neurolearn.neurons import (
    LIFParams,
    LIFState,
    LIParams,
    RateParams,
    activation,
    activation_derivative,
    neuron_from_config,
)


def run_lif(p: LIFParams, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and post-reset membrane over time for an input current [T, N]."""
    state = p.init_state(current.shape[1:])
    spikes, mems = [], []
    for t in range(current.shape[0]):
        s, state = p.step(current[t], state)
        spikes.append(s)
        mems.append(state.v)
    return torch.stack(spikes), torch.stack(mems)


def test_lif_spike_times_match_the_discrete_closed_form():
    # v[n] = I (1 - beta^n) / (1 - beta) from rest; reset to 0 restarts the same trajectory,
    # so the neuron fires every n* steps with n* = ceil(log(1 - theta (1 - beta) / I) / log beta).
    p = LIFParams(tau_mem=10e-3, dt=1e-3, threshold=1.0, reset="value", v_reset=0.0)
    for drive in (0.15, 0.3, 0.7):
        n_star = math.ceil(math.log(1 - p.threshold * (1 - p.beta) / drive) / math.log(p.beta))
        spikes, _ = run_lif(p, torch.full((100, 1), drive))
        times = torch.nonzero(spikes[:, 0]).flatten() + 1  # 1-based step index
        expected = torch.arange(n_star, 101, n_star)
        assert torch.equal(times, expected), (drive, times, expected)


def test_lif_converges_to_the_continuous_time_solution():
    # tau dv/dt = -v + r I with constant current: first spike at t* = tau ln(rI / (rI - theta)).
    tau, r_i, theta = 20e-3, 1.5, 1.0
    t_star = tau * math.log(r_i / (r_i - theta))
    for dt, tol in ((1e-3, 2e-3), (1e-5, 3e-5)):
        p = LIFParams(tau_mem=tau, dt=dt, threshold=theta, reset="value", r=1.0)
        steps = int(2 * t_star / dt)
        spikes, _ = run_lif(p, torch.full((steps, 1), r_i))
        first = (torch.nonzero(spikes[:, 0])[0].item() + 1) * dt
        assert abs(first - t_star) < tol, (dt, first, t_star)


def test_reset_by_subtraction_keeps_the_overshoot():
    p = LIFParams(tau_mem=1e-3, dt=1e-3, threshold=1.0, reset="subtract")  # beta = 0: v = I
    spikes, v = run_lif(p, torch.tensor([[1.7], [0.2]]))
    assert spikes[:, 0].tolist() == [1.0, 0.0]
    assert v[0, 0].item() == pytest.approx(0.7)


def test_subthreshold_lif_matches_the_leaky_integrator():
    p = LIFParams(tau_mem=15e-3, dt=1e-3, threshold=100.0)
    li = LIParams(tau=15e-3, dt=1e-3)
    x = torch.rand(30, 4)
    _, v = run_lif(p, x)
    state = li.init_state((4,))
    for t in range(30):
        vi, state = li.step(x[t], state)
        assert torch.allclose(vi, v[t])


@pytest.mark.parametrize("reset,snn_reset", [("subtract", "subtract"), ("value", "zero")])
def test_lif_equals_a_hand_written_snntorch_loop(reset, snn_reset):
    torch.manual_seed(0)
    p = LIFParams(tau_mem=20e-3, dt=1e-3, threshold=1.0, reset=reset, v_reset=0.0)
    lif = snn.Leaky(beta=p.beta, threshold=1.0, reset_mechanism=snn_reset, reset_delay=False)
    x = torch.rand(50, 8, 16) * 0.4
    mem = torch.zeros(8, 16)
    ours, _ = run_lif(p, x)
    theirs = []
    for t in range(50):
        spk, mem = lif(x[t], mem)
        theirs.append(spk)
    theirs = torch.stack(theirs)
    assert ours.sum() > 50  # the test input makes the neurons fire
    assert torch.equal(ours, theirs)


def test_current_based_lif_equals_snntorch_synaptic():
    torch.manual_seed(1)
    p = LIFParams(tau_mem=20e-3, tau_syn=5e-3, dt=1e-3, threshold=1.0, reset="subtract")
    syn_neuron = snn.Synaptic(alpha=p.alpha, beta=p.beta, threshold=1.0, reset_mechanism="subtract",
                              reset_delay=False)
    x = torch.rand(60, 4, 10) * 0.3
    ours, _ = run_lif(p, x)
    syn, mem = torch.zeros(4, 10), torch.zeros(4, 10)
    theirs = []
    for t in range(60):
        spk, syn, mem = syn_neuron(x[t], syn, mem)
        theirs.append(spk)
    theirs = torch.stack(theirs)
    assert ours.sum() > 20
    assert torch.equal(ours, theirs)


def test_surrogate_gradient_flows_through_spikes():
    p = LIFParams()
    x = torch.full((3,), 0.9, requires_grad=True)
    s, _ = p.step(x, LIFState(torch.full((3,), 0.5), None))
    s.sum().backward()
    assert (x.grad > 0).all()


def test_rate_units_and_derivatives():
    z = torch.linspace(-3, 3, 61, dtype=torch.float64, requires_grad=True)
    for name in ("identity", "tanh", "relu", "leaky_relu", "sigmoid"):
        (g,) = torch.autograd.grad(activation(name, z).sum(), z)
        assert torch.allclose(activation_derivative(name, z.detach()), g), name
    p = RateParams("tanh", tau=4e-3, dt=1e-3)
    state = p.init_state((2,))
    for _ in range(200):
        h, state = p.step(torch.full((2,), 0.5), state)
    assert torch.allclose(state.v, torch.full((2,), 0.5), atol=1e-6)  # leaky integrator: steady state v = z


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tau_mem=-1e-3), "positive"),
        (dict(tau_mem=0.0), "positive"),
        (dict(tau_mem=1e-3, dt=2e-3), "larger than"),
        (dict(threshold=0.0, v_reset=0.0), "above v_reset"),
        (dict(reset="zero"), "unknown reset"),
        (dict(tau_syn=-5e-3), "positive"),
    ],
)
def test_invalid_lif_parameters_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LIFParams(**kwargs)


def test_neuron_config_errors():
    with pytest.raises(ConfigError, match="unknown activation"):
        RateParams("softplus")
    with pytest.raises(ConfigError, match="unknown neuron model 'izhikevic'.*did you mean 'izhikevich'"):
        neuron_from_config({"model": "izhikevic"}, 1e-3)
    with pytest.raises(ConfigError, match="unknown key 'tau'.*did you mean 'tau_"):
        neuron_from_config({"model": "lif", "tau": 1e-3}, 1e-3)
    with pytest.raises(ConfigError, match="threshold must be a number"):
        neuron_from_config({"model": "lif", "threshold": True}, 1e-3)
    assert isinstance(neuron_from_config("tanh", 1e-3), RateParams)
    assert neuron_from_config({"model": "cuba_lif"}, 1e-3).current_based


# ------------------------------------------------------------------ the new models (PLASTICITY.md section 1)
from neurolearn.neurons import AdExParams, ALIFParams, IzhikevichParams, NotTranslatable  # noqa: E402


def run_model(p, current: torch.Tensor) -> tuple[torch.Tensor, list]:
    state = p.init_state(current.shape[1:], dtype=current.dtype)
    spikes, states = [], []
    for t in range(current.shape[0]):
        s, state = p.step(current[t], state)
        spikes.append(s)
        states.append(state)
    return torch.stack(spikes), states


def spike_steps(spikes: torch.Tensor) -> list[int]:
    return torch.nonzero(spikes.flatten()).flatten().tolist()


def test_alif_without_adaptation_is_lif():
    x = torch.rand(80, 6) * 0.4
    lif, _ = run_lif(LIFParams(tau_mem=20e-3, threshold=0.8), x)
    alif, _ = run_model(ALIFParams(tau_mem=20e-3, threshold=0.8, adapt_scale=0.0), x)
    assert lif.sum() > 10 and torch.equal(lif, alif)


def test_alif_threshold_follows_the_euler_recursion():
    # a[t] = rho a[t-1] + z[t]; A[t] = theta0 + adapt_scale a[t-1]: check against a hand-written loop
    p = ALIFParams(tau_mem=10e-3, tau_adapt=50e-3, adapt_scale=0.5, threshold=1.0)
    x = torch.full((120, 1), 0.25, dtype=torch.float64)
    spikes, states = run_model(p, x)
    v, a, expected = 0.0, 0.0, []
    for t in range(120):
        v = p.beta * v + 0.25
        z = float(v > 1.0 + 0.5 * a)
        v -= z * 1.0
        a = p.rho * a + z
        expected.append(z)
        assert states[t].a.item() == pytest.approx(a, abs=1e-12)
    assert spikes.flatten().tolist() == expected
    isi = [b - a for a, b in zip(spike_steps(spikes), spike_steps(spikes)[1:])]
    assert len(isi) >= 3 and isi[-1] > isi[0]  # adaptation lengthens the intervals


def test_alif_refractory_period_silences_n_ref_minus_1_steps():
    p = ALIFParams(tau_mem=2e-3, threshold=1.0, adapt_scale=0.0, refractory=3e-3)
    spikes, _ = run_model(p, torch.full((12, 1), 5.0))
    assert spike_steps(spikes) == [0, 3, 6, 9]


def izhikevich_isis(regime: str, current: float = 10.0, ms: int = 500) -> list[float]:
    p = IzhikevichParams(regime=regime, dt=0.25e-3)
    steps = int(ms * 1e-3 / p.dt)
    spikes, _ = run_model(p, torch.full((steps, 1), current * p.h, dtype=torch.float64))
    times = [t * p.dt * 1e3 for t in spike_steps(spikes)]
    return [b - a for a, b in zip(times, times[1:])]


def test_izhikevich_regimes_fire_as_in_the_2003_figure():
    rs, fs, ch = izhikevich_isis("RS"), izhikevich_isis("FS"), izhikevich_isis("CH")
    assert len(fs) > len(rs) > 3  # fast spiking fires faster than regular spiking
    assert rs[-1] > 1.5 * rs[0]  # regular spiking adapts
    assert max(fs[5:]) <= 1.1 * min(fs[5:]) and rs[-1] / rs[0] > fs[-1] / fs[0]  # FS: little adaptation
    assert min(ch) < 8.0 and max(ch) > 3 * min(ch)  # chattering: bursts of close spikes, then a pause


def test_adex_regular_spiking_adapts_and_keeps_v_t_apart_from_v_peak():
    p = AdExParams()  # the paper's set, 1 nA
    assert p.V_peak == pytest.approx(p.V_T + 5 * p.Delta_T) and p.tau_m == pytest.approx(281 / 30 * 1e-3)
    steps = int(0.3 / p.dt)
    x = torch.full((steps, 1), 1e-9 * p.dt / p.C, dtype=torch.float64)  # I dt / C per step
    spikes, states = run_model(p, x)
    isi = [b - a for a, b in zip(spike_steps(spikes), spike_steps(spikes)[1:])]
    assert len(isi) >= 4 and isi[-1] > 1.5 * isi[0]
    assert max(float(s.v) for s in states) <= p.V_peak  # the reset happens in the step that crosses V_peak
    assert torch.isfinite(torch.stack([s.mem for s in states])).all()


@pytest.mark.parametrize("make", [lambda: ALIFParams(), lambda: IzhikevichParams(), lambda: AdExParams()])
def test_new_models_pass_surrogate_gradients(make):
    p = make()
    scale = {"alif": 1.0, "izhikevich": 40.0, "adex": 0.05}[p.model]
    x = (torch.ones(60, 3, dtype=torch.float64) * scale).requires_grad_(True)
    spikes, _ = run_model(p, x)
    spikes.sum().backward()
    assert spikes.sum() > 0 and x.grad.abs().sum() > 0


def test_new_models_refuse_nir_and_snntorch_with_what_is_missing():
    import nir
    import snntorch

    for p in (ALIFParams(), IzhikevichParams(), AdExParams()):
        with pytest.raises(NotTranslatable, match="NIR has no node"):
            p.to_nir(nir, 4, 1.0, 0)
        with pytest.raises(NotTranslatable, match="snnTorch has no"):
            p.to_snntorch(snntorch, 0, False, 4)


@pytest.mark.parametrize("cfg,match", [
    ({"model": "alif", "tau_adapt": -1.0}, "tau_adapt must be a positive"),
    ({"model": "alif", "adapt_scal": 0.1}, "did you mean 'adapt_scale'"),
    ({"model": "alif", "refractory": True}, "refractory must be a number"),
    ({"model": "izhikevich", "regime": "XX"}, "unknown Izhikevich regime"),
    ({"model": "izhikevich", "dt": 2e-3}, "overshoots"),
    ({"model": "izhikevich", "c": 40.0}, "below the peak"),
    ({"model": "adex", "dt": 1e-1}, "larger than tau_m"),
    ({"model": "adex", "V_r": 0.0}, "below V_peak"),
])
def test_new_model_config_errors(cfg, match):
    with pytest.raises(ConfigError, match=match):
        neuron_from_config(cfg, 1e-4)


def test_new_models_from_config():
    p = neuron_from_config({"model": "izhikevich", "regime": "FS", "d": 3.0}, 0.5e-3)
    assert (p.a, p.b, p.c, p.d, p.dt) == (0.1, 0.2, -65.0, 3.0, 0.5e-3)
    assert neuron_from_config("alif", 1e-3).tau_adapt == 0.2
    assert neuron_from_config({"model": "adex"}, 1e-4).dt == 1e-4


@pytest.mark.parametrize("rule", ["bp", "drtp", "anp", "np", "dfa"])
@pytest.mark.parametrize("model", ["alif", "izhikevich", "adex"])
def test_new_models_train_with_bptt_and_the_local_rules(model, rule):
    """Every rule that makes sense for a spiking hidden layer runs on each new model and moves it."""
    from neurolearn import Dense, Network
    from neurolearn.objectives import Objective
    from neurolearn.rules import make_rule

    neuron, gain, steps = {"alif": (ALIFParams(tau_adapt=0.05, adapt_scale=0.2), 1.0, 12),
                           "izhikevich": (IzhikevichParams(dt=0.5e-3), 30.0, 40),
                           "adex": (AdExParams(dt=0.1e-3), 0.05, 60)}[model]
    torch.manual_seed(0)
    net = Network([Dense(8, 16, neuron), Dense(16, 3, LIParams(tau=5e-3, dt=neuron.dt))], decode="mean",
                  dt=neuron.dt)
    with torch.no_grad():
        net.layers[0].weight.abs_().mul_(gain)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(steps, 16, 8, generator=g) < 0.5).float()
    y = torch.randint(0, 3, (16,), generator=g)
    objective = Objective("classification")
    params = {"anp": {"sigma": [gain * 0.5, 0.0], "activity": ["pre", "mem"]}, "np": {"sigma": gain * 0.5}}
    r = make_rule(rule, **params.get(rule, {}))
    r.setup(net, objective, torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2 * gain)
    before = net.layers[0].weight.detach().clone()
    assert net.run(x).layers[0].act.sum() > 0  # the hidden layer fires
    for _ in range(3):
        out = r.train_step(net, x, y, objective, opt)
        assert torch.isfinite(out.loss).all()
    assert not torch.equal(net.layers[0].weight, before)
