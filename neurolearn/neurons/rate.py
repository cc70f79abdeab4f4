r"""Rate units ``h = f(z)``, static or with leaky-integrator dynamics.

Static (``tau=None``): ``h[t] = f(z[t])``.
Leaky (``tau`` given): ``τ dv/dt = −v + z``, forward Euler ``v[t] = β v[t−1] + (1 − β) z[t]``,
``β = 1 − dt/τ``, and ``h[t] = f(v[t])`` (steady state ``v = z``: rate units keep unit gain).

Non-linearities ``f``: identity, tanh, relu, leaky_relu (slope ``negative_slope`` below 0),
sigmoid. Translations: Brian2 (a subexpression, or ``dv/dt = (z − v)/τ``); NIR and snnTorch
refuse (they describe spiking and leaky-integrator neurons, not rate non-linearities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from neurolearn.errors import unknown_name
from neurolearn.neurons.base import Brian2Neuron, Neuron, NotTranslatable, check_finite, check_time_constant

ACTIVATIONS = ("identity", "tanh", "relu", "leaky_relu", "sigmoid")

# The open range of each activation (what an inverse accepts); ``None`` = unbounded side.
ACTIVATION_RANGES: dict[str, tuple[float | None, float | None]] = {
    "identity": (None, None),
    "tanh": (-1.0, 1.0),
    "relu": (0.0, None),
    "leaky_relu": (None, None),
    "sigmoid": (0.0, 1.0),
}


def activation(name: str, z: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """Apply a pointwise rate non-linearity ``f(z)``."""
    if name == "identity":
        return z
    if name == "tanh":
        return torch.tanh(z)
    if name == "relu":
        return torch.relu(z)
    if name == "leaky_relu":
        return F.leaky_relu(z, negative_slope)
    if name == "sigmoid":
        return torch.sigmoid(z)
    raise unknown_name("activation", name, ACTIVATIONS)


def activation_derivative(name: str, z: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """The derivative ``f'(z)`` of :func:`activation`, for rules that need it (DRTP, DFA)."""
    if name == "identity":
        return torch.ones_like(z)
    if name == "tanh":
        return 1.0 - torch.tanh(z) ** 2
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "leaky_relu":
        return torch.where(z > 0, torch.ones_like(z), torch.full_like(z, negative_slope))
    if name == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1.0 - s)
    raise unknown_name("activation", name, ACTIVATIONS)


def activation_inverse(name: str, h: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """A pre-activation ``z`` with ``f(z) = h`` for ``h`` inside :data:`ACTIVATION_RANGES`.

    ``tanh``: ``atanh(h)``; ``sigmoid``: ``log(h / (1 - h))``; ``leaky_relu``: ``h`` or
    ``h / slope``; ``relu``: ``h`` (the inverse on ``h >= 0``; a negative ``h`` stays
    negative, so ``relu(z)`` is its projection onto the range). Callers that pass values
    outside a bounded range must first map them into it (ZORB's "relaxation").
    """
    if name in ("identity", "relu"):
        return h
    if name == "tanh":
        return torch.atanh(h)
    if name == "sigmoid":
        return torch.log(h) - torch.log1p(-h)
    if name == "leaky_relu":
        return torch.where(h >= 0, h, h / negative_slope)
    raise unknown_name("activation", name, ACTIVATIONS)


def rate_expression(name: str, var: str, negative_slope: float = 0.01) -> str:
    """The Brian2 expression of the rate non-linearity ``f(var)``."""
    if name == "identity":
        return var
    if name == "tanh":
        return f"tanh({var})"
    if name == "relu":
        return f"{var}*int({var} > 0)"
    if name == "leaky_relu":
        return f"{var}*int({var} > 0) + {negative_slope!r}*{var}*int({var} <= 0)"
    if name == "sigmoid":
        return f"1.0/(1.0 + exp(-{var}))"
    raise unknown_name("activation", name, ACTIVATIONS)


class RateState(NamedTuple):
    """State of a rate population: the integrator ``v`` (``None`` for static units); ``mem`` is ``v``."""

    v: torch.Tensor | None = None

    @property
    def mem(self) -> torch.Tensor | None:
        return self.v


@dataclass(frozen=True)
class RateParams(Neuron):
    r"""A rate unit ``h = f(z)``, optionally a leaky integrator (module docstring)."""

    activation: str = "tanh"
    negative_slope: float = 0.01
    tau: float | None = None
    dt: float = 1e-3

    model = "rate"
    spiking = False
    output_rescaling = True

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise unknown_name("activation", self.activation, ACTIVATIONS)
        check_finite("negative_slope", self.negative_slope)
        check_finite("dt", self.dt, positive=True)
        if self.tau is not None:
            check_time_constant("tau", self.tau, self.dt)

    @property
    def beta(self) -> float:
        return 0.0 if self.tau is None else 1.0 - self.dt / self.tau

    @property
    def has_memory(self) -> bool:
        return self.tau is not None

    def init_state(self, shape, device=None, dtype=None) -> RateState:
        return RateState(None)

    def step(self, x, state, spike_fn=None):
        """``(h, state)``; see the module docstring."""
        if self.tau is None:
            return activation(self.activation, x, self.negative_slope), state
        v = x * (1.0 - self.beta) if state.v is None else self.beta * state.v + (1.0 - self.beta) * x
        return activation(self.activation, v, self.negative_slope), RateState(v)

    def trace_filter(self) -> tuple[float, float]:
        return (self.beta, 1.0 - self.beta) if self.tau is not None else (0.0, 1.0)

    def local_derivative(self, pre, state, kind, window, smoothing, free):
        arg = pre if self.tau is None else state.v
        return activation_derivative(self.activation, arg, self.negative_slope), free

    @property
    def static_activation(self) -> str | None:
        return self.activation if self.tau is None else None

    def linear_response(self) -> tuple[float, float, float] | None:
        if self.activation != "identity":
            return None
        return (0.0, 1.0, 0.0) if self.tau is None else (self.beta, 1.0 - self.beta, 0.0)

    def brian2(self) -> Brian2Neuron:
        from brian2 import second

        if self.tau is None:
            return Brian2Neuron(f"h = {rate_expression(self.activation, 'z', self.negative_slope)} : 1", "h")
        return Brian2Neuron(
            f"dv/dt = (z - v)/tau : 1\nh = {rate_expression(self.activation, 'v', self.negative_slope)} : 1",
            "h", {"tau": self.tau * second}, membrane="v")

    def to_nir(self, nir, n, scale, index, subtract="refuse"):
        raise NotTranslatable(
            f"layer {index} has rate units ({self.activation}); NIR describes spiking and leaky-integrator neurons, "
            "not rate non-linearities. Only spiking networks can be exported: use neuron models "
            "lif / cuba_lif / li (e.g. models/snn-mnist.toml)")

    def to_snntorch(self, snn, index, recurrent, units):
        raise NotTranslatable(f"layer {index} has rate units ({self.activation}); snnTorch models are spiking: "
                              "use lif / cuba_lif / li neurons")
