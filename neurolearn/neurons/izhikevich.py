r"""Izhikevich's simple spiking neuron (Izhikevich 2003).

Continuous form (``v`` in mV, time in units of ``τ = 1 ms``, input ``I`` in mV/ms):

.. math::  \frac{dv}{dt} = 0.04 v^2 + 5 v + 140 - u + I, \qquad \frac{du}{dt} = a (b v - u)

and when ``v`` exceeds the peak ``v_peak = 30`` mV: ``v → c``, ``u → u + d``.

neurolearn step (forward Euler, ``h = dt/τ``; input ``x = h I`` added one to one per step):

``ṽ[t] = v + h (0.04 v² + 5 v + 140 − u) + x[t]``, ``u' = u + h a (b v − u)`` (both from the
previous step's ``v``, ``u``), ``z[t] = H(ṽ[t] − v_peak)``, ``v[t] = c`` where ``z = 1`` else ``ṽ``,
``u[t] = u' + d z[t]``. The state starts at ``v = v_init`` (−65 mV), ``u = b v``.

Regimes (``regime``, 2003 Fig. 2; ``(a, b, c, d)``): **RS** regular spiking (0.02, 0.2, −65, 8),
**IB** intrinsically bursting (0.02, 0.2, −55, 4), **CH** chattering (0.02, 0.2, −50, 2), **FS**
fast spiking (0.1, 0.2, −65, 2). Explicit ``a``, ``b``, ``c``, ``d`` override the regime's.

Single-step Euler with ``h ≥ 1`` lets the quadratic term overshoot: use ``dt ≤ 0.5 ms``
(``h > 1`` is refused). For BPTT the surrogate sees ``(ṽ − v_peak)/surrogate_scale`` (mV).

Translations: Brian2 ``dv/dt = (0.04 v² + 5 v + 140 − u)/τ + z/dt``, ``du/dt = a (b v − u)/τ``;
NIR cannot express it (quadratic term, two-variable reset: refused); no snnTorch neuron (refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from neurolearn.errors import ConfigError, unknown_name
from neurolearn.neurons.base import (SURROGATES, Brian2Neuron, Neuron, NotTranslatable, check_finite,
                                     spiking_local_derivative, surrogate_spike)

REGIMES: dict[str, tuple[float, float, float, float]] = {
    "RS": (0.02, 0.2, -65.0, 8.0),
    "IB": (0.02, 0.2, -55.0, 4.0),
    "CH": (0.02, 0.2, -50.0, 2.0),
    "FS": (0.1, 0.2, -65.0, 2.0),
}


class IzhikevichState(NamedTuple):
    """State of an Izhikevich population: ``v`` (mV, after reset), recovery ``u`` and ``mem``, the
    membrane before reset of the last step."""

    v: torch.Tensor
    u: torch.Tensor
    mem: torch.Tensor | None = None


@dataclass(frozen=True)
class IzhikevichParams(Neuron):
    r"""Izhikevich neuron (module docstring). ``dt`` and ``tau`` in seconds, voltages in mV."""

    regime: str = "RS"
    a: float | None = None
    b: float | None = None
    c: float | None = None
    d: float | None = None
    dt: float = 0.5e-3
    tau: float = 1e-3
    v_peak: float = 30.0
    v_init: float = -65.0
    surrogate: str = "atan"
    surrogate_slope: float = 2.0
    surrogate_scale: float = 10.0

    model = "izhikevich"
    spiking = True

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise unknown_name("Izhikevich regime", self.regime, list(REGIMES))
        for name, value in zip("abcd", REGIMES[self.regime]):
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
            check_finite(name, getattr(self, name))
        check_finite("dt", self.dt, positive=True)
        check_finite("tau", self.tau, positive=True)
        if self.dt > self.tau:
            raise ConfigError(f"dt = {self.dt:g} s is larger than the model's time unit tau = {self.tau:g} s: one "
                              "Euler step of the quadratic term overshoots. Use dt <= 0.5 ms")
        for name in ("v_peak", "v_init"):
            check_finite(name, getattr(self, name))
        if not self.c < self.v_peak:
            raise ConfigError(f"the reset c = {self.c} mV must be below the peak v_peak = {self.v_peak} mV")
        if self.surrogate not in SURROGATES:
            raise unknown_name("surrogate", self.surrogate, SURROGATES)
        check_finite("surrogate_slope", self.surrogate_slope, positive=True)
        check_finite("surrogate_scale", self.surrogate_scale, positive=True)

    @property
    def h(self) -> float:
        """The step in the model's time unit, ``dt/τ``."""
        return self.dt / self.tau

    def spike_function(self):
        return surrogate_spike(self.surrogate, self.surrogate_slope)

    def init_state(self, shape, device=None, dtype=None) -> IzhikevichState:
        v = torch.full(shape, float(self.v_init), device=device, dtype=dtype)
        return IzhikevichState(v, torch.full_like(v, self.b * self.v_init), v)

    def step(self, x, state, spike_fn=None):
        """One Euler step (module docstring): ``(spikes, state)``."""
        spike_fn = spike_fn or self.spike_function()
        v, u = state.v, state.u
        v_new = v + self.h * (0.04 * v * v + 5.0 * v + 140.0 - u) + x
        u_new = u + (self.h * self.a) * (self.b * v - u)
        spikes = spike_fn((v_new - self.v_peak) / self.surrogate_scale).to(v.dtype)
        s = spikes.detach()
        v_after = v_new - s * (v_new - self.c)
        return spikes, IzhikevichState(v_after, u_new + self.d * s, v_new)

    def local_derivative(self, pre, state, kind, window, smoothing, free):
        if kind == "lif_rate":
            raise ConfigError("spike_derivative 'lif_rate' is the LIF rate-transfer slope; for Izhikevich neurons "
                              "use 'window' or 'none'")
        # window of half-width w * surrogate_scale around the peak
        mem = (state.mem - self.v_peak) / self.surrogate_scale + 1.0
        return spiking_local_derivative(mem, pre, 1.0, 0.0, 1.0, 0.0, kind, window, smoothing, free)

    def brian2(self) -> Brian2Neuron:
        from brian2 import second

        # iz_*: the layer already has a bias variable b
        ns = dict(tau=self.tau * second, iz_a=self.a, iz_b=self.b, iz_c=self.c, iz_d=self.d, v_peak=self.v_peak)
        eqs = ("s : 1\n"
               "dv/dt = (0.04*v**2 + 5*v + 140 - u)/tau + z/dt : 1\n"
               "du/dt = iz_a*(iz_b*v - u)/tau : 1")
        return Brian2Neuron(eqs, "s", ns, membrane="v", threshold="v > v_peak",
                            reset="v = iz_c\nu += iz_d\ns = 1",
                            initial={"v": self.v_init, "u": self.b * self.v_init})

    def to_nir(self, nir, n, scale, index, subtract="refuse"):
        raise NotTranslatable(f"layer {index} is an Izhikevich neuron: NIR has no node for it (quadratic membrane, "
                              "two-variable reset). Export a network of lif / cuba_lif / li neurons instead")

    def to_snntorch(self, snn, index, recurrent, units):
        raise NotTranslatable(f"layer {index} is an Izhikevich neuron: snnTorch has no counterpart; "
                              "use lif / cuba_lif / li for snnTorch")
