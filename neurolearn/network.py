r"""A network is a stack of layers run over time.

Inputs are time-major, ``[T, B, ...]`` (``T = 1`` for a static rate network). The network
advances all layers one step at a time (:meth:`Network.step`), so a learning rule can run
online, step by step, with memory independent of ``T``; :meth:`Network.run` loops over the
whole input and returns a :class:`Record` holding every layer's taps over time.

Node noise (for perturbation rules) is injected into a layer's pre-activation: pass
``noise`` to :meth:`step` as one tensor (or ``None``) per layer, or to :meth:`run` as a
function ``noise(t, layer_index, shape) -> Tensor | None``.

The network's output over time, ``[T, B, C]``, is decoded into a prediction by ``decode``:
``"last"`` (last step), ``"mean"`` (mean over time, e.g. a leaky readout's membrane),
``"sum"`` (spike counts), ``"max"`` (max over time), ``"all"`` (keep every step, for
sequence-to-sequence tasks). ``decode_window = K`` restricts ``mean``/``sum``/``max`` to the
last ``K`` steps (e.g. a recall window at the end of a trial).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn

from neurolearn.encoders import Encoder
from neurolearn.errors import ConfigError, ShapeError, unknown_name
from neurolearn.layers import Layer, LayerState, Taps, check_input_features

DECODES = ("last", "mean", "sum", "max", "all")

NoiseFn = Callable[[int, int, tuple[int, ...]], "torch.Tensor | None"]


@dataclass
class LayerRecord:
    """One layer's taps over time, each ``[T, B, ...]`` (``None`` where the layer has none)."""

    input: torch.Tensor
    pre: torch.Tensor
    act: torch.Tensor
    mem: torch.Tensor | None = None
    rec: torch.Tensor | None = None


@dataclass
class Record:
    """What one run of a network recorded: per-layer taps and the output ``[T, B, C]``."""

    output: torch.Tensor
    layers: list[LayerRecord] = field(default_factory=list)


def stack_steps(items: list[torch.Tensor | None]) -> torch.Tensor | None:
    """Stack per-step tensors on a new time axis (a view, no copy, for a single step)."""
    if items[0] is None:
        return None
    return items[0].unsqueeze(0) if len(items) == 1 else torch.stack(items)


