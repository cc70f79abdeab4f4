"""Brian2 backend: the same weights and inputs give the same record as the torch engine.

Runs on Brian2's numpy target (no compilation); small nets, fixed seeds.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

brian2 = pytest.importorskip("brian2")

from neurolearn import Conv2d, Dense, LIFParams, LIParams, Network, RateParams  # noqa: E402
from neurolearn.backends.brian2 import run_brian2  # noqa: E402
from neurolearn.errors import ConfigError  # noqa: E402


def max_rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def test_core_imports_without_brian2():
    code = (
        "import sys, neurolearn, neurolearn.backends, neurolearn.cli, neurolearn.training;"
        "assert 'brian2' not in sys.modules, 'brian2 was imported by the core'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def rate_net() -> Network:
    torch.manual_seed(0)
    return Network([
        Dense(12, 16, RateParams("tanh")),
        Dense(16, 10, RateParams("leaky_relu", tau=4e-3), recurrent=True),
        Dense(10, 8, RateParams("sigmoid")),
        Dense(8, 3, None),
    ], dt=1e-3).double()


def test_rate_network_agrees_to_1e5():
    net = rate_net()
    x = torch.randn(6, 4, 12, dtype=torch.float64)
    ours, ref = run_brian2(net, x), net.run(x)
    assert ours.output.shape == ref.output.shape == (6, 4, 3)
    assert max_rel_err(ours.output, ref.output) < 1e-5
    for a, b in zip(ours.layers, ref.layers):
        for name in ("input", "pre", "act"):
            assert max_rel_err(getattr(a, name), getattr(b, name)) < 1e-5, name
    # the check can fail: a changed weight is seen
    with torch.no_grad():
        net.layers[3].weight[0, 1] += 0.5
    assert max_rel_err(run_brian2(net, x).output, ref.output) > 1e-3


def spiking_net(current_based: bool, reset: str) -> Network:
    torch.manual_seed(1)
    neuron = LIFParams(tau_mem=10e-3, tau_syn=4e-3 if current_based else None, reset=reset)
    return Network([
        Dense(20, 24, neuron, init_gain=3.0),
        Dense(24, 12, neuron, recurrent=True, init_gain=3.0),
        Dense(12, 4, LIParams(tau=10e-3)),
    ], dt=1e-3).double()


@pytest.mark.parametrize("current_based,reset", [(False, "subtract"), (True, "value")])
def test_lif_spike_trains_identical(current_based, reset):
    net = spiking_net(current_based, reset)
    gen = torch.Generator().manual_seed(2)
    x = torch.bernoulli(torch.full((40, 3, 20), 0.3, dtype=torch.float64), generator=gen)
    ours, ref = run_brian2(net, x), net.run(x)
    for k in (0, 1):
        assert ref.layers[k].act.sum() > 50, "too few spikes for a meaningful test"
        assert torch.equal(ours.layers[k].act, ref.layers[k].act), f"layer {k} spike trains differ"
        assert max_rel_err(ours.layers[k].mem, ref.layers[k].mem) < 1e-9
    assert ours.layers[1].rec is not None and torch.equal(ours.layers[1].rec, ref.layers[1].rec)
    assert max_rel_err(ours.output, ref.output) < 1e-9


def test_cuba_brian2_euler_order_is_measurably_different():
    """Brian2's joint Euler step (v sees the old i_syn) delays the current by one step."""
    net = spiking_net(True, "value")
    gen = torch.Generator().manual_seed(2)
    x = torch.bernoulli(torch.full((40, 3, 20), 0.3, dtype=torch.float64), generator=gen)
    ours = run_brian2(net, x, cuba_update="brian2")
    ref = net.run(x)
    assert not torch.equal(ours.layers[0].act, ref.layers[0].act)
    # ... and is exactly the torch engine with v driven by i[t-1]
    p = net.layers[0].neuron
    z = ref.layers[0].pre[:, 0]
    i = torch.zeros_like(z[0])
    v = torch.zeros_like(z[0])
    spikes = []
    for t in range(z.shape[0]):
        v = p.beta * v + (1 - p.beta) * p.r * i
        i = p.alpha * i + (1 - p.alpha) * p.w_in * z[t]
        s = (v > p.threshold).double()
        v = torch.where(s > 0, torch.full_like(v, p.v_reset), v)
        spikes.append(s)
    assert torch.equal(ours.layers[0].act[:, 0], torch.stack(spikes))


def test_unsupported_layers_are_refused():
    net = Network([Conv2d((1, 6, 6), 2, 3, LIFParams()), Dense(32, 3)])
    with pytest.raises(ConfigError, match="dense"):
        run_brian2(net, torch.zeros(2, 1, 1, 6, 6))


