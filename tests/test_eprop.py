"""e-prop (neurolearn.rules.eprop): equality with BPTT where the factorisation is exact, online =
truncated autograd, random feedback, regularisation, frozen parameters, refusals, and the tasks."""

from __future__ import annotations

import pytest
import torch

from neurolearn.errors import ConfigError
from neurolearn.layers import Dense, LayerState
from neurolearn.network import Network
from neurolearn.neurons import ALIFParams, LIFParams, LIParams, RateParams
from neurolearn.objectives import Objective
from neurolearn.rules import RULES, make_rule
from neurolearn.rules.eprop import EProp
from neurolearn.rules.eprop_traces import pseudo_spike

pytestmark = pytest.mark.usefixtures("one_thread")

GAMMA, THETA = 0.3, 0.62


def make_net(kind: str, *, rec_zero: bool = False, decode: str = "all", window: int | None = None,
             n_in: int = 3, n_rec: int = 8, n_out: int = 2, seed: int = 0) -> Network:
    """PLASTICITY.md §2.10's test network (float64): 3 inputs, 8 LIF or ALIF (τ_m 20 ms, θ0 0.62, τ_a 500 ms,
    β_a 0.07, n_ref 2), leaky readout τ 20 ms; BPTT uses e-prop's pseudo-derivative."""
    torch.manual_seed(seed)
    if kind == "alif":
        neuron = ALIFParams(tau_mem=20e-3, threshold=THETA, tau_adapt=500e-3, adapt_scale=0.07, refractory=2e-3)
    else:
        neuron = LIFParams(tau_mem=20e-3, threshold=THETA)
    hidden = Dense(n_in, n_rec, neuron, recurrent=True, init="normal", init_gain=12.0, recurrent_init="normal",
                   recurrent_gain=4.0)
    readout = Dense(n_rec, n_out, LIParams(tau=20e-3), init="normal", init_gain=10.0)
    net = Network([hidden, readout], decode=decode, decode_window=window).double()
    if rec_zero:
        with torch.no_grad():
            hidden.recurrent_weight.zero_()
    hidden._spike_fn = pseudo_spike(GAMMA, THETA)
    return net


def data(task: str, T: int = 50, B: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, 3, generator=g, dtype=torch.float64) < 0.1).double()  # 100 Hz Poisson
    if task == "classification":
        return x, torch.randint(0, 2, (B,), generator=g), Objective("classification")
    return x, torch.randn(T, B, 2, generator=g, dtype=torch.float64), Objective("sequence_regression")


def autograd_grads(net: Network, x, y, objective, *, cut_recurrence: bool = False) -> dict[str, torch.Tensor]:
    """BPTT (``cut_recurrence``: with the recurrent spikes detached, the reset is detached by the neuron)."""
    net.zero_grad(set_to_none=True)
    state = net.init_state(x.shape[1])
    outs = []
    for t in range(x.shape[0]):
        out, state, _ = net.step(x[t], state)
        if cut_recurrence:
            state = [LayerState(state[0].neuron, state[0].prev.detach()), state[1]]
        outs.append(out)
    objective.loss(net.decode_output(torch.stack(outs)), y).mean().backward()
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def eprop_grads(net: Network, x, y, objective, **params) -> dict[str, torch.Tensor]:
    net.zero_grad(set_to_none=True)
    EProp(feedback="symmetric", autapses=True, **params).estimate_gradients(net, x, y, objective)
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def max_rel_err(a: dict, b: dict) -> float:
    return max(float((a[n] - b[n]).abs().max() / a[n].abs().max()) for n in a)


def spikes_happen(net, x) -> None:
    rec = net.run(x)
    assert 0.01 < float(rec.layers[0].act.detach().mean()) < 0.5  # a test on a silent network would prove nothing


@pytest.mark.parametrize("kind", ["lif", "alif"])
@pytest.mark.parametrize("task", ["sequence_regression", "classification"])
def test_eprop_equals_bptt_without_recurrence(kind, task):
    """T3: W_rec = 0, detached reset, symmetric feedback: e-prop == BPTT (every parameter, incl. W_rec's gradient
    and, for ALIF, the adaptation path through ε^a)."""
    cls = task == "classification"
    net = make_net(kind, rec_zero=True, decode="mean" if cls else "all", window=10 if cls else None)
    x, y, obj = data(task)
    spikes_happen(net, x)
    bptt, ep = autograd_grads(net, x, y, obj), eprop_grads(net, x, y, obj)
    assert all(float(g.abs().max()) > 0 for g in bptt.values())
    assert max_rel_err(bptt, ep) < 1e-10


