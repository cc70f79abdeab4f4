"""The simulation layer: taps, node noise, encoders, shapes, and exact backprop gradients."""

import pytest
import torch

from neurolearn.build import build_network
from neurolearn.encoders import Encoder
from neurolearn.errors import ConfigError, ShapeError
from neurolearn.layers import Conv2d, Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams, RateParams
from neurolearn.objectives import Objective


def small_rate_net(recurrent: bool = False) -> Network:
    torch.manual_seed(0)
    return Network([
        Dense(5, 7, RateParams("tanh"), recurrent=recurrent),
        Dense(7, 3),
    ], decode="last").double()


def test_record_holds_the_taps_of_every_layer():
    net = small_rate_net(recurrent=True)
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    rec = net.run(x)
    first, out = rec.layers
    assert first.input.shape == (4, 2, 5) and first.pre.shape == (4, 2, 7) and first.act.shape == (4, 2, 7)
    assert torch.allclose(first.act, torch.tanh(first.pre))
    # the recurrent input of step t is the activity of step t-1
    assert torch.equal(first.rec[1:], first.act[:-1]) and torch.equal(first.rec[0], torch.zeros(2, 7, dtype=x.dtype))
    W, b, R = net.layers[0].weight, net.layers[0].bias, net.layers[0].recurrent_weight
    assert torch.allclose(first.pre[2], x[2] @ W.T + b + first.act[1] @ R.T)
    assert torch.equal(out.act, rec.output)


def test_record_keeps_only_the_taps_asked_for():
    net = small_rate_net(recurrent=True)
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    full, inputs_only = net.run(x), net.run(x, record=("input",))
    for a, b in zip(full.layers, inputs_only.layers):
        assert torch.equal(a.input, b.input)
        assert b.pre is None and b.act is None and b.rec is None
    assert torch.equal(full.output, inputs_only.output)
    assert net.run(x, record=False).layers == []
    with pytest.raises(ConfigError, match="unknown taps.*'spikes'"):
        net.run(x, record=("input", "spikes"))


def test_step_by_step_equals_run():
    net = small_rate_net(recurrent=True)
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    state = net.init_state(3)
    outs = []
    for t in range(6):
        o, state, _ = net.step(x[t], state)
        outs.append(o)
    assert torch.allclose(torch.stack(outs), net(x))


def test_node_noise_enters_the_pre_activation():
    net = small_rate_net()
    x = torch.randn(1, 2, 5, dtype=torch.float64)
    clean = net.run(x)
    eps = torch.randn(2, 7, dtype=torch.float64)
    noisy = net.run(x, noise=lambda t, k, shape: eps if k == 0 else None)
    assert torch.allclose(noisy.layers[0].pre - clean.layers[0].pre, eps[None])


def test_spiking_network_records_spikes_and_membrane():
    torch.manual_seed(0)
    net = Network([Dense(20, 30, LIFParams(tau_mem=10e-3), init_gain=3.0), Dense(30, 4, LIParams(tau=10e-3))],
                  encoder=Encoder("rate", steps=15), decode="mean")
    x = net.encode(torch.rand(8, 20), torch.Generator().manual_seed(0))
    rec = net.run(x)
    s = rec.layers[0].act
    assert set(s.unique().tolist()) <= {0.0, 1.0} and s.sum() > 0
    assert rec.layers[0].mem.shape == s.shape
    assert net.decode_output(rec.output).shape == (8, 4)
    assert net.temporal and net.spiking


def test_encoders():
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[0.0, 0.5, 1.0]])
    assert Encoder("direct", steps=4)(x).shape == (4, 1, 3)
    r = Encoder("rate", steps=2000)(x, g)
    assert r[:, 0, 0].sum() == 0 and r[:, 0, 2].sum() == 2000 and abs(r[:, 0, 1].mean() - 0.5) < 0.05
    lat = Encoder("latency", steps=11)(x)
    assert lat.sum(0).tolist() == [[0.0, 1.0, 1.0]] and lat[0, 0, 2] == 1 and lat[5, 0, 1] == 1
    assert Encoder("poisson", steps=3000)(x, g)[:, 0, 1].mean().item() == pytest.approx(0.5, abs=0.05)
    assert Encoder("sequence")(torch.zeros(2, 7, 3)).shape == (7, 2, 3)
    with pytest.raises(ConfigError):
        Encoder("morse")


def test_wrong_input_shape_is_a_clear_error():
    net = small_rate_net()
    with pytest.raises(ShapeError, match=r"features \[5\]"):
        net.run(torch.randn(1, 2, 6, dtype=torch.float64))
    with pytest.raises(ShapeError, match="time-major"):
        net.run(torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(ShapeError, match="expects inputs of shape"):
        build_network({"name": "m", "input": [64], "layers": [{"size": 3}]}, (1, 28, 28))


def test_conv_layer_shapes_and_chain():
    net = build_network({"layers": [
        {"type": "conv2d", "channels": 4, "kernel": 3, "pool": 2, "neuron": "relu"},
        {"type": "dense", "size": 10},
    ]}, (1, 8, 8))
    assert isinstance(net.layers[0], Conv2d) and net.layers[0].out_shape == (4, 3, 3)
    rec = net.run(torch.rand(1, 5, 1, 8, 8))
    assert rec.layers[0].pre.shape == (1, 5, 4, 6, 6) and rec.output.shape == (1, 5, 10)
    with pytest.raises(ConfigError, match="unknown layer type"):
        build_network({"layers": [{"type": "lstm", "size": 3}]}, (4,))
    with pytest.raises(ConfigError, match="unknown key"):
        build_network({"layers": [{"type": "dense", "size": 3, "units": 4}]}, (4,))


@pytest.mark.parametrize("recurrent", [False, True])
def test_backprop_gradients_match_finite_differences(recurrent):
    net = small_rate_net(recurrent)
    x = torch.randn(5, 3, 5, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    objective = Objective("classification")
    names = [n for n, _ in net.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]

    def loss(*ps):
        out = torch.func.functional_call(net, dict(zip(names, ps)), (x,))
        return objective.loss(net.decode_output(out), y).mean()

    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-6)


def test_bptt_through_spikes_gives_finite_nonzero_gradients():
    torch.manual_seed(0)
    net = Network([Dense(10, 20, LIFParams(tau_mem=10e-3), init_gain=3.0), Dense(20, 3, LIParams(tau=10e-3))],
                  decode="mean")
    x = (torch.rand(20, 4, 10) < 0.3).float()
    loss = Objective("classification").loss(net.decode_output(net(x)), torch.tensor([0, 1, 2, 0])).mean()
    loss.backward()
    g = net.layers[0].weight.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0
