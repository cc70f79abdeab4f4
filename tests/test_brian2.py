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
