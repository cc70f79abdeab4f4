r"""The neuron contract: what every neuron model brings, and what the rest of neurolearn may ask it.

A neuron model is a **frozen dataclass of parameters** (SI units: seconds; the membrane in the
model's own scale, dimensionless with threshold 1 for LIF, mV for Izhikevich, volts for AdEx),
validated when it is built, that subclasses :class:`Neuron` and provides

- ``init_state(shape, device, dtype) -> State``: the resting state, a ``NamedTuple`` of the
  model's own (``LIFState(v, i, mem)``, ``ALIFState(v, a, refractory, mem)``, ...); every state
  has a field or property ``mem``: the membrane of the last step *before* reset (what the taps,
  surrogate gradients, windows and e-prop read; ``None`` for static units);
- ``step(x, state, spike_fn=None) -> (output, state)``: one forward-Euler step of length ``dt``
  on the input ``x`` (the pre-activation ``z``: the input current of a spiking unit), pure:
  nothing is stored on the object. ``spike_fn`` is the surrogate Heaviside
  (:meth:`spike_function`; a layer builds it once and passes it in).

and answers the edges through small declarations, so that nothing outside the model's own file
switches on its type:

==========================  ===================================================================
``spiking``                  emits spikes (a class constant)
``has_memory``               carries state from one step to the next (BP becomes BPTT)
``spike_function()``         snnTorch's surrogate-gradient Heaviside (spiking models)
``input_gain()``             ``g`` of a linear input ``ṽ = β v + g z + …`` (:meth:`step_gained_`
                             takes ``g z``: streamed local rules), else ``None``
``trace_filter()``           ``(β, g)`` of the pre-synaptic trace ``x̄ = β x̄ + g x`` that equals
                             ``∂v/∂W`` without reset (target projection, e-prop)
``local_derivative(...)``    the surrogate-free post-synaptic factor ``ψ`` of target projection
``static_activation``        the name of ``f`` of a static rate unit ``h = f(z)`` (solvers), else ``None``
``linear_response()``        ``(β, g, v_rest)`` if the output is a linear filter of the input
                             (closed-form readout solvers), else ``None``
``brian2()``                 its Brian2 equations (:class:`Brian2Neuron`) or a refusal
``to_nir(...)``              its NIR node, or a refusal that names what NIR lacks
``to_snntorch(...)``         its snnTorch counterpart, or a refusal
==========================  ===================================================================

A refusal is a :class:`NotTranslatable` (a :class:`~neurolearn.errors.ConfigError`) whose message
says what the target cannot express and what to change.

**Discretisation** (one convention, used by the torch engine, Brian2 and NIR alike): forward Euler
with step ``dt``. A membrane ``τ dv/dt = (v_leak − v) + r I`` becomes
``v[t] = β v[t−1] + (1 − β)(v_leak + r I[t])``, ``β = 1 − dt/τ``; by default ``r = τ/dt``, so one
step of input adds ``I[t]`` to the membrane (snnTorch's convention). Spiking units fire and reset
in the same step (``s[t] = H(ṽ[t] − θ)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar

import torch

from neurolearn.errors import ConfigError, expect_number, unknown_key, unknown_name

SpikeFn = Callable[[torch.Tensor], torch.Tensor]

SURROGATES = ("atan", "fast_sigmoid", "sigmoid")
SPIKE_DERIVATIVES = ("window", "lif_rate", "none")


class NotTranslatable(ConfigError):
    """A neuron model that a target (Brian2, NIR, snnTorch) cannot represent; the message says why."""


@dataclass(frozen=True)
class Brian2Neuron:
    """What the Brian2 backend needs to simulate a population of one neuron model.

    ``equations`` use the layer's pre-activation ``z`` (declared by the backend, one value per step,
    to be added one to one per step like the torch engine's input) and are integrated with
    ``method='euler'``; ``namespace`` holds the constants (times as Brian2 quantities);
    ``activity`` names the variable the next layer reads; ``membrane`` the variable monitored as
    the ``mem`` tap (pre-reset); ``threshold``/``reset``/``refractory`` are NeuronGroup arguments
    (``reset`` must also write ``s = 1`` for spiking models: the backend clears ``s`` each step);
    ``before_update`` are operations run (in order) just before the state update, and
    ``after_threshold`` just after the threshold test and before the reset, both every step;
    ``initial`` sets state variables before the run.
    """

    equations: str
    activity: str
    namespace: dict[str, Any] = field(default_factory=dict)
    membrane: str | None = None
    threshold: str | None = None
    reset: str | None = None
    refractory: Any = None
    before_update: tuple[str, ...] = ()
    after_threshold: tuple[str, ...] = ()
    initial: dict[str, float] = field(default_factory=dict)


def check_time_constant(name: str, tau: float, dt: float) -> None:
    """A positive, finite ``tau`` and ``dt`` (seconds) with ``dt <= tau`` (forward Euler is stable)."""
    expect_number(name, tau)
    expect_number("dt", dt)
    if not (math.isfinite(tau) and tau > 0):
        raise ConfigError(f"{name} must be a positive number of seconds, got {tau!r}")
    if not (math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt must be a positive number of seconds, got {dt!r}")
    if dt > tau:
        raise ConfigError(
            f"dt = {dt:g} s is larger than {name} = {tau:g} s: forward Euler (beta = 1 - dt/tau) "
            f"would be unstable. Use a smaller dt or a larger {name}."
        )


def check_finite(name: str, value: float, *, positive: bool = False, non_negative: bool = False) -> None:
    """A finite number (not a boolean), optionally ``> 0`` or ``>= 0``."""
    expect_number(name, value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    if non_negative and not value >= 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")


def surrogate_spike(name: str, slope: float) -> SpikeFn:
    """snnTorch's surrogate-gradient Heaviside: forward ``H(x)`` (``x > 0``), backward a smooth bump."""
    from snntorch import surrogate

    if name == "atan":
        return surrogate.atan(alpha=slope)
    if name == "fast_sigmoid":
        return surrogate.fast_sigmoid(slope=slope)
    if name == "sigmoid":
        return surrogate.sigmoid(slope=slope)
    raise unknown_name("surrogate", name, SURROGATES)


