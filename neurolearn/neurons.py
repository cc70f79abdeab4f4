r"""Neuron dynamics as pure step functions with explicit state.

Every neuron model is a small frozen dataclass of parameters (SI units: seconds, a
dimensionless membrane scale where the threshold is 1 by default) plus a pure function
``step(input, state, params) -> (output, state)``. Nothing is hidden in a module: the state
is what you pass in and what you get back.

Discretisation (one convention, used by the torch engine, the Brian2 backend and the NIR
export alike): **forward Euler with step dt**,

.. math::  \beta = 1 - dt/\tau ,

so that ``dt < tau`` is required (``dt == tau`` gives a memoryless unit). A membrane obeying

.. math::  \tau \frac{dv}{dt} = (v_{leak} - v) + r\, I(t)

becomes ``v[t] = beta * v[t-1] + (1 - beta) * (v_leak + r * I[t])``. By default ``r = tau/dt``,
so ``(1 - beta) * r = 1``: one step of input ``I[t]`` adds ``I[t]`` to the membrane, which
is snnTorch's convention (``mem = beta * mem + input``) and the one NIR readers use.

Spiking neurons fire ``s[t] = H(v[t] - threshold)`` and reset in the same step (as Brian2
does, and snnTorch with ``reset_delay=False``): by subtraction ``v -= s * threshold`` or to a
value ``v = v_reset`` where ``s = 1``. The Heaviside step has a surrogate derivative from
``snntorch.surrogate`` so that BPTT can train through it; local rules never use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from neurolearn.errors import ConfigError, unknown_name

# --------------------------------------------------------------------------------------
# Rate units
# --------------------------------------------------------------------------------------

ACTIVATIONS = ("identity", "tanh", "relu", "leaky_relu", "sigmoid")


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


# The open range of each activation (what an inverse accepts); ``None`` = unbounded side.
ACTIVATION_RANGES: dict[str, tuple[float | None, float | None]] = {
    "identity": (None, None),
    "tanh": (-1.0, 1.0),
    "relu": (0.0, None),
    "leaky_relu": (None, None),
    "sigmoid": (0.0, 1.0),
}


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


def _check_time_constant(name: str, tau: float, dt: float) -> None:
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ConfigError(f"{name} must be a positive number of seconds, got {tau!r}")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt must be a positive number of seconds, got {dt!r}")
    if dt > tau:
        raise ConfigError(
            f"dt = {dt:g} s is larger than {name} = {tau:g} s: forward Euler (beta = 1 - dt/tau) "
            f"would be unstable. Use a smaller dt or a larger {name}."
        )


@dataclass(frozen=True)
class RateParams:
    r"""A rate unit ``h = f(z)``, optionally with leaky-integrator dynamics.

    Static (``tau=None``): ``h[t] = f(z[t])``.
    Leaky integrator (``tau`` given): ``tau dv/dt = -v + z``, i.e.
    ``v[t] = beta * v[t-1] + (1 - beta) * z[t]`` with ``beta = 1 - dt/tau``, and ``h[t] = f(v[t])``
    (steady state ``v = z``: rate units keep unit gain, ``r = 1``).
    """

    activation: str = "tanh"
    negative_slope: float = 0.01
    tau: float | None = None
    dt: float = 1e-3

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise unknown_name("activation", self.activation, ACTIVATIONS)
        if self.tau is not None:
            _check_time_constant("tau", self.tau, self.dt)

    @property
    def beta(self) -> float:
        return 0.0 if self.tau is None else 1.0 - self.dt / self.tau

    @property
    def spiking(self) -> bool:
        return False


def rate_step(
    z: torch.Tensor, v: torch.Tensor | None, p: RateParams
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One step of a rate unit: returns ``(h, v)``; ``v`` is ``None`` for static units."""
    if p.tau is None:
        return activation(p.activation, z, p.negative_slope), None
    v = z * (1.0 - p.beta) if v is None else p.beta * v + (1.0 - p.beta) * z
    return activation(p.activation, v, p.negative_slope), v


# --------------------------------------------------------------------------------------
# Spiking units
# --------------------------------------------------------------------------------------

SURROGATES = ("atan", "fast_sigmoid", "sigmoid")
RESETS = ("subtract", "value")


