r"""Pre-synaptic traces and post-synaptic factors.

- :func:`trace_beta` / :func:`pre_traces`: the perturbation rules' optional pre-synaptic
  trace ``x̄[t] = β x̄[t−1] + x̃[t]``, ``β = 1 − dt/τ`` (``trace_tau``);
- :class:`LayerTracer`: the target-projection / feedback-alignment family's per-layer traces
  (``x̄[t] = β x̄[t−1] + g x[t]`` with the membrane's ``β`` and input gain ``g``, see
  :func:`membrane_filter`), the filtered spike rate and the post-synaptic factor ``ψ``
  (:meth:`LayerTracer.derivative`; the equations are in :mod:`neurolearn.rules.target_projection`).

:func:`membrane_filter` and :meth:`LayerTracer.derivative` are the neuron-specific parts; they
are kept small and self-contained so that they can ask the neuron contract instead.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from neurolearn.errors import ConfigError, unknown_name
from neurolearn.layers import Layer, Taps
from neurolearn.network import Network
from neurolearn.neurons import SPIKE_DERIVATIVES


# ------------------------------------------------------------------ perturbation rules' traces
def trace_beta(model: Network, trace_tau: float | None) -> float:
    """Decay ``β = 1 - dt/τ`` of the pre-synaptic trace (0: the raw input)."""
    if not trace_tau:
        return 0.0
    if trace_tau < model.dt:
        raise ConfigError(f"trace_tau = {trace_tau:g} s is shorter than the model's dt = {model.dt:g} s")
    return 1.0 - model.dt / trace_tau


def pre_traces(xs: list[torch.Tensor], beta: float) -> list[torch.Tensor]:
    """Exponentially filtered inputs ``x̄[t] = β x̄[t-1] + x[t]`` (identity for ``β = 0``)."""
    if beta == 0.0:
        return xs
    out, acc = [], torch.zeros_like(xs[0])
    for x in xs:
        acc = beta * acc + x
        out.append(acc)
    return out


# ------------------------------------------------------------------ target projection's traces
class Signals(NamedTuple):
    """What one layer's synapses see at one step."""

    pre: torch.Tensor  # x̄, the pre-synaptic trace
    rec: torch.Tensor | None  # the recurrent input's trace
    bias: float  # b̄, the trace of a constant 1
    deriv: torch.Tensor  # ψ, the post-synaptic factor
    post: torch.Tensor  # h (rate) or the filtered spike rate r̄


def membrane_filter(layer: Layer) -> tuple[float, float]:
    """``(β, g)`` of the pre-synaptic trace ``x̄ = β x̄ + g x`` (``(0, 1)``: no memory)."""
    return (0.0, 1.0) if layer.neuron is None else layer.neuron.trace_filter()


class SpikeDerivative(NamedTuple):
    """Surrogate-free post-synaptic factor of spiking units (``kind``: window, lif_rate, none)."""

    kind: str = "window"
    window: float = 0.5
    smoothing: float = 0.2

    def check(self) -> "SpikeDerivative":
        if self.kind not in SPIKE_DERIVATIVES:
            raise unknown_name("spike_derivative", self.kind, SPIKE_DERIVATIVES)
        if not (self.window > 0 and self.smoothing > 0):
            raise ConfigError(f"window and smoothing must be positive, got {self.window}, {self.smoothing}")
        return self


class LayerTracer:
    """Keeps one layer's traces over a sequence and turns its taps into :class:`Signals`."""

    def __init__(self, layer: Layer, spike: SpikeDerivative) -> None:
        self.layer = layer
        self.spike = spike
        self.beta, self.gain = membrane_filter(layer)
        self.x_bar: torch.Tensor | None = None
        self.r_bar: torch.Tensor | None = None
        self.b_bar = 0.0
        self.rate: torch.Tensor | None = None
        self.free: torch.Tensor | None = None

    def _trace(self, old: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
        if self.beta == 0.0:
            return new
        return self.gain * new if old is None else self.beta * old + self.gain * new

    def derivative(self, taps: Taps) -> torch.Tensor:
        """``ψ``: the neuron model's surrogate-free factor (``f'`` of rate units; for spiking units the
        chosen ``spike_derivative``; 1 for linear and leaky-integrator units), see
        :meth:`neurolearn.neurons.Neuron.local_derivative`."""
        p = self.layer.neuron
        if p is None:
            return torch.ones_like(taps.pre)
        psi, self.free = p.local_derivative(taps.pre, taps.state, self.spike.kind, self.spike.window,
                                            self.spike.smoothing, self.free)
        return psi

    def update(self, taps: Taps) -> Signals:
        self.x_bar = self._trace(self.x_bar, taps.input)
        rec = None
        if taps.rec is not None:
            self.r_bar = self._trace(self.r_bar, taps.rec)
            rec = self.r_bar
        self.b_bar = self.gain if self.beta == 0.0 else self.beta * self.b_bar + self.gain
        post = taps.act
        if self.layer.spiking:  # the spike rate filtered by the membrane: r̄ = β r̄ + (1 − β) s
            beta, _ = self.layer.neuron.trace_filter()
            s = taps.act
            self.rate = (1 - beta) * s if self.rate is None else beta * self.rate + (1 - beta) * s
            post = self.rate
        return Signals(self.x_bar, rec, self.b_bar, self.derivative(taps), post)
