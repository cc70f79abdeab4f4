"""Fixed-seed fingerprints of what every rule does to a small network in a few steps.

``python tests/reference_updates.py write`` stores them in ``tests/data/rule_reference.json``;
``tests/test_rule_reference.py`` checks that a refactor leaves them unchanged (1e-5 relative).
Each case: build a tiny network at a fixed seed, run 3 optimizer steps (or one solver fit)
through ``Rule.train_step``, and fingerprint every tensor of the model's state dict by its
sum, sum of squares and a fixed random projection.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from neurolearn.decorrelation import add_decorrelation
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams, RateParams
from neurolearn.objectives import Objective
from neurolearn.rules import make_rule

PATH = Path(__file__).parent / "data" / "rule_reference.json"
CLS = Objective("classification")
SEQ = Objective("sequence_regression")


def mlp(act: str = "tanh", decor: bool = False) -> Network:
    torch.manual_seed(0)
    net = Network([Dense(6, 12, RateParams(act), init="xavier_normal"),
                   Dense(12, 10, RateParams(act), init="xavier_normal"),
                   Dense(10, 3, init="xavier_normal")])
    return add_decorrelation(net) if decor else net


def snn() -> Network:
    torch.manual_seed(0)
    return Network([Dense(6, 16, LIFParams(tau_mem=10e-3), init="kaiming_uniform", init_gain=2.0),
                    Dense(16, 3, LIParams(tau=10e-3), init="kaiming_uniform")], decode="mean")


def rnn(decor: bool = False) -> Network:
    torch.manual_seed(0)
    net = Network([Dense(3, 10, RateParams("tanh"), recurrent=True, init="xavier_normal",
                         recurrent_init="xavier_normal", recurrent_gain=0.8),
                   Dense(10, 2, init="xavier_normal")], decode="all")
    return add_decorrelation(net) if decor else net


def static_data(steps: int = 1):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(steps, 16, 6, generator=g)
    if steps > 1:
        x = (x > 0.3).float()
    return x, torch.randint(0, 3, (16,), generator=g)


def seq_data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, 3, generator=g)
    return x, torch.randn(7, 4, 2, generator=g) * 0.5


CASES = {
    "bp": ("bp", {}, mlp, static_data, CLS),
    "bp_decor": ("bp", {}, lambda: mlp(decor=True), static_data, CLS),
    "wp": ("wp", {"sigma": 1e-2}, mlp, static_data, CLS),
    "wp_nn": ("wp", {"sigma": 1e-2, "passes": "noisy-noisy"}, mlp, static_data, CLS),
    "np": ("np", {"sigma": 1e-2}, mlp, static_data, CLS),
    "np_baseline": ("np", {"sigma": 1e-2, "passes": "baseline"}, mlp, static_data, CLS),
    "anp": ("anp", {"sigma": 1e-2}, mlp, static_data, CLS),
    "anp_draws": ("anp", {"sigma": 1e-2, "draws": 3}, mlp, static_data, CLS),
    "anp_decor": ("anp", {"sigma": 1e-2}, lambda: mlp(decor=True), static_data, CLS),
    "anp_snn": ("anp", {"sigma": 0.05, "activity": "mem", "trace_tau": 5e-3}, snn, lambda: static_data(5), CLS),
    "np_snn_ou": ("np", {"sigma": 0.05, "noise_tau": 5e-3}, snn, lambda: static_data(5), CLS),
    "anp_time_seq": ("anp", {"sigma": 1e-2, "draws": 2}, rnn, seq_data, SEQ),
    "anp_time_online": ("anp", {"sigma": 1e-2, "apply": "online", "scale": "sqrt", "norm": "layer"}, rnn, seq_data,
                        SEQ),
    "anp_time_decor": ("anp", {"sigma": 1e-2}, lambda: rnn(decor=True), seq_data, SEQ),
    "np_time_baseline": ("np", {"sigma": 1e-2, "passes": "baseline", "apply": "online"}, rnn, seq_data, SEQ),
    "np_time": ("np", {"sigma": 1e-2, "trace_tau": 3e-3}, rnn, seq_data, SEQ),
    "wp_time": ("wp", {"sigma": 1e-2}, rnn, seq_data, SEQ),
    "wp_time_baseline": ("wp", {"sigma": 1e-2, "passes": "baseline"}, rnn, seq_data, SEQ),
    "drtp": ("drtp", {}, mlp, static_data, CLS),
    "drtp_decor": ("drtp", {}, lambda: mlp(decor=True), static_data, CLS),
    "drtp_seq": ("drtp", {}, mlp, lambda: static_data(3), CLS),
    "drtp_snn": ("drtp", {"spike_derivative": "lif_rate"}, snn, lambda: static_data(5), CLS),
    "tpsgd": ("tpsgd", {"scale": 0.5}, mlp, static_data, CLS),
    "dfa": ("dfa", {}, mlp, static_data, CLS),
    "dfa_decor": ("dfa", {}, lambda: mlp(decor=True), static_data, CLS),
    "dfa_snn": ("dfa", {}, snn, lambda: static_data(5), CLS),
    "zorb": ("zorb", {}, mlp, static_data, CLS),
    "sibp": ("sibp", {}, lambda: mlp("relu"), static_data, CLS),
}


def fingerprint(model: Network) -> dict[str, list[float]]:
    out = {}
    g = torch.Generator().manual_seed(123)
    for name, t in model.state_dict().items():
        t = t.detach().double().flatten()
        w = torch.randn(t.numel(), generator=g, dtype=torch.float64)
        out[name] = [float(t.sum()), float((t * t).sum()), float((t * w).sum())]
    return out


def run_case(name: str) -> dict[str, list[float]]:
    rule_name, params, build, data, objective = CASES[name]
    model = build()
    x, y = data()
    rule = make_rule(rule_name, **params)
    rule.setup(model, objective, torch.Generator().manual_seed(7))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2) if rule.uses_optimizer else None
    for i in range(3 if rule.uses_optimizer else 1):
        rule.train_step(model, x, y, objective, opt)
    return fingerprint(model)


def run_all() -> dict[str, dict[str, list[float]]]:
    return {name: run_case(name) for name in CASES}


if __name__ == "__main__":
    torch.set_num_threads(1)
    result = run_all()
    if sys.argv[1:] == ["write"]:
        PATH.parent.mkdir(exist_ok=True)
        PATH.write_text(json.dumps(result, indent=0, sort_keys=True))
        print(f"wrote {PATH}")
    else:
        print(json.dumps(result)[:500])
