"""Reinforcement learning with a global reward (neurolearn.rl, neurolearn.rules.reward).

The rule tests use a tiny contextual bandit written here (no gymnasium needed); the CartPole
tests skip when gymnasium is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurolearn.build import build_network
from neurolearn.errors import ConfigError
from neurolearn.rl.env import ObservationEncoder, load_gymnasium
from neurolearn.rl.episode import run_episode, solve_stats
from neurolearn.rules import RULES, make_rule
from neurolearn.rules.reward import RewardRule, RunningBaseline, discounted_returns
from neurolearn.updates import Updater

ROOT = Path(__file__).resolve().parents[1]


class Bandit:
    """One-step episodes: observation ``±1`` on its first dimension (drawn per episode when
    ``context``, else +1); reward 1 for the rewarded action of the context (``rewarded[sign]``;
    default: 1 for +1, 0 for −1), 0 otherwise."""

    def __init__(self, context: bool, seed: int = 0, rewarded: dict[int, int] | None = None) -> None:
        self.context = context
        self.gen = torch.Generator().manual_seed(seed)
        self.sign = 1
        self.rewarded = rewarded or {1: 1, -1: 0}

    def reset(self, seed=None):
        if seed is not None:
            self.gen.manual_seed(seed)
        self.sign = 1 if not self.context else (1 if torch.rand((), generator=self.gen) < 0.5 else -1)
        return [float(self.sign), 0.0], {}

    def correct(self) -> int:
        return self.rewarded[self.sign]

    def step(self, action):
        return [0.0, 0.0], float(action == self.correct()), True, False, {}


MODEL = {
    "dt": 1e-3, "input": [4],
    "layers": [
        {"type": "recurrent", "size": 16, "bias": True, "init": "normal", "init_gain": 3.0,
         "recurrent_init": "normal", "recurrent_gain": 0.5,
         "neuron": {"model": "lif", "tau_mem": 10e-3, "threshold": 1.0, "surrogate": "fast_sigmoid",
                    "surrogate_slope": 5.0}},
        {"type": "dense", "size": 3, "bias": False, "init": "normal", "init_gain": 4.0,
         "neuron": {"model": "li", "tau": 5e-3}},
    ],
}
ENCODER = ObservationEncoder([0.5, 1.0], steps=5, gain=2.0)

SETTINGS = {  # rule: (params, optimizer, lr)
    "np-reward": ({"sigma": 1.0}, "adam", 3e-2),
    "eprop-reward": ({"reward_scale": 1.0, "value_weight": 0.5}, "adam", 3e-2),
    "rstdp-reward": ({"lr": 1.0, "tau_c": 0.05}, "sgd", 1.0),
    "reinforce": ({}, "adam", 3e-2),
}


def make_agent(rule_name: str, seed: int, freeze: str | None = None, params: dict | None = None):
    torch.manual_seed(seed)
    model = build_network(MODEL, (4,))
    if freeze == "readout":
        for p in model.layers[1].parameters():
            p.requires_grad_(False)
    if freeze == "hidden":
        for p in model.layers[0].parameters():
            p.requires_grad_(False)
    base, opt, lr = SETTINGS[rule_name]
    rule = make_rule(rule_name, **{**base, **(params or {})})
    rule.bind(model, 2, 0.9, torch.Generator().manual_seed(seed + 2))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.Adam(trainable, lr=lr) if opt == "adam" else torch.optim.SGD(trainable, lr=lr)
    return model, rule, Updater(model, optim)


def logit_gap(model, sign: int) -> float:
    """``l_1 − l_0`` of the clean network (no rule noise) for the observation of context ``sign``."""
    with torch.no_grad():
        x = ENCODER([float(sign), 0.0])
        state = model.init_state(1)
        outs = []
        for s in range(x.shape[0]):
            out, state, _ = model.step(x[s], state)
            outs.append(out)
        logits = torch.stack(outs).mean(0)[0]
    return float(logits[1] - logits[0])


def preference(model, rewarded: dict[int, int]) -> float:
    """``l_rewarded − l_other`` of the clean network, averaged over the contexts in ``rewarded``."""
    return sum(logit_gap(model, s) * (1 if a == 1 else -1) for s, a in rewarded.items()) / len(rewarded)


def train(rule_name: str, seed: int, episodes: int, context: bool, freeze: str | None = None,
          params: dict | None = None, env=None) -> tuple[float, float]:
    """The clean preference for the rewarded action before and after ``episodes`` of training."""
    model, rule, updater = make_agent(rule_name, seed, freeze, params)
    if env is None:  # contexts: reward the action the untrained network disfavours
        signs = (1, -1) if context else (1,)
        env = Bandit(context, seed, {s: 0 if logit_gap(model, s) > 0 else 1 for s in signs})
    gen = torch.Generator().manual_seed(seed + 1)
    rewarded = {s: env.rewarded[s] for s in ((1, -1) if context else (1,))}
    before = preference(model, rewarded)
    frozen = [p.detach().clone() for p in model.layers[1].parameters()]
    for _ in range(episodes):
        run_episode(env, model, rule, ENCODER, updater, generator=gen)
    if freeze == "readout":  # frozen means frozen
        assert all(torch.equal(a, b) for a, b in zip(frozen, model.layers[1].parameters()))
    return before, preference(model, rewarded)


# ------------------------------------------------------------------ toolkit
def test_discounted_returns_and_baseline():
    assert discounted_returns([1.0, 1.0, 1.0], 0.5) == [1.75, 1.5, 1.0]
    b = RunningBaseline(0.5)
    first = b.advantage(torch.tensor([1.0, 3.0], dtype=torch.float64))
    assert first.tolist() == pytest.approx([-2 ** -0.5, 2 ** -0.5])  # first batch: its own statistics
    assert b.mean == 2.0
    adv = b.advantage(torch.tensor([4.0], dtype=torch.float64))  # judged by the statistics before it
    assert float(adv[0]) == pytest.approx((4.0 - 2.0) / 2 ** 0.5)
    assert b.mean == pytest.approx(3.0)


def test_solve_stats():
    returns = [10.0] * 5 + [500.0] * 100
    s = solve_stats(returns, 100, 475.0)
    assert s["solved"] and s["episodes_to_solve"] == 5 + 95  # 95 x 500 + 5 x 10 = 47550 / 100 >= 475
    assert s["mean_last"] == 500.0
    assert not solve_stats([500.0] * 99, 100, 475.0)["solved"]


def test_encoder_two_sided_and_clipped():
    enc = ObservationEncoder([1.0, 2.0], steps=3, gain=2.0, clip=1.5)
    x = enc([0.5, -8.0])
    assert x.shape == (3, 1, 4)
    assert x[0, 0].tolist() == [1.0, 0.0, 0.0, 3.0]  # ± channels; -8/2 clipped at 1.5; x gain
    assert torch.equal(x[0], x[2])


# ------------------------------------------------------------------ the rules learn from the reward
@pytest.mark.parametrize("rule_name", ["np-reward", "eprop-reward", "rstdp-reward", "reinforce"])
def test_rule_learns_the_rewarded_action(rule_name):
    """Every reward rule moves the policy towards the rewarded action (the one the untrained
    network disfavours), in three seeds."""
    for seed in range(3):
        before, after = train(rule_name, seed, 40, context=False)
        assert after > before + 0.5 and after > 0.3, (rule_name, seed, before, after)


@pytest.mark.parametrize("rule_name, params", [
    ("np-reward", {"sigma": [1.0, 0.0]}),  # noise in the hidden layer only: it alone explores
    ("eprop-reward", {"feedback": "symmetric"}),  # a frozen readout cannot align with random feedback
    ("reinforce", {}),
])
def test_hidden_layer_learns_with_frozen_readout(rule_name, params):
    """The contextual bandit through the hidden layer alone (readout frozen; each context rewards
    the action the untrained network disfavours): the rule trains the hidden layer, not only the
    readout, in at least two of three seeds."""
    wins = 0
    for seed in range(3):
        before, after = train(rule_name, seed, 100, context=True, freeze="readout", params=params)
        wins += after > 0.3
    assert wins >= 2, rule_name


def test_flipped_reward_unlearns():
    """The direction is the reward's: rewarding the other action (reward 1 − r) lowers the preference."""

    class Opposite(Bandit):
        def step(self, action):
            obs, r, term, trunc, info = super().step(action)
            return obs, 1.0 - r, term, trunc, info

    for rule_name in ("np-reward", "eprop-reward", "rstdp-reward", "reinforce"):
        before, after = train(rule_name, 0, 40, context=False, env=Opposite(False, 0, {1: 1}))
        assert after < before - 0.5, (rule_name, before, after)