@pytest.mark.parametrize("kind", ["lif", "alif"])
def test_eprop_online_equals_truncated_autograd(kind):
    """T2: with recurrence, hard-coded online e-prop == autograd through the network whose recurrent spikes are
    detached (not the adaptation); full BPTT differs (so the test sees the recurrence)."""
    net = make_net(kind)
    x, y, obj = data("sequence_regression", T=30)
    spikes_happen(net, x)
    ep = eprop_grads(net, x, y, obj)
    assert max_rel_err(autograd_grads(net, x, y, obj, cut_recurrence=True), ep) < 1e-10
    assert max_rel_err(autograd_grads(net, x, y, obj), ep) > 1e-3


def test_random_feedback_uses_fixed_B_and_leaves_readout_exact():
    net = make_net("alif", rec_zero=True)
    x, y, obj = data("sequence_regression")
    rule = EProp(feedback="random", autapses=True)
    rule.setup(net, obj, torch.Generator().manual_seed(3))
    B0 = rule.B.clone()
    net.zero_grad(set_to_none=True)
    rule.estimate_gradients(net, x, y, obj)
    ep = {n: p.grad.clone() for n, p in net.named_parameters()}
    bptt = autograd_grads(net, x, y, obj)
    assert torch.allclose(ep["layers.1.weight"], bptt["layers.1.weight"], rtol=1e-10)  # readout: its own error
    assert not torch.allclose(ep["layers.0.weight"], bptt["layers.0.weight"], rtol=1e-2)
    assert torch.equal(rule.B, B0) and rule.requires.local and not EProp(feedback="symmetric").requires.local
    # random feedback with B = W_out is symmetric e-prop
    rule.B = net.layers[1].weight.detach().clone()
    net.zero_grad(set_to_none=True)
    rule.estimate_gradients(net, x, y, obj)
    assert max_rel_err(bptt, {n: p.grad for n, p in net.named_parameters()}) < 1e-10


def test_rate_regulariser_gradient_matches_autograd():
    """E_reg = c/2 Σ_j (f̄_j − f0)², f̄ in Hz: its e-prop gradient (unfiltered e) equals autograd's where exact."""
    net = make_net("alif", rec_zero=True)
    x, y, obj = data("sequence_regression")
    c, f0 = 1e-4, 5.0
    net.zero_grad(set_to_none=True)
    rec = net.run(x)
    rate = rec.layers[0].act.mean((0, 1)) / net.dt
    (obj.loss(rec.output, y).mean() + 0.5 * c * ((rate - f0) ** 2).sum()).backward()
    want = {n: p.grad.clone() for n, p in net.named_parameters()}
    assert max_rel_err(want, eprop_grads(net, x, y, obj)) > 1e-3  # the regulariser matters here
    assert max_rel_err(want, eprop_grads(net, x, y, obj, c_reg=c, f_target=f0)) < 1e-10


def test_frozen_parameters_get_no_grad_and_grads_accumulate():
    net = make_net("lif")
    x, y, obj = data("sequence_regression", T=10)
    net.layers[0].weight.requires_grad_(False)
    net.zero_grad(set_to_none=True)
    rule = EProp(feedback="symmetric")
    rule.estimate_gradients(net, x, y, obj)
    assert net.layers[0].weight.grad is None
    once = net.layers[0].recurrent_weight.grad.clone()
    assert torch.all(once.diagonal() == 0)  # no autapses
    rule.estimate_gradients(net, x, y, obj)
    assert torch.allclose(net.layers[0].recurrent_weight.grad, 2 * once)


def test_setup_removes_autapses_and_requirements():
    net = make_net("lif")
    EProp().setup(net, Objective("sequence_regression"), torch.Generator().manual_seed(0))
    assert torch.all(net.layers[0].recurrent_weight.diagonal() == 0)
    assert "eprop" in RULES and make_rule("eprop", feedback="symmetric").requires.weight_transport
    assert EProp.requires.broadcast_vector and EProp.requires.local


def test_refusals_name_the_problem():
    with pytest.raises(ConfigError, match="did you mean 'random'"):
        EProp(feedback="randm")
    with pytest.raises(ConfigError, match="gamma"):
        EProp(gamma=True)
    x, y, obj = data("sequence_regression", T=5)
    rate = Network([Dense(3, 4, RateParams("tanh"), recurrent=True), Dense(4, 2, LIParams())], decode="all")
    with pytest.raises(ConfigError, match="spiking"):
        EProp().estimate_gradients(rate.double(), x, y, obj)
    value = Network([Dense(3, 4, LIFParams(reset="value"), recurrent=True), Dense(4, 2, LIParams())], decode="all")
    with pytest.raises(ConfigError, match="subtract"):
        EProp().estimate_gradients(value.double(), x, y, obj)
    spiking_out = Network([Dense(3, 4, LIFParams(), recurrent=True), Dense(4, 2, LIFParams())], decode="all")
    with pytest.raises(ConfigError, match="readout"):
        EProp().estimate_gradients(spiking_out.double(), x, y, obj)
    xc, yc, objc = data("classification", T=5)
    with pytest.raises(ConfigError, match="linear decode"):
        EProp().estimate_gradients(make_net("lif", decode="max"), xc, yc, objc)


