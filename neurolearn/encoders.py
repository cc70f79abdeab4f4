r"""Encoders: turn a static sample ``[B, ...]`` into an input over time ``[T, B, ...]``.

- ``direct``: the same analogue value at every step (a constant input current); ``T = 1``
  gives a static rate network.
- ``rate``: Bernoulli spikes, ``P(s[t] = 1) = clamp(gain * x, 0, 1)`` per step.
- ``poisson``: Poisson spike counts per step with mean ``gain * x`` (may exceed 1).
- ``latency``: one spike per input at ``t = round((1 - x) * (T - 1))`` (bright pixels fire
  first); inputs below ``threshold`` never fire. Inputs are expected in ``[0, 1]``.
- ``sequence``: the data already is a sequence ``[B, T, ...]``; it is only made time-major.

Random encoders draw from an explicit ``torch.Generator`` so runs repeat exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurolearn.errors import ConfigError, unknown_name

ENCODERS = ("direct", "rate", "poisson", "latency", "sequence")


@dataclass(frozen=True)
class Encoder:
    """An input encoder; see the module docstring for the kinds."""

    kind: str = "direct"
    steps: int = 1
    gain: float = 1.0
    threshold: float = 0.01

    def __post_init__(self) -> None:
        if self.kind not in ENCODERS:
            raise unknown_name("encoder", self.kind, ENCODERS)
        if self.steps < 1:
            raise ConfigError(f"an encoder needs at least one time step, got steps={self.steps}")
        if self.gain < 0:
            raise ConfigError(f"encoder gain must be non-negative, got {self.gain}")

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode ``x`` (``[B, ...]``, or ``[B, T, ...]`` for ``sequence``) to ``[T, B, ...]``."""
        if self.kind == "sequence":
            return x.transpose(0, 1)
        if self.kind == "direct":
            return x.unsqueeze(0).expand(self.steps, *x.shape)
        if self.kind == "rate":
            p = (self.gain * x).clamp(0.0, 1.0).unsqueeze(0).expand(self.steps, *x.shape)
            return torch.bernoulli(p, generator=generator)
        if self.kind == "poisson":
            rate = (self.gain * x).clamp_min(0.0).unsqueeze(0).expand(self.steps, *x.shape)
            return torch.poisson(rate.contiguous(), generator=generator)
        # latency
        t_spike = torch.round((1.0 - x.clamp(0.0, 1.0)) * (self.steps - 1)).long()
        t = torch.arange(self.steps, device=x.device).view(-1, *([1] * x.dim()))
        fires = (x >= self.threshold).unsqueeze(0)
        return ((t == t_spike.unsqueeze(0)) & fires).to(x.dtype)