class Neuron:
    """Base class of the neuron models (see the module docstring for the contract).

    Subclasses are frozen dataclasses with a ``dt`` field and set the class constants ``model``
    (the name in a model file: ``neuron = { model = "lif", ... }``) and ``spiking``.
    """

    model: ClassVar[str] = ""
    spiking: ClassVar[bool] = False
    #: whether a layer keeps an affine output rescaling ``h = scale·f(z) + shift`` (rate units; ZORB stores one)
    output_rescaling: ClassVar[bool] = False
    dt: float

    # ------------------------------------------------------------------ dynamics
    def init_state(self, shape: tuple[int, ...], device=None, dtype=None) -> Any:
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: Any, spike_fn: SpikeFn | None = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def step_(self, x: torch.Tensor, state: Any, spike_fn: SpikeFn | None = None,
              out: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """:meth:`step` for loops without autograd (``torch.no_grad``) that own ``state``: a model may
        update ``state``'s tensors in place and return them, and write its output into ``out`` (a
        buffer shaped like ``x``, reused by the caller); the same numbers as :meth:`step`, bit for
        bit; ``x`` is left as it is. Default: :meth:`step`."""
        return self.step(x, state, spike_fn)

    def input_gain(self) -> float | None:
        """``g`` when the input enters the state linearly, ``ṽ = β v + g z + (1 − β) v_leak``, and
        :meth:`step_gained_` takes it already multiplied (``u = g z``); ``None`` for every other model."""
        return None

    def step_gained_(self, u: torch.Tensor, state: Any, offset: torch.Tensor | None = None,
                     out: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """:meth:`step_` for a caller that multiplies the input by :meth:`input_gain` itself, once for a
        term shared by many rows or steps: the input is ``z = (u + offset) / g``, ``u`` broadcast against
        the state, ``offset`` (optional) shaped like it (e.g. a noise current frozen over the sequence,
        times ``g``). Only models whose :meth:`input_gain` is a number implement it."""
        raise NotImplementedError(f"neuron model {self.model!r} has no step_gained_ (input_gain() is None)")

    @property
    def has_memory(self) -> bool:
        """Whether the state carries over from one step to the next (BP becomes BPTT)."""
        return True

    def spike_function(self) -> SpikeFn | None:
        """The surrogate Heaviside of a spiking model (``None`` for non-spiking ones)."""
        return None

    # ------------------------------------------------------------------ what local rules ask
    def trace_filter(self) -> tuple[float, float]:
        """``(β, g)`` of the pre-synaptic trace ``x̄[t] = β x̄[t−1] + g x[t]`` (``(0, 1)``: no memory)."""
        return 0.0, 1.0

    def local_derivative(self, pre: torch.Tensor, state: Any, kind: str, window: float, smoothing: float,
                         free: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The post-synaptic factor ``ψ`` of a surrogate-free rule (target projection, DFA) at one step.

        ``pre`` is the input ``z``, ``state`` the state after the step; ``kind``/``window``/
        ``smoothing`` choose the factor of spiking units (:data:`SPIKE_DERIVATIVES`); ``free`` is
        the rule's own running free membrane (for ``lif_rate``). Returns ``(ψ, free)``.
        """
        return torch.ones_like(pre), free

    def local_derivative_(self, pre: torch.Tensor, state: Any, kind: str, window: float, smoothing: float,
                          free: torch.Tensor | None, out: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`local_derivative` for loops without autograd: a model may write ``ψ`` into ``out`` (a
        buffer shaped like ``pre``, reused by the caller) and update ``free`` in place; the same
        numbers, bit for bit. Default: :meth:`local_derivative`."""
        return self.local_derivative(pre, state, kind, window, smoothing, free)

    @property
    def static_activation(self) -> str | None:
        """The name of ``f`` when the unit is a static rate unit ``h = f(z)`` (what layer-wise solvers such
        as ZORB and semi-implicit BP invert or differentiate), else ``None``."""
        return None

    def linear_response(self) -> tuple[float, float, float] | None:
        """``(β, g, v_rest)`` when the output is a linear filter of the input,
        ``y[t] = β y[t−1] + g z[t] + (1 − β) v_rest`` starting from ``v_rest`` (what a closed-form
        readout solver needs); ``None`` for non-linear units."""
        return None

    # ------------------------------------------------------------------ the edges
    def brian2(self) -> Brian2Neuron:
        raise NotTranslatable(f"neuron model {self.model!r} has no Brian2 translation")

    def to_nir(self, nir: Any, n: int, scale: float, index: int, subtract: str = "refuse") -> tuple[str, Any]:
        """``(node name, NIR node)`` of a population of ``n`` neurons, time constants times ``scale``."""
        raise NotTranslatable(f"neuron model {self.model!r} has no NIR node")

    def to_snntorch(self, snn: Any, index: int, recurrent: bool, units: int) -> tuple[Any, str]:
        """``(snnTorch neuron module, readout kind 'spikes' | 'mem')``."""
        raise NotTranslatable(f"neuron model {self.model!r} has no snnTorch counterpart")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "Neuron":
        """Build from a config table, refusing unknown keys with the nearest valid one."""
        known = [f.name for f in fields(cls) if f.init]  # type: ignore[arg-type]
        for key in cfg:
            if key not in known:
                raise unknown_key(f"neuron model {cls.model!r}", key, known)
        return cls(**cfg)


def spiking_local_derivative(mem: torch.Tensor, pre: torch.Tensor, threshold: float, beta: float, r: float,
                             v_rest: float, kind: str, window: float, smoothing: float,
                             free: torch.Tensor | None, out: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""The surrogate-free factor ``ψ`` of a spiking unit with a leaky membrane.

    - ``"window"``: ``ψ = 1[|v − θ| < w θ]`` on the pre-reset membrane ``v``;
    - ``"lif_rate"``: the slope of the LIF rate-transfer function, ``ψ = σ((u − θ)/(s θ))/θ`` with
      the free membrane ``u[t] = β u[t−1] + (1 − β)(v_rest + r z[t])`` (no reset);
    - ``"none"``: ``ψ = 1``.

    With ``out`` (a buffer shaped like ``pre``; no autograd) ``ψ`` is written into it and ``free``
    updated in place, with the same roundings: the window in three passes (``v − θ``, ``|·|``, the
    comparison written as floats) instead of four allocating ones through a bool tensor.
    """
    if kind not in SPIKE_DERIVATIVES:
        raise unknown_name("spike_derivative", kind, SPIKE_DERIVATIVES)
    if out is not None and not torch.is_grad_enabled():
        return _spiking_local_derivative_into(out, mem, pre, threshold, beta, r, v_rest, kind, window, smoothing,
                                              free)
    if kind == "none":
        return torch.ones_like(pre), free
    if kind == "window":
        return ((mem - threshold).abs() < window * threshold).to(pre.dtype), free
    if free is None:
        free = torch.full_like(pre, float(v_rest))
    free = beta * free + (1 - beta) * (v_rest + r * pre)
    return torch.sigmoid((free - threshold) / (smoothing * threshold)) / threshold, free


def _spiking_local_derivative_into(out: torch.Tensor, mem: torch.Tensor, pre: torch.Tensor, threshold: float,
                                   beta: float, r: float, v_rest: float, kind: str, window: float, smoothing: float,
                                   free: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`spiking_local_derivative` into ``out``, ``free`` updated in place (the same roundings)."""
    if kind == "none":
        return out.fill_(1.0), free
    if kind == "window":
        torch.sub(mem, threshold, out=out)
        return torch.lt(out.abs_(), window * threshold, out=out), free
    if free is None:
        free = torch.full_like(pre, float(v_rest))
    torch.mul(pre, r, out=out)  # (1 − β)(v_rest + r z), then β u + that: as the allocating form rounds
    out.add_(v_rest).mul_(1 - beta)
    free.mul_(beta).add_(out)
    torch.sub(free, threshold, out=out)
    return out.div_(smoothing * threshold).sigmoid_().div_(threshold), free


def per_neuron(value: float, n: int):
    """A NIR per-neuron parameter array."""
    import numpy as np

    return np.full(n, float(value), dtype=np.float64)
