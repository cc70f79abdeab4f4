r"""Adaptive leaky integrate-and-fire neuron (ALIF; Bellec et al. 2018, 2020): a LIF neuron whose
threshold rises with each spike and relaxes back, the neuron of LSNNs and e-prop.

Continuous form:

.. math::  \tau_m \frac{dv}{dt} = (v_{leak} - v) + r I, \qquad \tau_a \frac{da}{dt} = -a,\qquad
           A(t) = \theta_0 + \beta_a\, a(t)

a spike when ``v > A``, then ``v → v − θ0`` (or ``v_reset``) and ``a → a + 1``; no spike during the
refractory time ``t_ref`` after one.

neurolearn step (forward Euler, ``β = 1 − dt/τ_m``, ``ρ = 1 − dt/τ_a``, ``n_ref = round(t_ref/dt)``),
in this order:

1. ``ṽ[t] = β v[t−1] + (1 − β)(v_leak + r x[t])`` (default ``r = τ_m/dt``: input adds 1:1);
2. ``A[t] = θ0 + β_a a[t−1]`` (the adaptation from the end of the previous step);
3. ``z[t] = H(ṽ[t] − A[t])``, forced to 0 while refractory (``q[t−1] > 0``);
4. ``v[t] = ṽ[t] − z[t] θ0`` (subtract the *base* threshold, as Bellec and NEST) or ``v_reset``;
5. ``a[t] = ρ a[t−1] + z[t]``;  ``q[t] = clip(q[t−1] + n_ref z[t] − 1, 0, n_ref)``
   (the e-prop code's counter: ``n_ref − 1`` silent steps after a spike).

This is the e-prop paper's 2020 form up to its exact decay ``e^{−dt/τ}`` (use
``τ = dt/(1 − e^{−dt/τ_src})`` to reproduce a source's decay) and its reset after the next decay.
``adapt_scale`` is Bellec's β (renamed: ``beta`` is the membrane decay here); the 2018 LSNN form's
``β_2018`` maps to ``β_a = (1 − ρ) β_2018``.

Translations: Brian2 (``dv/dt`` as LIF, ``a`` decayed after the threshold test and incremented by
the reset, ``refractory = n_ref dt``); NIR has no adaptive node (refused: the nearest subgraph
gives an adaptation *current*, different dynamics); snnTorch has no ALIF neuron (refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from neurolearn.neurons.base import Brian2Neuron, Neuron, NotTranslatable, check_finite, check_time_constant
from neurolearn.neurons.lif import LeakyFireMixin


class ALIFState(NamedTuple):
    """State of an ALIF population: membrane ``v`` (after reset), adaptation ``a``, refractory counter
    ``q`` (steps) and ``mem``, the membrane before reset of the last step."""

    v: torch.Tensor
    a: torch.Tensor
    q: torch.Tensor
    mem: torch.Tensor | None = None


@dataclass(frozen=True)
class ALIFParams(LeakyFireMixin, Neuron):
    r"""Adaptive LIF neuron (module docstring). Times in seconds; the membrane scale is dimensionless."""

    tau_mem: float = 20e-3
    dt: float = 1e-3
    threshold: float = 1.0
    tau_adapt: float = 200e-3
    adapt_scale: float = 0.07
    refractory: float = 0.0
    v_reset: float = 0.0
    v_leak: float = 0.0
    reset: str = "subtract"
    r: float | None = None
    surrogate: str = "atan"
    surrogate_slope: float = 2.0
    detach_reset: bool = True

    model = "alif"
    spiking = True

    def __post_init__(self) -> None:
        self._check_membrane()
        check_time_constant("tau_adapt", self.tau_adapt, self.dt)
        check_finite("adapt_scale", self.adapt_scale, non_negative=True)
        check_finite("refractory", self.refractory, non_negative=True)

    @property
    def rho(self) -> float:
        """Decay of the adaptation per step, ``ρ = 1 − dt/τ_a``."""
        return 1.0 - self.dt / self.tau_adapt

    @property
    def refractory_steps(self) -> int:
        return int(round(self.refractory / self.dt))

    def init_state(self, shape, device=None, dtype=None) -> ALIFState:
        v = torch.full(shape, float(self.v_leak), device=device, dtype=dtype)
        zeros = torch.zeros(shape, device=device, dtype=dtype)
        return ALIFState(v, zeros, zeros, v)

    def adaptive_threshold(self, state: ALIFState) -> torch.Tensor:
        """``A = θ0 + β_a a`` for the next step (from a state at the end of a step)."""
        return self.threshold + self.adapt_scale * state.a

    def step(self, x, state, spike_fn=None):
        """One Euler step (module docstring): ``(spikes, state)``."""
        spike_fn = spike_fn or self.spike_function()
        v = self._membrane(state.v, x)
        spikes = spike_fn(v - self.adaptive_threshold(state)).to(v.dtype)
        n_ref = self.refractory_steps
        if n_ref > 1:
            spikes = spikes * (state.q <= 0).to(v.dtype)
        v_after = self._reset(v, spikes)
        a = self.rho * state.a + spikes
        q = (state.q + n_ref * spikes.detach() - 1.0).clamp(0.0, float(n_ref)) if n_ref > 1 else state.q
        return spikes, ALIFState(v_after, a, q, v)

    # ------------------------------------------------------------------ edges
    def brian2(self) -> Brian2Neuron:
        from brian2 import second

        ns = dict(tau_mem=self.tau_mem * second, v_leak=self.v_leak, r=self.r, threshold=self.threshold,
                  v_reset=self.v_reset, adapt_scale=self.adapt_scale, rho=self.rho)
        reset = self._brian2_reset("\na += 1")
        n_ref = self.refractory_steps
        return Brian2Neuron("s : 1\na : 1\ndv/dt = (v_leak - v + r*z)/tau_mem : 1", "s", ns, membrane="v",
                            threshold="v > threshold + adapt_scale*a", reset=reset,
                            refractory=(n_ref * self.dt * second) if n_ref > 1 else None,
                            after_threshold=("a = rho*a",), initial={"v": self.v_leak})

    def to_nir(self, nir, n, scale, index, subtract="refuse"):
        raise NotTranslatable(
            f"layer {index} is an adaptive LIF (alif): NIR has no node with a spike-triggered threshold "
            "adaptation (an LIF -> LI -> Scale loop would be an adaptation current, different dynamics). "
            "Export a network of lif / cuba_lif / li neurons instead")

    def to_snntorch(self, snn, index, recurrent, units):
        raise NotTranslatable(f"layer {index} is an adaptive LIF (alif): snnTorch has no neuron with threshold "
                              "adaptation; use lif / cuba_lif / li for snnTorch")