def test_reward_rules_listed_with_requirements():
    for name in ("np-reward", "eprop-reward", "rstdp-reward", "reinforce"):
        assert issubclass(RULES[name], RewardRule)
    assert RULES["np-reward"].requires.local and RULES["np-reward"].requires.broadcast_scalar
    assert RULES["eprop-reward"].requires.local
    assert make_rule("eprop-reward", feedback="symmetric").requires.weight_transport
    assert not RULES["reinforce"].requires.local
    from neurolearn.cli import main

    assert main(["rules"]) == 0


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("rule, params, match", [
    ("np-reward", {"sigma": -1.0}, "sigma"),
    ("np-reward", {"sigma": True}, "sigma"),
    ("np-reward", {"sigmaa": 0.1}, "sigma"),
    ("eprop-reward", {"feedback": "symetric"}, "symmetric"),
    ("eprop-reward", {"lam": 1.5}, "lam"),
    ("rstdp-reward", {"form": "izhikevic"}, "izhikevich"),
    ("rstdp-reward", {"tau_c": 0.0}, "tau_c"),
    ("reinforce", {"truncate": "yes"}, "truncate"),
])
def test_bad_rule_options(rule, params, match):
    with pytest.raises(ConfigError, match=match):
        make_rule(rule, **params)


def test_reward_rule_on_a_dataset_says_what_to_do():
    from neurolearn.objectives import Objective

    rule = make_rule("np-reward")
    with pytest.raises(ConfigError, match=r"\[env\]"):
        rule.step(None, None, None, Objective("classification"), None)


