r"""The environment and the observation encoding.

**Encoding** (:class:`ObservationEncoder`): observation ``o ∈ R^d`` → ``2d`` non-negative input
currents ``c = gain · [clip(o/s, 0, m), clip(−o/s, 0, m)]`` (``s`` the per-dimension scale,
``m`` the clip; the two signs on separate channels, as Norse's cartpole task does), held
constant for the ``T`` network steps of one environment step (``T·dt`` of simulated time per
environment step; a spiking layer turns the current into a spike rate). The velocities of
CartPole are unbounded: the clip keeps one observation from saturating the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from neurolearn.errors import ConfigError

INSTALL_HINT = "reinforcement learning needs gymnasium: pip install neurolearn[rl]"


def load_gymnasium() -> Any:
    """The ``gymnasium`` module, or a one-line :class:`ConfigError` saying how to install it."""
    try:
        import gymnasium
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return gymnasium


def make_env(name: str = "CartPole-v1") -> Any:
    """``gymnasium.make(name)``; an unknown id is a one-line :class:`ConfigError`."""
    gym = load_gymnasium()
    try:
        return gym.make(name)
    except gym.error.Error as exc:
        raise ConfigError(f"env.name: gymnasium cannot make {name!r}: {exc}") from None


@dataclass(frozen=True)
class ObservationEncoder:
    """Two-sided current coding of an observation over ``steps`` network steps (module docstring)."""

    scale: Sequence[float]
    steps: int = 5
    gain: float = 1.0
    clip: float = 2.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"env.steps must be at least 1, got {self.steps}")
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))

    @property
    def channels(self) -> int:
        return 2 * len(self.scale)

    def __call__(self, obs: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[steps, 1, 2d]`` input currents for one observation."""
        o = torch.as_tensor(obs, dtype=dtype).reshape(-1)
        if o.shape[0] != len(self.scale):
            raise ConfigError(f"env.obs_scale has {len(self.scale)} entries, the observation {o.shape[0]}")
        u = (o / torch.tensor(self.scale, dtype=dtype)).clamp(-self.clip, self.clip)
        c = self.gain * torch.cat([u.clamp_min(0.0), (-u).clamp_min(0.0)])
        return c.expand(self.steps, 1, -1)


__all__ = ["load_gymnasium", "make_env", "ObservationEncoder", "INSTALL_HINT"]
