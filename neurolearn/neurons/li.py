r"""Leaky integrator (LI): a readout membrane without spikes.

.. math::  \tau \frac{dv}{dt} = (v_{leak} - v) + r I

Forward Euler: ``v[t] = β v[t−1] + (1 − β)(v_leak + r I[t])``, ``β = 1 − dt/τ``, default
``r = τ/dt`` (input adds to ``v`` one to one). The activity is ``v``.

Translations: Brian2 ``dv/dt = (v_leak − v + r z)/τ``; NIR ``LI``; snnTorch ``Leaky`` with
``reset_mechanism="none"`` read out by its membrane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from neurolearn.neurons.base import Brian2Neuron, Neuron, NotTranslatable, check_finite, check_time_constant, per_neuron


class LIState(NamedTuple):
    """State of a leaky integrator: the membrane ``v`` (``mem`` is ``v``)."""

    v: torch.Tensor | None = None

    @property
    def mem(self) -> torch.Tensor | None:
        return self.v


@dataclass(frozen=True)
class LIParams(Neuron):
    r"""Leaky integrator readout (module docstring)."""

    tau: float = 20e-3
    dt: float = 1e-3
    v_leak: float = 0.0
    r: float | None = None

    model = "li"
    spiking = False

    def __post_init__(self) -> None:
        check_time_constant("tau", self.tau, self.dt)
        check_finite("v_leak", self.v_leak)
        if self.r is None:
            object.__setattr__(self, "r", self.tau / self.dt)
        check_finite("r", self.r, positive=True)

    @property
    def beta(self) -> float:
        return 1.0 - self.dt / self.tau

    def init_state(self, shape, device=None, dtype=None) -> LIState:
        return LIState(None)

    def step(self, x, state, spike_fn=None):
        """``(v, state)``; a state without ``v`` starts from ``v_leak``."""
        v = state.v if state.v is not None else torch.full_like(x, float(self.v_leak))
        v = self.beta * v + (1.0 - self.beta) * (self.v_leak + self.r * x)
        return v, LIState(v)

    def trace_filter(self) -> tuple[float, float]:
        return self.beta, 1.0

    def linear_response(self) -> tuple[float, float, float]:
        return self.beta, (1.0 - self.beta) * self.r, self.v_leak

    def brian2(self) -> Brian2Neuron:
        from brian2 import second

        return Brian2Neuron("dv/dt = (v_leak - v + r*z)/tau : 1", "v",
                            dict(tau=self.tau * second, v_leak=self.v_leak, r=self.r), membrane="v",
                            initial={"v": self.v_leak})

    def to_nir(self, nir, n, scale, index, subtract="refuse"):
        return f"li{index}", nir.LI(tau=per_neuron(self.tau * scale, n), r=per_neuron(self.r, n),
                                    v_leak=per_neuron(self.v_leak, n))

    def to_snntorch(self, snn, index, recurrent, units):
        if self.v_leak != 0:
            raise NotTranslatable(f"layer {index}: v_leak = {self.v_leak} != 0 cannot be expressed in snnTorch neurons")
        if not math.isclose((1.0 - self.beta) * self.r, 1.0, rel_tol=1e-6):
            raise NotTranslatable(f"layer {index}: input gain r (1 - beta) != 1; snnTorch neurons add their input 1:1")
        if recurrent:
            raise NotTranslatable(f"layer {index}: a recurrent leaky readout is not convertible")
        return snn.Leaky(beta=self.beta, reset_mechanism="none", reset_delay=False), "mem"