class Network(nn.Module):
    """Layers over time, with an input encoder and an output decoder."""

    def __init__(
        self,
        layers: Sequence[Layer],
        *,
        encoder: Encoder | None = None,
        decode: str = "last",
        dt: float = 1e-3,
        decode_window: int | None = None,
    ) -> None:
        super().__init__()
        if not layers:
            raise ConfigError("a network needs at least one layer")
        if decode not in DECODES:
            raise unknown_name("decode", decode, DECODES)
        if decode_window is not None:
            if isinstance(decode_window, bool) or not isinstance(decode_window, int) or decode_window < 1:
                raise ConfigError(f"decode_window must be a positive number of steps, got {decode_window!r}")
            if decode not in ("mean", "sum", "max"):
                raise ConfigError(f"decode_window applies to decode = 'mean', 'sum' or 'max', not {decode!r}")
        for a, b in zip(layers[:-1], layers[1:]):
            if math.prod(a.out_shape) != math.prod(b.in_shape):
                raise ConfigError(f"layer shapes do not chain: {a.out_shape} -> {b.in_shape}")
        self.layers = nn.ModuleList(layers)
        self.encoder = encoder or Encoder()
        self.decode = decode
        self.decode_window = decode_window
        self.dt = dt

    # ---------------------------------------------------------------- properties
    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.layers[0].in_shape

    @property
    def output_size(self) -> int:
        return math.prod(self.layers[-1].out_shape)

    @property
    def spiking(self) -> bool:
        return any(layer.spiking for layer in self.layers)

    @property
    def temporal(self) -> bool:
        """True if the network has state across time steps (BP becomes BPTT)."""
        return any(layer.has_memory for layer in self.layers)

    @property
    def units(self) -> int:
        """Total number of neurons that take node noise (``N`` of the perturbation rules)."""
        return sum(layer.units for layer in self.layers)

    # ---------------------------------------------------------------- running
    def init_state(self, batch: int, device=None, dtype=None) -> list[LayerState]:
        """The resting state of every layer for a batch of ``batch`` samples."""
        p = next(self.parameters())
        device = device or p.device
        dtype = dtype or p.dtype
        return [layer.init_state(batch, device, dtype) for layer in self.layers]

    def step(
        self,
        x: torch.Tensor,
        state: list[LayerState],
        noise: Sequence[torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, list[LayerState], list[Taps]]:
        """Advance every layer one time step on input ``x`` (``[B, ...]``)."""
        new_state, taps = [], []
        h = x
        for k, layer in enumerate(self.layers):
            h, s, t = layer.step(h, state[k], None if noise is None else noise[k])
            new_state.append(s)
            taps.append(t)
        return h, new_state, taps

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a :class:`ShapeError` unless ``x`` is ``[T, B, *input_shape]``."""
        if x.dim() < 3:
            raise ShapeError(
                f"network input must be time-major [T, B, features...], got shape {list(x.shape)}; "
                "use Network.encoder to turn a static batch [B, ...] into [T, B, ...]"
            )
        check_input_features(self.layers[0], x[0])

    def run(
        self,
        x: torch.Tensor,
        *,
        noise: NoiseFn | None = None,
        record: bool | tuple[str, ...] = True,
        state: list[LayerState] | None = None,
    ) -> Record:
        """Run the network over an encoded input ``[T, B, ...]``.

        With ``record=True`` every layer's taps are stacked over time in the record; a tuple
        of tap names (e.g. ``("input",)``) keeps only those (the others are ``None``), so
        that a training step which needs one tap does not hold the rest of the activity alive
        through the backward pass.
        """
        taps_known = LayerRecord.__dataclass_fields__
        fields = tuple(taps_known) if record is True else tuple(record or ())
        unknown = set(fields) - set(taps_known)
        if unknown:
            raise ConfigError(f"record: unknown taps {sorted(unknown)}; known: {list(taps_known)}")
        self.check_input(x)
        steps, batch = x.shape[0], x.shape[1]
        state = state if state is not None else self.init_state(batch, x.device, x.dtype)
        outputs: list[torch.Tensor] = []
        taps_t: list[list[Taps]] = []
        for t in range(steps):
            layer_noise = None
            if noise is not None:
                layer_noise = [noise(t, k, layer.pre_shape(batch)) for k, layer in enumerate(self.layers)]
            out, state, taps = self.step(x[t], state, layer_noise)
            outputs.append(out)
            if record:
                taps_t.append(taps)
        rec = Record(output=stack_steps(outputs))
        if record:
            for k in range(len(self.layers)):
                per_layer = [taps[k] for taps in taps_t]
                rec.layers.append(LayerRecord(*(stack_steps([getattr(tp, f) for tp in per_layer]) if f in fields else None
                                                for f in taps_known)))
        return rec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output over time ``[T, B, C]`` for an encoded input ``[T, B, ...]``."""
        return self.run(x, record=False).output

    def decode_output(self, output: torch.Tensor) -> torch.Tensor:
        """Map the output over time ``[T, B, C]`` to a prediction (see module docstring)."""
        if self.decode == "last":
            return output[-1]
        if self.decode_window is not None:
            output = output[-self.decode_window:]
        if self.decode == "mean":
            return output.mean(0)
        if self.decode == "sum":
            return output.sum(0)
        if self.decode == "max":
            return output.max(0).values
        return output

    def decode_weights(self, steps: int) -> torch.Tensor | None:
        """``c`` ``[steps]`` with ``decode_output(out) = Σ_t c[t] out[t]`` for the linear decodes
        (``last``, ``mean``, ``sum``, with their window); ``None`` for ``max`` and ``all``."""
        if self.decode not in ("last", "mean", "sum"):
            return None
        c = torch.zeros(steps, dtype=torch.float64)
        if self.decode == "last":
            c[-1] = 1.0
            return c
        window = steps if self.decode_window is None else min(self.decode_window, steps)
        c[steps - window:] = 1.0 / window if self.decode == "mean" else 1.0
        return c

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode a data batch into the network's time-major input."""
        return self.encoder(x, generator)

    def predict(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode, run and decode a data batch."""
        return self.decode_output(self.forward(self.encode(x, generator)))
