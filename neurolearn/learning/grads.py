r"""Gradient accumulation for rules that compute their own updates.

A rule writes its estimate of ``∂L/∂θ`` into ``θ.grad`` (adding to what is there) and leaves
the step to the update seam (:class:`neurolearn.updates.Updater`). Every helper here skips
a **frozen** parameter (``requires_grad=False``): it never receives a ``.grad``, so no
optimizer moves it.
"""

from __future__ import annotations

import torch

from neurolearn.errors import ConfigError
from neurolearn.layers import Conv2d, Dense, Layer
from neurolearn.learning.traces import Signals
from neurolearn.network import Network

LAYER_PARAMS = ("weight", "bias", "recurrent_weight")


def trainable(param: torch.Tensor | None) -> bool:
    """``True`` for a parameter that learns (present and ``requires_grad``)."""
    return param is not None and param.requires_grad


def add_grad(param: torch.Tensor | None, value: torch.Tensor) -> None:
    """Accumulate ``value`` (a fresh tensor, kept without a copy) into ``param.grad``; nothing for a
    missing or frozen parameter."""
    if not trainable(param):
        return
    if value.dtype != param.dtype:  # a product under bf16 autocast: .grad stays in the weight's dtype
        value = value.to(param.dtype)
    if param.grad is None:
        param.grad = value.detach()
    else:
        param.grad.add_(value)


def bias_grad(g: torch.Tensor) -> torch.Tensor:
    """``Σ g`` over samples (and positions of a conv layer) per output unit/channel."""
    return g.sum(0) if g.dim() == 2 else g.sum(dim=(0, *range(2, g.dim())))


def layer_params(model: Network) -> list[tuple[int, str, torch.nn.Parameter]]:
    """``(layer index, name, parameter)`` of what the local rules learn: each layer's weight, bias
    and recurrent weight, frozen ones left out."""
    out = []
    for k, layer in enumerate(model.layers):
        for name in LAYER_PARAMS:
            p = getattr(layer, name, None)
            if trainable(p):
                out.append((k, name, p))
    return out


def write_grads(layer: Layer, grads: dict[str, torch.Tensor]) -> None:
    """Put updates accumulated by parameter name into the layer's ``.grad`` (adding to what is
    there); frozen parameters are skipped."""
    for name, g in grads.items():
        p = getattr(layer, name)
        if not trainable(p):
            continue
        p.grad = g.to(p.dtype) if p.grad is None else p.grad + g


def add_update(layer: Layer, delta: torch.Tensor, sig: Signals, grads: dict[str, torch.Tensor], scale: float) -> None:
    """Add ``scale · δᵀ x̄`` (and the bias part ``Σ δ b̄`` and recurrent part ``δᵀ r̄``) to ``grads``
    (by parameter name); frozen parameters get nothing."""

    def acc(name: str, value: torch.Tensor) -> None:
        grads[name] = value * scale if name not in grads else grads[name].add_(value, alpha=scale)

    if not isinstance(layer, (Dense, Conv2d)):
        raise ConfigError(f"this rule does not know how to update a {type(layer).__name__} layer")
    if trainable(layer.weight):
        acc("weight", layer.weight_gradient(delta, sig.pre))
    if trainable(layer.recurrent_weight) and sig.rec is not None:
        acc("recurrent_weight", delta.flatten(1).T @ sig.rec.flatten(1))
    if trainable(layer.bias):
        acc("bias", delta.sum(0).flatten(1).sum(1) * sig.bias if delta.dim() > 2 else delta.sum(0) * sig.bias)