def test_decode_window():
    out = torch.arange(10.0).reshape(10, 1, 1)
    net = make_net("lif", decode="mean", window=3)
    assert float(net.decode_output(out)) == pytest.approx(8.0)
    assert torch.equal(net.decode_weights(10), torch.tensor([0.0] * 7 + [1 / 3] * 3, dtype=torch.float64))
    with pytest.raises(ConfigError, match="decode_window"):
        make_net("lif", decode="last", window=3)


def test_evidence_task_labels_follow_the_cues():
    from neurolearn.data import load_dataset
    from neurolearn.data.tasks import evidence_trials

    x, label, cues = evidence_trials(64, 0, n_cues=3, delay=300)
    assert x.shape == (64, 150 * 3 + 300 + 150, 40)
    counts = x[:, :450].reshape(64, 450, 4, 10).sum((1, 3))  # spikes per group during the cues
    assert ((counts[:, 1] > counts[:, 0]) == (label == 1)).mean() > 0.9
    assert (label == (cues.sum(1) > 1)).all()
    assert abs(x[:, -150:, 20:30].mean() - 0.04) < 0.01 and abs(x[:, :, 30:].mean() - 0.01) < 0.003
    ds = load_dataset("evidence-ci", n_train=8, n_test=4)
    assert ds.task == "classification" and ds.x_train.shape == (8, 900, 40) and ds.info["recall_steps"] == 150
    with pytest.raises(ConfigError, match="odd"):
        load_dataset("evidence", n_cues=4, n_train=2, n_test=2)


def test_pattern_task():
    from neurolearn.data import load_dataset

    ds = load_dataset("pattern", steps=500, n_sines=2)
    y = ds.y_train[0, :, 0]
    assert ds.x_train.shape == (1, 500, 100) and float(y[0]) == 0.0 and float(y.abs().max()) == pytest.approx(1.0)
    assert abs(float(ds.x_train.mean()) - 0.05) < 0.005


def test_eprop_lowers_pattern_loss():
    """T4 (small): random-feedback e-prop with Adam lowers the pattern-generation loss."""
    from neurolearn.data import load_dataset

    ds = load_dataset("pattern", steps=200, n_inputs=20, n_sines=1)
    torch.manual_seed(0)
    hidden = Dense(20, 20, LIFParams(tau_mem=30e-3, threshold=0.9), recurrent=True, bias=False, init="normal",
                   init_gain=4.0, recurrent_init="normal", recurrent_gain=2.0)
    net = Network([hidden, Dense(20, 1, LIParams(tau=30e-3), bias=False)], decode="all")
    x, y, obj = ds.x_train.transpose(0, 1), ds.y_train.transpose(0, 1), Objective("sequence_regression")
    rule = EProp(feedback="random")
    rule.setup(net, obj, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = [float(rule.train_step(net, x, y, obj, opt).loss.mean()) for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0]


def test_evidence_model_bptt_gradient_survives_the_sequence():
    """models/snn-evidence.toml's surrogate keeps BPTT's gradient over the CI task's 900 steps of the
    same size as symmetric e-prop's and pointing the same way (with fast_sigmoid slope 5 it explodes:
    ~1e3 times e-prop's norm, cosine ~0; docs/results/eprop.md)."""
    from neurolearn.config import resolve_config
    from neurolearn.data import load_dataset
    from neurolearn.runs import build_run

    data = load_dataset("evidence-ci", n_train=8, n_test=4)
    over = ["data.name=evidence-ci", "data.options.n_train=8", "data.options.n_test=4", "model.layers.0.size=60",
            "model.layers.0.recurrent_gain=2.58", "model.layers.0.neuron.tau_adapt=0.6",
            "model.layers.0.neuron.adapt_scale=0.058"]

    def grad(rule: str, extra: list[str]) -> torch.Tensor:
        run = build_run(resolve_config("snn-evidence", rule=rule, overrides=over + extra), data)
        run.rule.setup(run.model, run.objective, torch.Generator().manual_seed(0))
        run.rule.estimate_gradients(run.model, data.x_train.transpose(0, 1), data.y_train, run.objective)
        return torch.cat([p.grad.flatten() for p in run.model.layers[0].parameters()])

    bp = grad("bp", [])
    ep = grad("eprop", ["rule.params.feedback=symmetric", "rule.params.c_reg=0"])
    assert torch.isfinite(bp).all()
    assert 0.05 < float(bp.norm() / ep.norm()) < 5.0
    assert float(torch.nn.functional.cosine_similarity(bp, ep, dim=0)) > 0.6