def surrogate_spike(name: str, slope: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """snnTorch's surrogate-gradient Heaviside: forward ``H(x)``, backward a smooth bump."""
    from snntorch import surrogate

    if name == "atan":
        return surrogate.atan(alpha=slope)
    if name == "fast_sigmoid":
        return surrogate.fast_sigmoid(slope=slope)
    if name == "sigmoid":
        return surrogate.sigmoid(slope=slope)
    raise unknown_name("surrogate", name, SURROGATES)


@dataclass(frozen=True)
class LIFParams:
    r"""Leaky integrate-and-fire neuron, current-based when ``tau_syn`` is given.

    LIF (``tau_syn=None``), input current ``I``:

    .. math::  \tau_{mem} \frac{dv}{dt} = (v_{leak} - v) + r I

    Current-based LIF (CubaLIF), input ``x`` filtered by a synaptic current:

    .. math::  \tau_{syn} \frac{di}{dt} = -i + w_{in} x, \qquad
               \tau_{mem} \frac{dv}{dt} = (v_{leak} - v) + r i

    Forward Euler, ``alpha = 1 - dt/tau_syn``, ``beta = 1 - dt/tau_mem``; with the defaults
    ``r = tau_mem/dt`` and ``w_in = tau_syn/dt``:

    ``i[t] = alpha * i[t-1] + x[t]``,
    ``v[t] = beta * v[t-1] + (1 - beta) * v_leak + i[t]`` (LIF: ``+ I[t]``),
    ``s[t] = H(v[t] - threshold)``, then the reset (``reset="subtract"``:
    ``v -= s * threshold``; ``reset="value"``: ``v = v_reset`` where ``s = 1``).
    """

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

    def __post_init__(self) -> None:
        _check_time_constant("tau_mem", self.tau_mem, self.dt)
        if self.tau_syn is not None:
            _check_time_constant("tau_syn", self.tau_syn, self.dt)
        if self.reset not in RESETS:
            raise unknown_name("reset", self.reset, RESETS)
        if self.surrogate not in SURROGATES:
            raise unknown_name("surrogate", self.surrogate, SURROGATES)
        if not self.threshold > self.v_reset:
            raise ConfigError(
                f"threshold ({self.threshold}) must be above v_reset ({self.v_reset}); "
                "otherwise the neuron fires again right after its reset"
            )
        if self.r is None:
            object.__setattr__(self, "r", self.tau_mem / self.dt)
        if self.w_in is None and self.tau_syn is not None:
            object.__setattr__(self, "w_in", self.tau_syn / self.dt)

    @property
    def beta(self) -> float:
        return 1.0 - self.dt / self.tau_mem

    @property
    def alpha(self) -> float:
        return 0.0 if self.tau_syn is None else 1.0 - self.dt / self.tau_syn

    @property
    def current_based(self) -> bool:
        return self.tau_syn is not None

    @property
    def spiking(self) -> bool:
        return True


class LIFState(NamedTuple):
    """Explicit state of a (current-based) LIF population: membrane ``v`` and synaptic ``i``."""

    v: torch.Tensor
    i: torch.Tensor | None


def lif_init(shape: tuple[int, ...], p: LIFParams, device=None, dtype=None) -> LIFState:
    """The resting state: ``v = v_leak``, ``i = 0``."""
    v = torch.full(shape, float(p.v_leak), device=device, dtype=dtype)
    i = torch.zeros(shape, device=device, dtype=dtype) if p.current_based else None
    return LIFState(v, i)


def lif_step(
    current: torch.Tensor,
    state: LIFState,
    p: LIFParams,
    spike_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, LIFState, torch.Tensor]:
    """One Euler step of a LIF / CubaLIF population.

    Returns ``(spikes, new_state, v_before_reset)``; the pre-reset membrane is what a
    membrane-potential window or a plot wants to see.
    """
    spike_fn = spike_fn or surrogate_spike(p.surrogate, p.surrogate_slope)
    i = None
    drive = current
    if p.current_based:
        i = p.alpha * state.i + (1.0 - p.alpha) * p.w_in * current
        drive = i
    v = p.beta * state.v + (1.0 - p.beta) * (p.v_leak + p.r * drive)
    spikes = spike_fn(v - p.threshold).to(v.dtype)  # snnTorch's surrogates return float32
    s = spikes.detach() if p.detach_reset else spikes
    if p.reset == "subtract":
        v_after = v - s * p.threshold
    else:
        v_after = v - s * (v - p.v_reset)
    return spikes, LIFState(v_after, i), v


@dataclass(frozen=True)
class LIParams:
    r"""Leaky integrator readout (no spikes): ``tau dv/dt = (v_leak - v) + r I``.

    Forward Euler: ``v[t] = beta * v[t-1] + (1 - beta) * (v_leak + r * I[t])``,
    ``beta = 1 - dt/tau``, default ``r = tau/dt`` (input adds to ``v`` one to one).
    """

    tau: float = 20e-3
    dt: float = 1e-3
    v_leak: float = 0.0
    r: float | None = None

    def __post_init__(self) -> None:
        _check_time_constant("tau", self.tau, self.dt)
        if self.r is None:
            object.__setattr__(self, "r", self.tau / self.dt)

    @property
    def beta(self) -> float:
        return 1.0 - self.dt / self.tau

    @property
    def spiking(self) -> bool:
        return False


def li_step(current: torch.Tensor, v: torch.Tensor | None, p: LIParams) -> torch.Tensor:
    """One Euler step of a leaky integrator; ``v=None`` starts from ``v_leak``."""
    if v is None:
        v = torch.full_like(current, float(p.v_leak))
    return p.beta * v + (1.0 - p.beta) * (p.v_leak + p.r * current)


NeuronParams = RateParams | LIFParams | LIParams


def neuron_from_config(cfg: dict | str | None, dt: float) -> NeuronParams | None:
    """Build neuron parameters from a config entry.

    ``"tanh"`` (any activation name) gives a static rate unit; a table with ``model`` set
    to ``"rate"``, ``"lif"``, ``"cuba_lif"`` or ``"li"`` gives the full parameter set; the
    network's ``dt`` fills in unless the entry sets its own.
    """
    if cfg is None:
        return None
    if isinstance(cfg, str):
        cfg = {"model": "rate", "activation": cfg} if cfg in ACTIVATIONS else {"model": cfg}
    cfg = dict(cfg)
    model = cfg.pop("model", "rate")
    cfg.setdefault("dt", dt)
    try:
        if model == "rate":
            return RateParams(**cfg)
        if model == "lif":
            return LIFParams(**cfg)
        if model == "cuba_lif":
            cfg.setdefault("tau_syn", 5e-3)
            return LIFParams(**cfg)
        if model == "li":
            return LIParams(**cfg)
    except TypeError as exc:  # an unknown keyword
        raise ConfigError(f"bad parameters for neuron model {model!r}: {exc}") from None
    raise unknown_name("neuron model", model, ("rate", "lif", "cuba_lif", "li", *ACTIVATIONS))