# ----------------------------------------------------------------------------- plasticity
def two_class_task(n: int = 40, seed: int = 0):
    """Two Gaussian blobs in 6 dimensions (linearly separable)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    centres = torch.tensor([[1.0, -1.0, 0.5, 0.0, -0.5, 1.0], [-1.0, 1.0, -0.5, 0.0, 0.5, -1.0]], dtype=torch.float64)
    x = centres[y] + 0.6 * torch.randn(n, 6, generator=gen, dtype=torch.float64)
    return x, y


def small_mlp(classes: int = 2) -> Network:
    torch.manual_seed(3)
    return Network([Dense(6, 8, RateParams("tanh")), Dense(8, classes, None)]).double()


def accuracy(net: Network, x, y) -> float:
    with torch.no_grad():
        return float((net.run(x.unsqueeze(0)).output[-1].argmax(1) == y).double().mean())


def test_drtp_in_brian2_equals_the_matrix_rule():
    from neurolearn.backends.brian2_plasticity import drtp_feedback, drtp_in_brian2, epoch_orders

    x, y = two_class_task(16)
    net = small_mlp()
    ref = small_mlp()
    fb = drtp_feedback(net, 2, seed=0)
    drtp_in_brian2(net, x, y, fb, epochs=2, lr=0.05, seed=0)
    with torch.no_grad():  # the same rule, as matrices, online in the same order
        for order in epoch_orders(len(x), 2, 0):
            for n in order:
                h = torch.tanh(ref.layers[0].weight @ x[n] + ref.layers[0].bias)
                z = ref.layers[1].weight @ h + ref.layers[1].bias
                onehot = torch.nn.functional.one_hot(y[n], 2).double()
                d0 = torch.as_tensor(fb[0].T) @ onehot * (1 - h**2)
                d1 = torch.sigmoid(z) - onehot
                ref.layers[0].weight -= 0.05 * torch.outer(d0, x[n])
                ref.layers[0].bias -= 0.05 * d0
                ref.layers[1].weight -= 0.05 * torch.outer(d1, h)
                ref.layers[1].bias -= 0.05 * d1
    for a, b in zip(net.layers, ref.layers):
        assert torch.allclose(a.weight, b.weight, atol=1e-12)
        assert torch.allclose(a.bias, b.bias, atol=1e-12)
    assert not torch.allclose(net.layers[0].weight, small_mlp().layers[0].weight)


def test_anp_in_brian2_learns_a_two_class_task():
    from neurolearn.backends.brian2_plasticity import anp_in_brian2

    x, y = two_class_task(40)
    net = small_mlp()
    before = accuracy(net, x, y)
    log = anp_in_brian2(net, x, y, epochs=6, lr=0.02, sigma=1e-3, seed=0)
    after = accuracy(net, x, y)
    assert before < 0.75
    assert after >= 0.95, (before, after, log.epoch_train_acc)
    assert log.epoch_train_loss[-1] < log.epoch_train_loss[0]


def test_decorrelation_plasticity_equals_the_matrix_rule():
    import numpy as np

    from neurolearn.backends.brian2_plasticity import decorrelation_in_brian2, decorrelation_loss, epoch_orders

    rng = np.random.default_rng(0)
    mix = np.array([[1.0, 0.8, 0.0], [0.0, 1.0, 0.6], [0.0, 0.0, 1.0]])
    xd = rng.normal(size=(60, 3)) @ mix
    R, losses = decorrelation_in_brian2(xd, lr=0.02, epochs=2, seed=0)
    Rm = np.eye(3)
    for order in epoch_orders(len(xd), 2, 0):
        for n in order:
            xt = Rm @ xd[n]
            c = np.outer(xt, xt)
            Rm = Rm - 0.02 * (c - np.diag(np.diag(c))) @ Rm
    assert np.abs(R - Rm).max() < 1e-12
    assert losses[-1] < 0.5 * decorrelation_loss(xd)


def new_model_net(neuron, gain: float, positive: bool, dt: float) -> Network:
    torch.manual_seed(3)
    net = Network([Dense(20, 24, neuron, recurrent=True), Dense(24, 4, LIParams(tau=20e-3, dt=dt))], dt=dt)
    with torch.no_grad():
        net.layers[0].weight.mul_(gain)
        net.layers[0].recurrent_weight.mul_(gain * 0.2)
        if positive:
            net.layers[0].weight.abs_()
    return net.double()


@pytest.mark.parametrize("name", ["alif", "izhikevich", "adex"])
def test_new_neuron_models_spike_for_spike_in_brian2(name):
    from neurolearn.neurons import AdExParams, ALIFParams, IzhikevichParams

    neuron, gain, positive, dt = {
        "alif": (ALIFParams(tau_adapt=0.1, adapt_scale=0.3, refractory=3e-3), 2.0, False, 1e-3),
        "izhikevich": (IzhikevichParams(dt=0.5e-3, regime="CH"), 8.0, True, 0.5e-3),
        "adex": (AdExParams(), 0.01, True, 1e-4),
    }[name]
    net = new_model_net(neuron, gain, positive, dt)
    x = (torch.rand(150, 2, 20, generator=torch.Generator().manual_seed(4)) < 0.3).double()
    ref, ours = net.run(x), run_brian2(net, x)
    spikes = ref.layers[0].act
    assert spikes.sum() > 100 and (spikes.sum(0) > 0).float().mean() > 0.3  # the input makes most neurons fire
    assert torch.equal(ours.layers[0].act, spikes)
    assert max_rel_err(ours.layers[0].mem, ref.layers[0].mem) < 1e-6
    assert max_rel_err(ours.output, ref.output) < 1e-6
