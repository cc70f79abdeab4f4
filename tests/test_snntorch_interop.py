"""snnTorch interop: wrapped models run spike for spike like snnTorch, train in place, convert back."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
import torch.nn as nn

from neurolearn.errors import ConfigError
from neurolearn.interop import to_snntorch, wrap_snntorch
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams


class Model(nn.Module):
    """An ordinary snnTorch model with explicit state: Leaky, RLeaky, Synaptic, membrane readout."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 30)
        self.lif1 = snn.Leaky(beta=0.9, reset_mechanism="zero")  # snnTorch's delayed zero reset: exact
        self.fc2 = nn.Linear(30, 25)
        self.lif2 = snn.RLeaky(beta=0.8, linear_features=25, reset_mechanism="zero", reset_delay=False)
        self.fc3 = nn.Linear(25, 15)
        self.lif3 = snn.Synaptic(alpha=0.7, beta=0.85, reset_mechanism="zero", reset_delay=False)
        self.fc4 = nn.Linear(15, 3)
        self.out = snn.Leaky(beta=0.95, reset_mechanism="none")
        with torch.no_grad():
            self.fc1.weight.mul_(0.8), self.fc2.weight.mul_(3), self.fc3.weight.mul_(3)
            self.lif2.recurrent.bias.zero_()

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        b = x.shape[1]
        m1, sp2, m2 = torch.zeros(b, 30), torch.zeros(b, 25), torch.zeros(b, 25)
        sy3, m3, m4 = torch.zeros(b, 15), torch.zeros(b, 15), torch.zeros(b, 3)
        spikes, mems = [[], [], []], []
        for t in range(x.shape[0]):
            s1, m1 = self.lif1(self.fc1(x[t]), m1)
            sp2, m2 = self.lif2(self.fc2(s1), sp2, m2)
            s3, sy3, m3 = self.lif3(self.fc3(sp2), sy3, m3)
            _, m4 = self.out(self.fc4(s3), m4)
            for k, s in enumerate((s1, sp2, s3)):
                spikes[k].append(s)
            mems.append(m4)
        return [torch.stack(s) for s in spikes], torch.stack(mems)


def _x(steps: int = 30, batch: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(steps, batch, 20, generator=g) < 0.3).float()


def _assert_equal_runs(model: Model, net: Network, x: torch.Tensor) -> None:
    with torch.no_grad():
        spikes, mem = model(x)
        rec = net.run(x)
    for k in range(3):
        assert spikes[k].mean() > 0.01, f"layer {k} silent"
        assert torch.equal(spikes[k], rec.layers[k].act), f"layer {k}: spikes differ"
    torch.testing.assert_close(rec.output, mem, rtol=1e-5, atol=1e-5)


def test_wrap_shares_parameters_and_runs_spike_for_spike():
    torch.manual_seed(0)
    model = Model()
    net = wrap_snntorch(model, readout="mem", decode="mean")
    assert net.layers[0].weight is model.fc1.weight and net.layers[3].bias is model.fc4.bias
    assert net.layers[1].recurrent_weight is model.lif2.recurrent.weight
    assert net.layers[2].neuron.tau_syn == pytest.approx(1e-3 / 0.3)
    _assert_equal_runs(model, net, _x())


def test_hidden_state_model_wraps():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(20, 10), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero"),
                        nn.Linear(10, 4), snn.Leaky(beta=0.9, init_hidden=True, output=True, reset_mechanism="zero"))
    net = wrap_snntorch(seq)
    x = _x()
    with torch.no_grad():
        seq[2].reset_mem(), seq[4].reset_mem()
        ref = torch.stack([seq(x[t])[0] for t in range(x.shape[0])])
        assert torch.equal(net.run(x).output, ref)


