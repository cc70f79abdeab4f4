r"""Eligibility traces of e-prop (Bellec et al. 2020) for the neuron models that support it.

A neuron model enters e-prop through three local quantities (PLASTICITY.md §2.1-2.4, the
project's Euler convention ``ṽ[t] = β v[t−1] + g·x[t]``, ``g = (1 − β) r``, same-step
subtractive reset that is not differentiated):

- the **pre-synaptic trace** ``ε^v_i[t] = β ε^v_i[t−1] + g·pre_i[t]`` (``∂ṽ_j[t]/∂W_ji`` along the
  local path; the same for every post-synaptic neuron ``j`` because the reset subtracts a
  constant), ``pre_i[t]`` = the input ``x_i[t]``, the recurrent spike ``z_i[t−1]`` or 1 (bias);
- the **pseudo-derivative** ``ψ_j[t] = (γ/θ0)·max(0, 1 − |ṽ_j[t] − A_j[t]|/θ0)`` on the pre-reset
  membrane ``ṽ`` (``state.mem``) and the threshold ``A`` of that step, 0 while refractory;
- for **adaptive** neurons (ALIF: ``A[t] = θ0 + β_a a[t−1]``, ``a[t] = ρ a[t−1] + z[t]``) the
  per-synapse adaptation trace ``ε^a_ji[t] = ∂a_j[t]/∂W_ji``:

  ``e_ji[t] = ψ_j[t]·(ε^v_i[t] − β_a ε^a_ji[t−1])``,
  ``ε^a_ji[t] = (ρ − β_a ψ_j[t]) ε^a_ji[t−1] + ψ_j[t] ε^v_i[t] = ρ ε^a_ji[t−1] + e_ji[t]``

  (the second form: ``a`` is the ρ-filtered own spike train, so its local derivative is the
  ρ-filtered eligibility). For LIF, ``e_ji[t] = ψ_j[t] ε^v_i[t]``.

:func:`eprop_dynamics` gives a model's :class:`EpropDynamics`; models without one are refused
with a message naming what is missing. The table of supported models lives here (keyed by the
model's config name) until the neuron contract grows an ``eprop`` declaration of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neurolearn.errors import ConfigError
from neurolearn.neurons import Neuron


@dataclass(frozen=True)
class EpropDynamics:
    """What e-prop needs of one neuron model (module docstring).

    ``beta`` membrane decay per step, ``gain`` the input gain ``(1 − β) r``, ``threshold`` θ0
    (the pseudo-derivative's width and normaliser), ``rho``/``adapt_scale`` the adaptation
    (``adapt_scale = 0``: no adaptation trace), ``refractory_steps`` (``ψ = 0`` while the
    previous state's counter ``q > 0``, when ``> 1``: the ALIF step's own rule).
    """

    beta: float
    gain: float
    threshold: float
    rho: float = 0.0
    adapt_scale: float = 0.0
    refractory_steps: int = 0

    @property
    def adaptive(self) -> bool:
        return self.adapt_scale != 0.0

    def threshold_of(self, before: Any) -> torch.Tensor | float:
        """The threshold ``A[t]`` of a step, from the state before it."""
        if self.adaptive:
            return self.threshold + self.adapt_scale * before.a
        return self.threshold

    def pseudo_derivative(self, before: Any, after: Any, gamma: float) -> torch.Tensor:
        r"""``ψ[t] = (γ/θ0) max(0, 1 − |ṽ[t] − A[t]|/θ0)``, 0 while refractory; ``[B, n]``."""
        u = after.mem - self.threshold_of(before)
        psi = (gamma / self.threshold) * (1.0 - u.abs() / self.threshold).clamp_min(0.0)
        if self.refractory_steps > 1:
            psi = psi * (before.q <= 0).to(psi.dtype)
        return psi


def _lif(p: Any) -> EpropDynamics:
    if p.tau_syn is not None:
        raise ConfigError("e-prop: a current-based LIF (tau_syn set) has a second state variable whose "
                          "eligibility trace is not implemented; use neuron = { model = \"lif\" } or \"alif\"")
    _subtractive(p)
    return EpropDynamics(p.beta, (1.0 - p.beta) * p.r, p.threshold)


def _alif(p: Any) -> EpropDynamics:
    _subtractive(p)
    return EpropDynamics(p.beta, (1.0 - p.beta) * p.r, p.threshold, p.rho, p.adapt_scale, p.refractory_steps)


def _subtractive(p: Any) -> None:
    if p.reset != "subtract":
        raise ConfigError(f"e-prop: neuron model {p.model!r} with reset = {p.reset!r}: the eligibility traces "
                          "assume the subtractive reset (v -= threshold; a reset to a value makes the membrane "
                          "trace per synapse); set reset = \"subtract\"")
    if not p.detach_reset:
        raise ConfigError(f"e-prop: neuron model {p.model!r} has detach_reset = false; e-prop treats the reset "
                          "as a path through the spike (not local), so the layer must detach it: set "
                          "detach_reset = true")


#: neuron config name -> its e-prop dynamics
EPROP_MODELS = {"lif": _lif, "alif": _alif}


def eprop_dynamics(neuron: Neuron | None) -> EpropDynamics:
    """The e-prop dynamics of a spiking layer's neuron model, or a :class:`ConfigError` naming what
    is missing (non-spiking layers and models without an eligibility trace here)."""
    model = getattr(neuron, "model", None)
    if neuron is None or not neuron.spiking:
        raise ConfigError(f"e-prop trains a recurrent layer of spiking neurons (lif or alif); the first "
                          f"layer has neuron model {model!r}")
    if model not in EPROP_MODELS:
        raise ConfigError(f"e-prop has no eligibility trace for neuron model {model!r} (it supports "
                          f"{', '.join(EPROP_MODELS)}); use neuron = {{ model = \"alif\", ... }} or \"lif\"")
    return EPROP_MODELS[model](neuron)


class EligibilityTraces:
    r"""The per-sample traces of one layer: ``ε^v`` ``[B, n_pre]`` and, for adaptive neurons,
    ``ε^a`` ``[B, n_post, n_pre]``. :meth:`step` advances them by one time step and returns the
    eligibility ``e[t]`` ``[B, n_post, n_pre]``."""

    def __init__(self, dyn: EpropDynamics, batch: int, n_post: int, n_pre: int, device=None, dtype=None) -> None:
        self.dyn = dyn
        self.eps_v = torch.zeros(batch, n_pre, device=device, dtype=dtype)
        self.eps_a = (torch.zeros(batch, n_post, n_pre, device=device, dtype=dtype) if dyn.adaptive else None)

    def step(self, pre: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """Advance with this step's pre-synaptic activity ``pre`` ``[B, n_pre]`` and ``ψ`` ``[B, n_post]``."""
        d = self.dyn
        self.eps_v.mul_(d.beta).add_(pre, alpha=d.gain)
        if self.eps_a is None:
            return psi[:, :, None] * self.eps_v[:, None, :]
        e = psi[:, :, None] * (self.eps_v[:, None, :] - d.adapt_scale * self.eps_a)
        self.eps_a.mul_(d.rho).add_(e)
        return e


class _PseudoSpike(torch.autograd.Function):
    """Heaviside ``H(u)`` forward, e-prop's piecewise-linear pseudo-derivative backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, gamma: float, threshold: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(u)
        ctx.gamma, ctx.threshold = gamma, threshold
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (u,) = ctx.saved_tensors
        psi = (ctx.gamma / ctx.threshold) * (1.0 - u.abs() / ctx.threshold).clamp_min(0.0)
        return grad * psi, None, None


def pseudo_spike(gamma: float, threshold: float):
    r"""A spike function for a layer (``layer._spike_fn``) whose surrogate derivative is e-prop's
    ``ψ = (γ/θ0) max(0, 1 − |u|/θ0)`` of ``u = ṽ − A``: BPTT with the same pseudo-derivative as e-prop
    (the gradient checks)."""
    return lambda u: _PseudoSpike.apply(u, float(gamma), float(threshold))
