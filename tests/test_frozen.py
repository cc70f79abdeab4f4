"""Frozen means frozen: no rule or solver changes a parameter with ``requires_grad=False``, and
the hidden layers still learn around a frozen readout. Every rule of ``RULES`` on a rate MLP,
and where it applies on a spiking net and a recurrent net with per-step targets (the
perturbation rules' time domain)."""

from __future__ import annotations

import pytest
import torch

from neurolearn.errors import ConfigError
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams, RateParams
from neurolearn.objectives import Objective
from neurolearn.rules import RULES, make_rule
from neurolearn.updates import Updater

pytestmark = pytest.mark.usefixtures("one_thread")

CLS = Objective("classification")
SEQ = Objective("sequence_regression")
SOLVERS = {name for name, cls in RULES.items() if not cls.uses_optimizer}
PARAMS = {"wp": {"sigma": 1e-2}, "np": {"sigma": 1e-2}, "anp": {"sigma": 1e-2}}


def rate_mlp(act: str = "tanh") -> tuple[Network, torch.Tensor, torch.Tensor, Objective]:
    torch.manual_seed(0)
    net = Network([Dense(6, 10, RateParams(act)), Dense(10, 8, RateParams(act)), Dense(8, 3)])
    g = torch.Generator().manual_seed(1)
    return net, torch.randn(1, 32, 6, generator=g), torch.randint(0, 3, (32,), generator=g), CLS


def spiking() -> tuple[Network, torch.Tensor, torch.Tensor, Objective]:
    torch.manual_seed(0)
    net = Network([Dense(6, 12, LIFParams(tau_mem=10e-3), init_gain=2.0), Dense(12, 3, LIParams(tau=10e-3))],
                  decode="mean")
    g = torch.Generator().manual_seed(1)
    return net, (torch.rand(6, 32, 6, generator=g) < 0.5).float(), torch.randint(0, 3, (32,), generator=g), CLS


def recurrent() -> tuple[Network, torch.Tensor, torch.Tensor, Objective]:
    torch.manual_seed(0)
    net = Network([Dense(3, 10, RateParams("tanh"), recurrent=True), Dense(10, 2)], decode="all")
    g = torch.Generator().manual_seed(1)
    return net, torch.randn(5, 8, 3, generator=g), torch.randn(5, 8, 2, generator=g), SEQ


def recurrent_spiking() -> tuple[Network, torch.Tensor, torch.Tensor, Objective]:
    """e-prop's network: a recurrent ALIF layer and a leaky readout."""
    from neurolearn.neurons import ALIFParams

    torch.manual_seed(0)
    net = Network([Dense(6, 12, ALIFParams(tau_mem=10e-3, adapt_scale=0.1), recurrent=True, init_gain=2.0),
                   Dense(12, 3, LIParams(tau=10e-3))], decode="mean")
    g = torch.Generator().manual_seed(1)
    return net, (torch.rand(8, 32, 6, generator=g) < 0.5).float(), torch.randint(0, 3, (32,), generator=g), CLS


NETS = {"rate": rate_mlp, "spiking": spiking, "recurrent": recurrent, "recurrent_spiking": recurrent_spiking}
ONLY = {"eprop": {"recurrent_spiking"}, "stdp": {"spiking"}, "rstdp": {"spiking"},  # the nets these rules train
        # reward rules learn from an environment, not a batch: their frozen-readout check is in tests/test_rl.py
        **{name: set() for name in ("np-reward", "eprop-reward", "rstdp-reward", "reinforce")}}
# (rule, net) pairs a rule supports: solvers fit static rate MLPs (sibp: relu), the fixed-feedback
# rules need a non-spiking, non-recurrent readout (the recurrent net's readout is fine)
# STDP and R-STDP are plasticity of spiking layers, applied as bounded changes by plain SGD with lr 1
PLASTICITY = {"stdp", "rstdp"}
CASES = [(name, kind) for name in sorted(RULES) for kind in NETS
         if not (name in SOLVERS and kind != "rate") and kind in ONLY.get(name, set(NETS) - {"recurrent_spiking"})]


def _check(name: str, kind: str, apply: str | None = None) -> None:
    net, x, y, objective = NETS[kind]("relu") if (name == "sibp") else NETS[kind]()
    readout = net.layers[-1]
    readout.requires_grad_(False)
    frozen = [p.detach().clone() for p in readout.parameters()]
    hidden = [p.detach().clone() for p in net.layers[0].parameters()]
    params = dict(PARAMS.get(name, {}))
    if apply:
        params["apply"] = apply
    rule = make_rule(name, **params)
    rule.setup(net, objective, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2) if rule.uses_optimizer else None
    if name in PLASTICITY:
        opt = torch.optim.SGD(net.parameters(), lr=1.0)
    for _ in range(5 if opt is not None else 1):
        rule.train_step(net, x, y, objective, opt)
    assert all(torch.equal(a, p) for a, p in zip(frozen, readout.parameters())), f"{name} moved a frozen readout"
    assert all(p.grad is None for p in readout.parameters())
    moved = max(float((a - p.detach()).abs().max()) for a, p in zip(hidden, net.layers[0].parameters()))
    assert moved > 1e-4, f"{name} did not train the hidden layer ({moved})"


@pytest.mark.parametrize("name,kind", CASES)
def test_a_frozen_readout_stays_bit_identical_and_the_hidden_layers_learn(name, kind):
    _check(name, kind)


@pytest.mark.parametrize("name", ["wp", "np", "anp"])
def test_online_time_domain_keeps_a_frozen_readout(name):
    _check(name, "recurrent", apply="online")


def test_zorb_refuses_half_a_frozen_layer():
    net, x, y, objective = rate_mlp()
    net.layers[-1].bias.requires_grad_(False)
    rule = make_rule("zorb")
    rule.setup(net, objective, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="weight and bias together"):
        rule.train_step(net, x, y, objective, None)


def test_the_seam_drops_grads_of_frozen_parameters_and_steps_only_the_given_ones():
    net, x, y, objective = rate_mlp()
    net.layers[-1].requires_grad_(False)
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    calls = []
    updater = Updater(net, torch.optim.SGD(net.parameters(), lr=1.0),
                      synchronise=lambda grads, stats: calls.append((len(grads), dict(stats))))
    before = [p.detach().clone() for p in net.parameters()]
    first = list(net.layers[0].parameters())
    updater.apply(first, stats={"baseline": 0.5})
    after = list(net.parameters())
    assert calls == [(2, {"baseline": 0.5})]  # synchronised: the two stepped tensors and the rule's statistics
    assert all(not torch.equal(b, a) for b, a in zip(before[:2], after[:2]))  # layer 0 stepped
    assert all(torch.equal(b, a) for b, a in zip(before[2:], after[2:]))  # layer 1 waits, the readout is frozen
    assert all(p.grad is None for p in first) and all(p.grad is not None for p in net.layers[1].parameters())
    assert all(p.grad is None for p in net.layers[2].parameters())
