r"""``neurolearn train`` for a model with an ``[env]`` table: train a policy with a reward rule
(:mod:`neurolearn.rules.reward`) for a budget of episodes and write the run directory
(``config.json``, ``metrics.json`` with the return of every episode, the mean of the last
``solve_window`` episodes and the episodes to solve, ``curves.png``).

One seed ``train.seed`` gives: the initial weights (``torch.manual_seed(seed)``), the environment's
start states (``env.reset(seed=seed)`` once), the action samples (generator ``seed + 1``) and the
rule's noise (generator ``seed + 2``).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from neurolearn.build import build_network, make_optimizer
from neurolearn.config import ENV_SCHEMA, check_config, check_table
from neurolearn.errors import ConfigError
from neurolearn.network import Network
from neurolearn.rl.env import ObservationEncoder, make_env
from neurolearn.rl.episode import run_episode, solve_stats
from neurolearn.updates import Updater


@dataclass
class Agent:
    """Everything one RL run holds."""

    config: dict[str, Any]
    env_cfg: dict[str, Any]
    env: Any
    model: Network
    rule: Any
    encoder: ObservationEncoder
    updater: Updater
    actions: torch.Generator
    seed: int


def build_agent(cfg: dict[str, Any]) -> Agent:
    """The environment, network, reward rule, encoder and optimizer a resolved config describes."""
    from neurolearn.rules import make_rule
    from neurolearn.rules.reward import RewardRule

    cfg = check_config(cfg)
    if "env" not in cfg["model"]:
        raise ConfigError(f"model {cfg['model'].get('name')!r} has no [env] table: it is not a reinforcement-"
                          "learning model")
    env_cfg = check_table("model.env", cfg["model"]["env"], ENV_SCHEMA)
    rule = make_rule(cfg["rule"]["name"], **cfg["rule"].get("params", {}))
    if not isinstance(rule, RewardRule):
        from neurolearn.rules import RULES

        reward = [n for n, r in RULES.items() if issubclass(r, RewardRule)]
        raise ConfigError(f"rule {cfg['rule']['name']!r} learns from labelled data; a model with an [env] table "
                          f"needs a reward rule: {', '.join(reward)}")
    env = make_env(env_cfg["name"])
    space = env.action_space
    if not hasattr(space, "n"):
        raise ConfigError(f"env {env_cfg['name']!r} has a continuous action space; the policies here choose "
                          "among discrete actions")
    n_obs = int(env.observation_space.shape[0])
    encoder = ObservationEncoder(env_cfg["obs_scale"], env_cfg["steps"], env_cfg["gain"], env_cfg["clip"])
    if len(encoder.scale) != n_obs:
        raise ConfigError(f"model.env.obs_scale has {len(encoder.scale)} entries; {env_cfg['name']} observes "
                          f"{n_obs} numbers")
    seed = int(cfg["train"]["seed"])
    torch.manual_seed(seed)
    model = build_network(cfg["model"], (encoder.channels,))
    rule_gen = torch.Generator().manual_seed(seed + 2)
    rule.bind(model, int(space.n), float(env_cfg["gamma"]), rule_gen)
    params = [p for p in model.parameters() if p.requires_grad]
    updater = Updater(model, make_optimizer(params, cfg["train"]))
    return Agent(cfg, env_cfg, env, model, rule, encoder, updater, torch.Generator().manual_seed(seed + 1), seed)


def train_agent(agent: Agent, episodes: int | None = None, *,
                on_episode: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train for ``episodes`` (default ``env.episodes``); stop once solved if ``env.stop_when_solved``.
    Returns the metrics (module docstring)."""
    ec = agent.env_cfg
    budget = int(episodes or ec["episodes"])
    returns: list[float] = []
    steps = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    solved_at = None
    for k in range(budget):
        res = run_episode(agent.env, agent.model, agent.rule, agent.encoder, agent.updater,
                          seed=agent.seed if k == 0 else None, generator=agent.actions)
        agent.updater.finish_step()
        returns.append(res.ret)
        steps += res.length
        if not torch.isfinite(torch.stack([p.detach().abs().max() for p in agent.model.parameters()])).all():
            raise ConfigError(f"rule {agent.rule.name!r}: the weights became non-finite at episode {k + 1}; lower "
                              "train.lr")
        if on_episode is not None:
            on_episode(k + 1, res.ret)
        stats = solve_stats(returns[-ec["solve_window"]:], ec["solve_window"], ec["solve_return"]) \
            if len(returns) >= ec["solve_window"] else None
        if stats and stats["solved"] and solved_at is None:
            solved_at = k + 1
            if ec["stop_when_solved"]:
                break
    final = solve_stats(returns, ec["solve_window"], ec["solve_return"])
    final["episodes_to_solve"] = solved_at if solved_at is not None else final["episodes_to_solve"]
    final["solved"] = final["episodes_to_solve"] is not None
    return {
        "env": ec["name"], "rule": agent.rule.name, "seed": agent.seed, "budget": budget,
        "returns": returns, "episodes": len(returns), "env_steps": steps,
        "final": {**final, "mean_last_window": final["mean_last"], "window": ec["solve_window"],
                  "cpu_s": time.process_time() - cpu0, "wall_s": time.perf_counter() - wall0,
                  "load": os.getloadavg()[0]},
    }


def curves_figure(returns: list[float], window: int, threshold: float, title: str = ""):
    """Return per episode and its running mean over ``window`` episodes."""
    from neurolearn.plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(returns) + 1), returns, lw=0.6, alpha=0.5, label="return")
    if returns:
        t = torch.tensor(returns, dtype=torch.float64)
        c = torch.cumsum(torch.cat([torch.zeros(1, dtype=t.dtype), t]), 0)
        k = torch.arange(1, len(returns) + 1)
        lo = (k - window).clamp_min(0)
        mean = (c[k] - c[lo]) / (k - lo)
        ax.plot(k.tolist(), mean.tolist(), lw=1.5, label=f"mean of last {window}")
    ax.axhline(threshold, color="k", ls=":", lw=1, label=f"solved ({threshold:g})")
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def train_env(cfg: dict[str, Any], out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Train the RL run ``cfg`` into the run directory ``out`` (module docstring); returns the metrics."""
    from neurolearn.io import write_json
    from neurolearn.plotting import save_figure

    agent = build_agent(cfg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", agent.config)

    def report(k: int, ret: float) -> None:
        if progress and (k % 10 == 0 or k == 1):
            print(f"episode {k}: return {ret:g}", file=sys.stderr)

    metrics = train_agent(agent, on_episode=report)
    write_json(out / "metrics.json", metrics)
    ec = agent.env_cfg
    fig = curves_figure(metrics["returns"], ec["solve_window"], ec["solve_return"],
                        f"{cfg['model'].get('name', '')} / {agent.rule.name} / seed {agent.seed}")
    save_figure(fig, out / "curves.png")
    return metrics


__all__ = ["Agent", "build_agent", "train_agent", "train_env", "curves_figure"]
