r"""One episode of an agent (a network driven by a :class:`~neurolearn.rules.reward.RewardRule`) in an
environment, and the "solved" statistics.

Seeds: the environment's first ``reset(seed=env_seed)`` fixes its whole sequence of start states;
actions are sampled with the loop's own ``torch.Generator``; the rule's noise comes from the rule's
generator; the network's initial weights from ``torch.manual_seed``. The same seeds give the same
returns (tests/test_rl.py).

Truncation (CartPole-v1: 500 steps) is not termination: a rule that bootstraps gets the policy's
output at the last observation (its value), a rule that does not sees the episode end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neurolearn.network import Network
from neurolearn.rl.env import ObservationEncoder


@dataclass
class EpisodeResult:
    """Return, length and the rule's statistics of one episode."""

    ret: float
    length: int
    stats: dict[str, float]


def choose_action(logits: torch.Tensor, greedy: bool, generator: torch.Generator | None) -> int:
    """``argmax`` (greedy) or a sample of ``softmax(logits)``."""
    if greedy:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.detach().double(), 0)
    return int(torch.multinomial(probs, 1, generator=generator))


def run_episode(env: Any, model: Network, rule: Any, encoder: ObservationEncoder, updater: Any, *,
                seed: int | None = None, generator: torch.Generator | None = None, learn: bool = True
                ) -> EpisodeResult:
    """Run one episode; ``learn``: end with the rule's update (``rule.end_episode``)."""
    dtype = next(model.parameters()).dtype
    obs, _ = env.reset(seed=seed) if seed is not None else env.reset()
    rule.begin_episode(model)
    out = rule.forward(model, encoder(obs, dtype))
    total, length = 0.0, 0
    while True:
        action = choose_action(out.logits, rule.greedy, generator)
        rule.act(action, out)
        obs, r, terminated, truncated, _ = env.step(action)
        total += float(r)
        length += 1
        nxt = None
        if not terminated and (not truncated or rule.bootstraps):
            nxt = rule.forward(model, encoder(obs, dtype))
        rule.reward(float(r), bool(terminated), nxt)
        if terminated or truncated:
            break
        out = nxt
    stats = rule.end_episode(model, updater) if learn else {}
    return EpisodeResult(total, length, stats)


def solve_stats(returns: list[float], window: int = 100, threshold: float = 475.0) -> dict[str, Any]:
    """``episodes_to_solve``: the first episode ``k`` (1-based) at which the mean of episodes
    ``k−window+1..k`` is ``≥ threshold`` (``None``: not solved); ``mean_last``: mean of the last
    ``window`` episodes (of all if fewer); ``best_mean``: the best such window mean."""
    solved, best = None, None
    s = 0.0
    for k, r in enumerate(returns):
        s += r
        if k >= window:
            s -= returns[k - window]
        if k >= window - 1:
            m = s / window
            best = m if best is None else max(best, m)
            if solved is None and m >= threshold:
                solved = k + 1
    last = returns[-window:]
    return {"episodes_to_solve": solved, "solved": solved is not None,
            "mean_last": sum(last) / len(last) if last else 0.0, "best_mean": best}


__all__ = ["EpisodeResult", "run_episode", "choose_action", "solve_stats"]