def test_value_unit_required():
    torch.manual_seed(0)
    model = build_network({**MODEL, "layers": [MODEL["layers"][0], {**MODEL["layers"][1], "size": 2}]}, (4,))
    with pytest.raises(ConfigError, match="3 units"):
        make_rule("eprop-reward").bind(model, 2, 0.9, torch.Generator())


def test_missing_gymnasium_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    with pytest.raises(ConfigError, match=r"pip install neurolearn\[rl\]"):
        load_gymnasium()
    from neurolearn.cli import main

    code = main(["train", "--model", "snn-cartpole", "--rule", "np-reward", "--out", "/nonexistent-dir/x"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error:")


def test_missing_gymnasium_message_from_cli(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    from neurolearn.cli import main

    code = main(["train", "--model", "snn-cartpole", "--rule", "np-reward", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == "error: reinforcement learning needs gymnasium: pip install neurolearn[rl]"


def test_core_imports_without_gymnasium():
    code = ("import sys; sys.modules['gymnasium'] = None\n"
            "import neurolearn, neurolearn.cli, neurolearn.rules, neurolearn.rl, neurolearn.training\n"
            "from neurolearn.rules import RULES; assert 'np-reward' in RULES\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


@pytest.mark.parametrize("override, match", [
    ("model.env.stepz=3", "steps"),
    ("model.env.steps=0", "steps"),
    ("model.env.obs_scale=[1, -2]", "obs_scale"),
    ("model.env.gamma=1.5", "gamma"),
    ("model.env.episodes=true", "episodes"),
])
def test_bad_env_config(override, match):
    from neurolearn.config import resolve_config

    with pytest.raises(ConfigError, match=match):
        resolve_config(model="snn-cartpole", rule="np-reward", overrides=[override])


# ------------------------------------------------------------------ CartPole (gymnasium)
def test_cartpole_episodes_repeat_exactly():
    pytest.importorskip("gymnasium")
    from neurolearn.config import resolve_config
    from neurolearn.rl.train import build_agent, train_agent

    def returns(seed: int, rule: str) -> list[float]:
        cfg = resolve_config(model="snn-cartpole", rule=rule, seed=seed)
        return train_agent(build_agent(cfg), 4)["returns"]

    for rule in ("np-reward", "eprop-reward"):
        a, b = returns(3, rule), returns(3, rule)
        assert a == b
    assert returns(3, "np-reward") != returns(4, "np-reward")


def test_cartpole_obs_scale_must_match():
    pytest.importorskip("gymnasium")
    from neurolearn.config import resolve_config
    from neurolearn.rl.train import build_agent

    with pytest.raises(ConfigError, match="obs_scale has 2 entries"):
        build_agent(resolve_config(model="snn-cartpole", rule="np-reward", overrides=["model.env.obs_scale=[1, 2]"]))
    with pytest.raises(ConfigError, match="reward rule"):
        build_agent(resolve_config(model="snn-cartpole", rule="bp"))


def test_cli_train_cartpole_writes_episode_metrics(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    from neurolearn.cli import main
    from neurolearn.io import read_json

    out = tmp_path / "run"
    code = main(["train", "--model", "snn-cartpole", "--rule", "reinforce", "--threads", "1", "--out", str(out),
                 "--no-progress", "--set", "model.env.episodes=3", "--set", "model.env.solve_window=2"])
    assert code == 0
    m = read_json(out / "metrics.json")
    assert len(m["returns"]) == 3 and all(r >= 1 for r in m["returns"])
    assert m["final"]["mean_last"] == pytest.approx(sum(m["returns"][-2:]) / 2)
    assert "episodes_to_solve" in m["final"] and (out / "curves.png").exists()
