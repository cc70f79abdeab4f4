r"""Leaky integrate-and-fire neurons: LIF and current-based LIF (CubaLIF).

LIF (``tau_syn=None``), input current ``I``:

.. math::  \tau_{mem} \frac{dv}{dt} = (v_{leak} - v) + r I

Current-based LIF, input ``x`` filtered by a synaptic current:

.. math::  \tau_{syn} \frac{di}{dt} = -i + w_{in} x, \qquad
           \tau_{mem} \frac{dv}{dt} = (v_{leak} - v) + r i

Forward Euler, ``α = 1 − dt/τ_syn``, ``β = 1 − dt/τ_mem``; with the defaults ``r = τ_mem/dt`` and
``w_in = τ_syn/dt``:

``i[t] = α i[t−1] + x[t]``,
``ṽ[t] = β v[t−1] + (1 − β) v_leak + i[t]`` (LIF: ``+ I[t]``),
``s[t] = H(ṽ[t] − θ)``, then the reset in the same step (``reset="subtract"``: ``v = ṽ − s θ``;
``reset="value"``: ``v = v_reset`` where ``s = 1``). ``ṽ`` is the state's ``mem``.

The Heaviside has snnTorch's surrogate derivative (``surrogate``, ``surrogate_slope``) so that
BPTT trains through it; with ``detach_reset`` the reset is not differentiated.

Translations: Brian2 ``dv/dt = (v_leak − v + r z)/τ_mem`` (CubaLIF: ``i_syn`` updated first, as
here); NIR ``LIF`` / ``CubaLIF`` (reset to a value: NIR has no subtractive reset); snnTorch
``Leaky`` / ``RLeaky`` / ``Synaptic`` with ``reset_delay=False``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch

from neurolearn.errors import ConfigError, unknown_name
from neurolearn.neurons.base import (SURROGATES, Brian2Neuron, Neuron, NotTranslatable, check_finite,
                                     check_time_constant, per_neuron, spiking_local_derivative, surrogate_spike)

RESETS = ("subtract", "value")


class LeakyFireMixin:
    """What LIF-type models share (LIF, CubaLIF, ALIF): a membrane ``ṽ = β v + (1 − β)(v_leak + r I)`` with
    ``β = 1 − dt/τ_mem``, a base threshold ``θ``, a reset by subtraction or to ``v_reset``, a surrogate
    Heaviside, and the pre-synaptic trace and post-synaptic factor of that membrane."""

    tau_mem: float
    dt: float
    threshold: float
    v_reset: float
    v_leak: float
    reset: str
    r: float | None
    surrogate: str
    surrogate_slope: float
    detach_reset: bool

    def _check_membrane(self) -> None:
        """Validate the shared parameters and fill in the default input gain ``r = τ_mem/dt``."""
        check_time_constant("tau_mem", self.tau_mem, self.dt)
        if self.reset not in RESETS:
            raise unknown_name("reset", self.reset, RESETS)
        if self.surrogate not in SURROGATES:
            raise unknown_name("surrogate", self.surrogate, SURROGATES)
        for name in ("threshold", "v_reset", "v_leak"):
            check_finite(name, getattr(self, name))
        check_finite("surrogate_slope", self.surrogate_slope, positive=True)
        if not isinstance(self.detach_reset, bool):
            raise ConfigError(f"detach_reset must be true or false, got {self.detach_reset!r}")
        if not self.threshold > self.v_reset:
            raise ConfigError(
                f"threshold ({self.threshold}) must be above v_reset ({self.v_reset}); "
                "otherwise the neuron fires again right after its reset"
            )
        if self.r is None:
            object.__setattr__(self, "r", self.tau_mem / self.dt)
        check_finite("r", self.r, positive=True)

    @property
    def beta(self) -> float:
        return 1.0 - self.dt / self.tau_mem

    def spike_function(self):
        return surrogate_spike(self.surrogate, self.surrogate_slope)

    def _membrane(self, state_v: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
        """``ṽ = β v + (1 − β)(v_leak + r I)``."""
        return self.beta * state_v + (1.0 - self.beta) * (self.v_leak + self.r * drive)

    def _reset(self, v: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        """The membrane after the same-step reset (the reset is not differentiated with ``detach_reset``)."""
        s = spikes.detach() if self.detach_reset else spikes
        if self.reset == "subtract":
            return v - s * self.threshold
        return v - s * (v - self.v_reset)

    def trace_filter(self) -> tuple[float, float]:
        return self.beta, 1.0

    def local_derivative(self, pre, state, kind, window, smoothing, free):
        # the window is centred on the base threshold θ (for ALIF: not the adaptive one)
        return spiking_local_derivative(state.mem, pre, self.threshold, self.beta, self.r, self.v_leak,
                                        kind, window, smoothing, free)

    def local_derivative_(self, pre, state, kind, window, smoothing, free, out=None):
        return spiking_local_derivative(state.mem, pre, self.threshold, self.beta, self.r, self.v_leak,
                                        kind, window, smoothing, free, out=out)

    def _brian2_reset(self, extra: str = "") -> str:
        return ("v -= threshold" if self.reset == "subtract" else "v = v_reset") + extra + "\ns = 1"


class LIFState(NamedTuple):
    """State of a (current-based) LIF population: membrane ``v`` (after reset), synaptic current ``i``
    (``None`` for LIF) and ``mem``, the membrane of the last step before reset."""

    v: torch.Tensor
    i: torch.Tensor | None
    mem: torch.Tensor | None = None


@dataclass(frozen=True)
class LIFParams(LeakyFireMixin, Neuron):
    r"""Leaky integrate-and-fire neuron, current-based when ``tau_syn`` is given (module docstring)."""

    tau_mem: float = 20e-3
    dt: float = 1e-3
    threshold: float = 1.0
    v_reset: float = 0.0
    v_leak: float = 0.0
    reset: str = "subtract"
    tau_syn: float | None = None
    r: float | None = None
    w_in: float | None = None
    surrogate: str = "atan"
    surrogate_slope: float = 2.0
    detach_reset: bool = True

    model = "lif"
    spiking = True

    def __post_init__(self) -> None:
        self._check_membrane()
        if self.tau_syn is not None:
            check_time_constant("tau_syn", self.tau_syn, self.dt)
        if self.w_in is None and self.tau_syn is not None:
            object.__setattr__(self, "w_in", self.tau_syn / self.dt)
        if self.w_in is not None:
            check_finite("w_in", self.w_in, positive=True)

    @property
    def alpha(self) -> float:
        return 0.0 if self.tau_syn is None else 1.0 - self.dt / self.tau_syn

    @property
    def current_based(self) -> bool:
        return self.tau_syn is not None

    def init_state(self, shape, device=None, dtype=None) -> LIFState:
        """The resting state: ``v = v_leak``, ``i = 0``."""
        v = torch.full(shape, float(self.v_leak), device=device, dtype=dtype)
        i = torch.zeros(shape, device=device, dtype=dtype) if self.current_based else None
        return LIFState(v, i, v)

    def step(self, x, state, spike_fn=None):
        """One Euler step: ``(spikes, state)``; ``state.mem`` is the pre-reset membrane."""
        spike_fn = spike_fn or self.spike_function()
        i = None
        drive = x
        if self.current_based:
            i = self.alpha * state.i + (1.0 - self.alpha) * self.w_in * x
            drive = i
        v = self._membrane(state.v, drive)
        spikes = spike_fn(v - self.threshold).to(v.dtype)  # snnTorch's surrogates return float32
        return spikes, LIFState(self._reset(v, spikes), i, v)

    def step_(self, x, state, spike_fn=None, out=None):
        """:meth:`step` in place (no autograd), bit for bit: ``state.mem`` (a buffer allocated once,
        while it aliases ``v``) receives ``ṽ = (1 − β)(v_leak + r I) + β v`` (the same roundings as
        :meth:`_membrane`), the spikes ``H(ṽ − θ)`` are written as floats (``fl(ṽ − θ) > 0`` exactly
        when ``ṽ > θ``; no bool tensor) and ``v`` receives the reset membrane: six passes over
        the population instead of about twelve with as many allocations."""
        if self.current_based or torch.is_grad_enabled():
            return self.step(x, state, spike_fn)
        v = state.v
        mem = state.mem if state.mem is not None and state.mem is not v else torch.empty_like(v)
        torch.mul(x, self.r, out=mem)
        if self.v_leak != 0.0:
            mem.add_(self.v_leak)
        mem.mul_(1.0 - self.beta).add_(v.mul_(self.beta))
        spikes = torch.empty_like(v) if out is None else out
        torch.gt(mem, self.threshold, out=spikes)
        # the reset in one pass: with s ∈ {0, 1} the product s·a is exact, so ṽ + (−1)·a·s rounds once,
        # as ṽ − fl(s a) does (fused or not)
        if self.reset == "subtract":  # ṽ − s θ
            torch.add(mem, spikes, alpha=-self.threshold, out=v)
        elif self.v_reset == 0.0:  # ṽ − s (ṽ − v_reset)
            torch.addcmul(mem, mem, spikes, value=-1.0, out=v)
        else:
            torch.sub(mem, self.v_reset, out=v)
            torch.addcmul(mem, v, spikes, value=-1.0, out=v)
        return spikes, LIFState(v, None, mem)

    def input_gain(self) -> float | None:
        """``g = (1 − β) r`` of ``ṽ = β v + g I + (1 − β) v_leak`` (``None`` for the current-based
        model, whose input passes the synaptic filter first)."""
        return None if self.current_based else (1.0 - self.beta) * self.r

    def step_gained_(self, u, state, offset=None, out=None):
        """:meth:`step_` with the input given as ``g z = u + offset`` (:meth:`Neuron.step_gained_`):
        ``ṽ = (offset + β v) + u + (1 − β) v_leak`` is formed in place in ``v`` (``offset + β v`` one
        fused pass, ``u`` broadcast over the rows), the spikes ``H(ṽ − θ)`` are written into ``out``
        and the reset into ``v``: four passes over the population instead of seven with ``z`` formed
        and then scaled. ``state.mem`` is not kept (``None``): nothing downstream of a streamed
        rule's first layer reads it. The roundings differ from :meth:`step` (``g z`` is rounded
        on its own, ``offset + β v`` once) by about an ulp of ``ṽ``."""
        if self.current_based or torch.is_grad_enabled():
            raise NotImplementedError("step_gained_ is for the plain LIF model in loops without autograd")
        v = state.v
        if offset is None:
            torch.add(u, v, alpha=self.beta, out=v)
        else:
            torch.add(offset, v, alpha=self.beta, out=v)
            v.add_(u)
        if self.v_leak != 0.0:
            v.add_((1.0 - self.beta) * self.v_leak)
        spikes = torch.empty_like(v) if out is None else out
        torch.gt(v, self.threshold, out=spikes)
        if self.reset == "subtract":  # ṽ − s θ
            v.add_(spikes, alpha=-self.threshold)
        elif self.v_reset == 0.0:  # ṽ − s ṽ
            v.addcmul_(v, spikes, value=-1.0)
        else:  # ṽ − s (ṽ − v_reset)
            v.sub_(spikes * (v - self.v_reset))
        return spikes, LIFState(v, None, None)

    # ------------------------------------------------------------------ edges
    def brian2(self) -> Brian2Neuron:
        from brian2 import second

        ns = dict(tau_mem=self.tau_mem * second, v_leak=self.v_leak, r=self.r, threshold=self.threshold,
                  v_reset=self.v_reset)
        reset = self._brian2_reset()
        if self.current_based:
            ns.update(tau_syn=self.tau_syn * second, w_in=self.w_in)
            return Brian2Neuron("s : 1\ni_syn : 1\ndv/dt = (v_leak - v + r*i_syn)/tau_mem : 1", "s", ns,
                                membrane="v", threshold="v > threshold", reset=reset,
                                before_update=("i_syn += dt*(w_in*z - i_syn)/tau_syn",),
                                initial={"v": self.v_leak})
        return Brian2Neuron("s : 1\ndv/dt = (v_leak - v + r*z)/tau_mem : 1", "s", ns, membrane="v",
                            threshold="v > threshold", reset=reset, initial={"v": self.v_leak})

    def to_nir(self, nir, n, scale, index, subtract="refuse"):
        if self.reset == "subtract":
            if subtract != "as_value":
                raise NotTranslatable(
                    f"layer {index} resets by subtraction (v -= threshold), which NIR cannot express: NIR's v_reset "
                    "means reset to a value, so every reader would produce different spikes. Train the model with "
                    "reset = \"value\" (neuron = { model = \"lif\", reset = \"value\", v_reset = 0.0 }), or pass "
                    "subtract=\"as_value\" (CLI: --subtract-as-value) to export it as reset-to-v_reset knowingly")
            warnings.warn(f"layer {index} resets by subtraction but is exported as reset to v_reset = {self.v_reset}: "
                          "its spikes on hardware will differ from neurolearn's", stacklevel=4)
        common = dict(v_leak=per_neuron(self.v_leak, n), v_threshold=per_neuron(self.threshold, n),
                      v_reset=per_neuron(self.v_reset, n), r=per_neuron(self.r, n))
        if self.current_based:
            return f"cubalif{index}", nir.CubaLIF(tau_mem=per_neuron(self.tau_mem * scale, n),
                                                  tau_syn=per_neuron(self.tau_syn * scale, n),
                                                  w_in=per_neuron(self.w_in, n), **common)
        return f"lif{index}", nir.LIF(tau=per_neuron(self.tau_mem * scale, n), **common)

    def to_snntorch(self, snn, index, recurrent, units):
        if self.v_leak != 0:
            raise NotTranslatable(f"layer {index}: v_leak = {self.v_leak} != 0 cannot be expressed in snnTorch neurons")
        if not math.isclose((1.0 - self.beta) * self.r, 1.0, rel_tol=1e-6):
            raise NotTranslatable(f"layer {index}: input gain r (1 - beta) = {(1.0 - self.beta) * self.r:g} != 1 "
                                  "(r differs from tau/dt); snnTorch neurons add their input 1:1")
        if self.reset == "value" and self.v_reset != 0:
            raise NotTranslatable(f"layer {index}: reset to v_reset = {self.v_reset} != 0; snnTorch resets to zero only")
        mech = "subtract" if self.reset == "subtract" else "zero"
        kw = dict(threshold=self.threshold, reset_mechanism=mech, reset_delay=False)
        if self.current_based:
            if not math.isclose((1.0 - self.alpha) * self.w_in, 1.0, rel_tol=1e-6):
                raise NotTranslatable(f"layer {index}: w_in (1 - alpha) != 1; snnTorch's Synaptic adds its input 1:1")
            if recurrent:
                raise NotTranslatable(f"layer {index}: recurrent CubaLIF (RSynaptic) is not converted yet")
            return snn.Synaptic(alpha=self.alpha, beta=self.beta, **kw), "spikes"
        if recurrent:
            return snn.RLeaky(beta=self.beta, linear_features=units, all_to_all=True, **kw), "spikes"
        return snn.Leaky(beta=self.beta, **kw), "spikes"


def cuba_lif(**kwargs) -> LIFParams:
    """A current-based LIF (``tau_syn`` defaults to 5 ms)."""
    kwargs.setdefault("tau_syn", 5e-3)
    return LIFParams(**kwargs)