def test_neurolearn_rule_trains_the_snntorch_model_in_place():
    """BPTT through neurolearn's network changes the snnTorch model; its own forward improves."""
    from neurolearn.objectives import Objective
    from neurolearn.rules import make_rule

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 16), snn.Leaky(beta=0.9, reset_mechanism="zero", reset_delay=False),
                          nn.Linear(16, 3), snn.Leaky(beta=0.9, reset_mechanism="none", reset_delay=False))
    net = wrap_snntorch(model, readout="mem", decode="mean")
    # a tiny task: which of three input groups fires most
    g = torch.Generator().manual_seed(5)
    y = torch.randint(0, 3, (60,), generator=g)
    rates = torch.full((60, 20), 0.1)
    for c in range(3):
        rates[y == c, c * 6:(c + 1) * 6] = 0.6
    x = torch.bernoulli(rates.unsqueeze(0).expand(12, 60, 20).contiguous(), generator=g)

    def run_snntorch(inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m1, m2 = torch.zeros(inp.shape[1], 16), torch.zeros(inp.shape[1], 3)
        spk, mem = [], []
        for t in range(inp.shape[0]):
            s1, m1 = model[1](model[0](inp[t]), m1)
            _, m2 = model[3](model[2](s1), m2)
            spk.append(s1), mem.append(m2)
        return torch.stack(spk), torch.stack(mem)

    def acc() -> float:
        with torch.no_grad():
            return float((run_snntorch(x)[1].mean(0).argmax(-1) == y).float().mean())

    before = acc()
    w0 = model[0].weight.detach().clone()
    rule = make_rule("bp")
    objective = Objective("classification")
    rule.setup(net, objective, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    for _ in range(25):
        rule.train_step(net, x, y, objective, opt)
    assert not torch.equal(model[0].weight, w0)
    after = acc()
    assert after >= 0.9 and after > before + 0.2, (before, after)
    with torch.no_grad():  # still the same network, spike for spike
        spk, mem = run_snntorch(x)
        rec = net.run(x)
    assert torch.equal(spk, rec.layers[0].act)
    torch.testing.assert_close(mem, rec.output, rtol=1e-5, atol=1e-5)


def test_to_snntorch_matches():
    torch.manual_seed(0)
    net = Network([Dense(20, 30, LIFParams(reset="value"), init_gain=0.8),
                   Dense(30, 25, LIFParams(reset="value"), recurrent=True, init_gain=3.0, recurrent_gain=0.5),
                   Dense(25, 15, LIFParams(tau_syn=5e-3, reset="value"), init_gain=3.0),
                   Dense(15, 3, LIParams(tau=10e-3))], decode="mean")
    sn = to_snntorch(net)
    assert isinstance(sn.neurons[1], snn.RLeaky) and isinstance(sn.neurons[2], snn.Synaptic)
    x = _x()
    with torch.no_grad():
        rec = net.run(x)
        out = sn(x)
    assert rec.layers[1].act.mean() > 0.01
    torch.testing.assert_close(out, rec.output, rtol=1e-5, atol=1e-5)
    # round trip: wrapping the converted model gives the same spikes again
    back = wrap_snntorch(sn, readout="mem", decode="mean")
    with torch.no_grad():
        rec2 = back.run(x)
    for a, b in zip(rec.layers[:3], rec2.layers[:3]):
        assert torch.equal(a.act, b.act)


def test_unsupported_snntorch_models_are_refused():
    with pytest.raises(ConfigError, match="reset_delay"):
        wrap_snntorch(nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9)))  # subtract, delayed
    with pytest.raises(ConfigError, match="differs between neurons"):
        wrap_snntorch(nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=torch.tensor([0.9, 0.8, 0.9]),
                                                                reset_mechanism="zero")))
    with pytest.raises(ConfigError, match="leak"):
        wrap_snntorch(nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=1.0, reset_mechanism="zero")))
    with pytest.raises(ConfigError, match="not supported"):
        wrap_snntorch(nn.Sequential(nn.Linear(4, 3), nn.ReLU()))
    with pytest.raises(ConfigError, match="rate units"):
        from neurolearn.neurons import RateParams

        to_snntorch(Network([Dense(4, 3, RateParams("tanh"))]))
    with pytest.raises(ConfigError, match="resets to zero only"):
        to_snntorch(Network([Dense(4, 3, LIFParams(reset="value", v_reset=-0.5))]))


def _subtract_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), snn.Leaky(beta=0.9, reset_delay=False),
                         nn.Linear(20, 3), snn.Leaky(beta=0.9, reset_mechanism="none"))


def test_subtract_reset_is_refused_or_taken_knowingly():
    """snnTorch's subtract reset spikes differently once a membrane stays above threshold after a
    reset: wrapping it silently would give another network, so it is refused unless asked for."""
    model = _subtract_model()
    with pytest.raises(ConfigError, match="reset_mechanism='zero'"):
        wrap_snntorch(model, readout="mem")
    with pytest.warns(UserWarning, match="neurolearn's subtraction"):
        net = wrap_snntorch(model, readout="mem", subtract="neurolearn")
    x = (torch.rand(25, 4, 10, generator=torch.Generator().manual_seed(0)) < 0.5).float() * 3
    with torch.no_grad():
        lin1, lif1, lin2, _ = model
        mem, spikes = torch.zeros(4, 20), []
        for t in range(x.shape[0]):
            s, mem = lif1(lin1(x[t]), mem)
            spikes.append(s)
        assert not torch.equal(torch.stack(spikes), net.run(x).layers[0].act)  # why the default refuses
    with pytest.raises(ConfigError, match="resets by subtraction"):
        to_snntorch(Network([Dense(4, 3, LIFParams(reset="subtract"))]))
    with pytest.warns(UserWarning, match="snnTorch's 'subtract'"):
        to_snntorch(Network([Dense(4, 3, LIFParams(reset="subtract"))]), subtract="snntorch")


def test_tutorial_style_zero_reset_forward_equals_snntorch():
    """snnTorch's tutorial defaults with a zero reset (delayed): the wrapped network's forward is
    snnTorch's own, spike for spike and in the readout membrane."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 20), snn.Leaky(beta=0.9, reset_mechanism="zero"),
                          nn.Linear(20, 3), snn.Leaky(beta=0.9, reset_mechanism="none"))
    net = wrap_snntorch(model, readout="mem")
    x = (torch.rand(25, 4, 10, generator=torch.Generator().manual_seed(0)) < 0.5).float() * 3
    with torch.no_grad():
        lin1, lif1, lin2, lif2 = model
        m1, m2, spikes, mems = torch.zeros(4, 20), torch.zeros(4, 3), [], []
        for t in range(x.shape[0]):
            s, m1 = lif1(lin1(x[t]), m1)
            _, m2 = lif2(lin2(s), m2)
            spikes.append(s), mems.append(m2)
        rec = net.run(x)
    assert torch.stack(spikes).mean() > 0.05
    assert torch.equal(torch.stack(spikes), rec.layers[0].act)
    torch.testing.assert_close(torch.stack(mems), rec.output, rtol=1e-5, atol=1e-5)


def test_conv2d_in_torch_argument_order_gets_one_line():
    from neurolearn.layers import Conv2d

    with pytest.raises(ConfigError, match=r"in_shape = \(channels, height, width\) first"):
        Conv2d(1, 4, 5)
