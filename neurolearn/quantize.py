r"""Weight quantisation to ``n`` bits with one scale per weight tensor (per layer).

Neuromorphic chips store low-precision integer weights (Loihi 2: up to 8 bits, Xylo: 8,
SpiNNaker2: 8/16, Speck: 8). Symmetric uniform quantisation of a weight tensor ``W``:

.. math::  s = \max |W| / (2^{n-1} - 1), \qquad W_q = s \cdot \mathrm{clamp}(\mathrm{round}(W / s),
           -(2^{n-1} - 1),\ 2^{n-1} - 1)

so a chip stores the integers ``round(W/s)`` and folds ``s`` into the layer's threshold or
input gain. Each layer's input weight and recurrent weight get their own scale. Biases are
quantised with the same scale as the layer's weight when ``biases=True`` (chips without
biases need them folded elsewhere); by default they stay in full precision. Decorrelation
matrices are merged into the weights first (what a chip would store).

:func:`quantize_network` returns a quantised copy; :func:`quantization_report` evaluates the
accuracy before and after on a dataset split.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from neurolearn.errors import ConfigError
from neurolearn.network import Network


@dataclass
class QuantizedTensor:
    """The integers and the scale of one quantised tensor: ``values = scale * ints``."""

    ints: torch.Tensor
    scale: float
    bits: int

    @property
    def values(self) -> torch.Tensor:
        return self.ints.to(torch.float32) * self.scale


def quantize_tensor(w: torch.Tensor, bits: int, scale: float | None = None) -> QuantizedTensor:
    """Symmetric ``bits``-bit quantisation of ``w`` with scale ``max|w| / (2^(bits-1) - 1)`` (or ``scale``)."""
    if not isinstance(bits, int) or isinstance(bits, bool) or bits < 2:
        raise ConfigError(f"bits must be an integer >= 2, got {bits!r}")
    qmax = 2 ** (bits - 1) - 1
    w = w.detach()
    if scale is None:
        m = float(w.abs().max()) if w.numel() else 0.0
        scale = m / qmax if m > 0 else 1.0
    ints = torch.clamp(torch.round(w / scale), -qmax, qmax).to(torch.int32 if bits > 16 else torch.int16)
    return QuantizedTensor(ints, float(scale), bits)


@dataclass
class QuantizationResult:
    """A quantised copy of a network and the scale used for each tensor (``"<layer>.<param>"``)."""

    model: Network
    scales: dict[str, float] = field(default_factory=dict)
    bits: int = 8


def quantize_network(net: Network, bits: int = 8, *, biases: bool = False) -> QuantizationResult:
    """A copy of ``net`` with every weight quantised to ``bits`` bits, one scale per tensor."""
    from neurolearn.export.nir import merged

    model = copy.deepcopy(merged(net))
    scales: dict[str, float] = {}
    with torch.no_grad():
        for k, layer in enumerate(model.layers):
            q = quantize_tensor(layer.weight, bits)
            layer.weight.copy_(q.values.to(layer.weight.dtype))
            scales[f"{k}.weight"] = q.scale
            rw = getattr(layer, "recurrent_weight", None)
            if rw is not None:
                qr = quantize_tensor(rw, bits)
                rw.copy_(qr.values.to(rw.dtype))
                scales[f"{k}.recurrent_weight"] = qr.scale
            if biases and layer.bias is not None:
                layer.bias.copy_(quantize_tensor(layer.bias, bits, scale=q.scale).values.to(layer.bias.dtype))
    return QuantizationResult(model, scales, bits)


def accuracy(net: Network, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500, seed: int = 0) -> float:
    """Classification accuracy of ``net`` on ``(x, y)``; the encoder draws from a fixed seed."""
    gen = torch.Generator().manual_seed(seed)
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            pred = net.predict(x[i:i + batch_size], gen)
            correct += int((pred.argmax(-1) == y[i:i + batch_size]).sum())
    return correct / max(1, x.shape[0])


def quantization_report(
    net: Network,
    x: torch.Tensor,
    y: torch.Tensor,
    bits: int = 8,
    *,
    biases: bool = False,
    metric: Callable[[Network, torch.Tensor, torch.Tensor], float] | None = None,
) -> dict[str, Any]:
    """Accuracy before and after ``bits``-bit quantisation (same encoder seed), with the scales."""
    metric = metric or accuracy
    before = metric(net, x, y)
    q = quantize_network(net, bits, biases=biases)
    after = metric(q.model, x, y)
    return {"bits": bits, "accuracy_before": before, "accuracy_after": after,
            "drop_points": 100.0 * (before - after), "scales": q.scales}
