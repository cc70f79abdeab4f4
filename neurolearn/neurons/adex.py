r"""Adaptive exponential integrate-and-fire neuron (AdEx; Brette & Gerstner 2005).

Continuous form (SI units: volts, amperes, farads, siemens, seconds):

.. math::  C \frac{dV}{dt} = -g_L (V - E_L) + g_L \Delta_T e^{(V - V_T)/\Delta_T} - w + I, \qquad
           \tau_w \frac{dw}{dt} = a (V - E_L) - w

and when ``V > V_peak``: ``V → V_r``, ``w → w + b``.

neurolearn step (forward Euler, ``τ_m = C/g_L``; input ``x`` in volts added one to one per step):

``Ṽ = V + (dt/τ_m)[−(V − E_L) + Δ_T exp((min(V, V_peak) − V_T)/Δ_T)] − (dt/C) w + x``,
``w' = w + (dt/τ_w)[a (V − E_L) − w]`` (both from the previous step), ``z = H(Ṽ − V_peak)``,
``V = V_r`` where ``z = 1`` else ``Ṽ``, ``w = w' + b z``. The state starts at ``V = E_L``, ``w = 0``.

Defaults: the paper's regular-spiking set (C 281 pF, g_L 30 nS, E_L −70.6 mV, V_T −50.4 mV,
Δ_T 2 mV, V_peak = V_T + 5 Δ_T, τ_w 144 ms, a 4 nS, b 80.5 pA, V_r = E_L) at ``dt = 0.1 ms``
(at 1 ms the exponential overshoots; the exponent is clamped at ``V_peak``). ``V_T`` (onset of
the exponential) and ``V_peak`` (spike detection) are distinct. For BPTT the surrogate sees
``(Ṽ − V_peak)/surrogate_scale``.

Translations: Brian2 ``dv/dt = (E_L − v + Δ_T exp((min(v, V_peak) − V_T)/Δ_T))/τ_m − w_ad/C + z/dt``,
``dw_ad/dt = (a (v − E_L) − w_ad)/τ_w`` (``w_ad``: Brian2 reserves ``w`` for synaptic weights); NIR and snnTorch have no AdEx (refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from neurolearn.errors import ConfigError, unknown_name
from neurolearn.neurons.base import (SURROGATES, Brian2Neuron, Neuron, NotTranslatable, check_finite,
                                     check_time_constant, spiking_local_derivative, surrogate_spike)


class AdExState(NamedTuple):
    """State of an AdEx population: ``v`` (volts, after reset), adaptation current ``w`` (amperes) and
    ``mem``, the membrane before reset of the last step."""

    v: torch.Tensor
    w: torch.Tensor
    mem: torch.Tensor | None = None


@dataclass(frozen=True)
class AdExParams(Neuron):
    r"""AdEx neuron (module docstring), SI units."""

    C: float = 281e-12
    g_L: float = 30e-9
    E_L: float = -70.6e-3
    V_T: float = -50.4e-3
    Delta_T: float = 2e-3
    V_peak: float | None = None
    V_r: float | None = None
    a: float = 4e-9
    b: float = 80.5e-12
    tau_w: float = 144e-3
    dt: float = 0.1e-3
    surrogate: str = "atan"
    surrogate_slope: float = 2.0
    surrogate_scale: float = 2e-3

    model = "adex"
    spiking = True

    def __post_init__(self) -> None:
        for name in ("C", "g_L", "Delta_T"):
            check_finite(name, getattr(self, name), positive=True)
        for name in ("E_L", "V_T", "a", "b"):
            check_finite(name, getattr(self, name))
        if self.V_peak is None:
            object.__setattr__(self, "V_peak", self.V_T + 5.0 * self.Delta_T)
        if self.V_r is None:
            object.__setattr__(self, "V_r", self.E_L)
        check_finite("V_peak", self.V_peak)
        check_finite("V_r", self.V_r)
        if not self.V_r < self.V_peak:
            raise ConfigError(f"the reset V_r = {self.V_r} V must be below V_peak = {self.V_peak} V (volts, SI)")
        check_time_constant("tau_m = C/g_L", self.tau_m, self.dt)
        check_time_constant("tau_w", self.tau_w, self.dt)
        if self.surrogate not in SURROGATES:
            raise unknown_name("surrogate", self.surrogate, SURROGATES)
        check_finite("surrogate_slope", self.surrogate_slope, positive=True)
        check_finite("surrogate_scale", self.surrogate_scale, positive=True)

    @property
    def tau_m(self) -> float:
        return self.C / self.g_L

    def spike_function(self):
        return surrogate_spike(self.surrogate, self.surrogate_slope)

    def init_state(self, shape, device=None, dtype=None) -> AdExState:
        v = torch.full(shape, float(self.E_L), device=device, dtype=dtype)
        return AdExState(v, torch.zeros_like(v), v)

    def step(self, x, state, spike_fn=None):
        """One Euler step (module docstring): ``(spikes, state)``."""
        spike_fn = spike_fn or self.spike_function()
        v, w = state.v, state.w
        onset = torch.exp((v.clamp(max=self.V_peak) - self.V_T) / self.Delta_T)
        v_new = v + (self.dt / self.tau_m) * (self.E_L - v + self.Delta_T * onset) - (self.dt / self.C) * w + x
        w_new = w + (self.dt / self.tau_w) * (self.a * (v - self.E_L) - w)
        spikes = spike_fn((v_new - self.V_peak) / self.surrogate_scale).to(v.dtype)
        s = spikes.detach()
        v_after = v_new - s * (v_new - self.V_r)
        return spikes, AdExState(v_after, w_new + self.b * s, v_new)

    def local_derivative(self, pre, state, kind, window, smoothing, free):
        if kind == "lif_rate":
            raise ConfigError("spike_derivative 'lif_rate' is the LIF rate-transfer slope; for AdEx neurons "
                              "use 'window' or 'none'")
        mem = (state.mem - self.V_peak) / self.surrogate_scale + 1.0
        return spiking_local_derivative(mem, pre, 1.0, 0.0, 1.0, 0.0, kind, window, smoothing, free)

    def brian2(self) -> Brian2Neuron:
        from brian2 import second

        ns = dict(tau_m=self.tau_m * second, tau_w=self.tau_w * second, C_s=self.C * second, E_L=self.E_L,
                  V_T=self.V_T, DeltaT=self.Delta_T, V_peak=self.V_peak, V_r=self.V_r, a_w=self.a, b_w=self.b)
        eqs = ("s : 1\n"
               "dv/dt = (E_L - v + DeltaT*exp((clip(v, -1e9, V_peak) - V_T)/DeltaT))/tau_m - w_ad/C_s + z/dt : 1\n"
               "dw_ad/dt = (a_w*(v - E_L) - w_ad)/tau_w : 1")
        # w_ad: the adaptation current (Brian2 reserves w for the synaptic weight)
        return Brian2Neuron(eqs, "s", ns, membrane="v", threshold="v > V_peak",
                            reset="v = V_r\nw_ad += b_w\ns = 1", initial={"v": self.E_L, "w_ad": 0.0})

    def to_nir(self, nir, n, scale, index, subtract="refuse"):
        raise NotTranslatable(f"layer {index} is an AdEx neuron: NIR has no node for it (exponential onset, "
                              "adaptation current). Export a network of lif / cuba_lif / li neurons instead")

    def to_snntorch(self, snn, index, recurrent, units):
        raise NotTranslatable(f"layer {index} is an AdEx neuron: snnTorch has no counterpart; "
                              "use lif / cuba_lif / li for snnTorch")
