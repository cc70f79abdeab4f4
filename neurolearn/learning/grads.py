r"""Gradient accumulation for rules that compute their own updates.

A rule writes its estimate of ``∂L/∂θ`` into ``θ.grad`` (adding to what is there) and leaves
the step to the update seam (:class:`neurolearn.updates.Updater`). Every helper here skips
a **frozen** parameter (``requires_grad=False``): it never receives a ``.grad``, so no
optimizer moves it.

**Exact batch sums** (``train.exact_sums = true``; :func:`exact_sums`): a local rule's update
is a sum over the batch of per-sample outer products, ``∇W = Σ_n s_n δ_nᵀ x_n``. In float32
that sum's rounding depends on how the batch is split (one GEMM over ``B`` rows, or two over
``B/2`` added afterwards), so ``W`` data-parallel processes and one process drift apart in
chaotic runs. In this mode the helpers form every batch sum in **float64**
(:func:`weight_gradient`, :func:`bias_grad`, :func:`add_update`): the products of float32
numbers are exact in float64 and the sum's rounding (``≈ n·2⁻⁵³`` relative) is far below
float32's, and keep it *pending* in float64 (:func:`add_grad`, :func:`write_grads`) instead of
``.grad``. The update seam then adds the processes' pending sums in float64
(:class:`neurolearn.distributed.GradSync`) and casts once to the parameter's dtype
(:func:`take_pending`): ``cast(Σ_r S_r) = cast(S)`` for every split, up to a float64 rounding
that moves the float32 result only when it lies within ``≈1e-16`` of a float32 rounding
boundary. Rows (the forward pass, ``δ_n``) are computed sample by sample and do not depend on
the split (DISTRIBUTED.md §4). Costs: the weight-gradient GEMM in float64 (off by default).
Decorrelated layers map the gradient through ``R`` in the layer's dtype (not exact).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch

from neurolearn.errors import ConfigError
from neurolearn.layers import Conv2d, Dense, Layer
from neurolearn.learning.traces import Signals
from neurolearn.network import Network

LAYER_PARAMS = ("weight", "bias", "recurrent_weight")


def trainable(param: torch.Tensor | None) -> bool:
    """``True`` for a parameter that learns (present and ``requires_grad``)."""
    return param is not None and param.requires_grad


class ExactSums:
    """The pending float64 batch sums of one training step under ``train.exact_sums`` (module
    docstring): the helpers add to the sums while the object is active (:func:`exact_sums`), and
    the update seam takes them (:func:`take_pending`, in :class:`~neurolearn.updates.Updater`). One
    object per step, found through a context variable: no state outlives the step or leaks between
    threads, and a step that fails half-way leaves nothing behind."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(param) -> (param, sum)

    def add(self, param: torch.Tensor, value: torch.Tensor) -> None:
        """Add ``value`` (in float64) to ``param``'s pending sum."""
        value = value.detach().to(torch.float64)
        item = self._pending.get(id(param))
        if item is None:
            self._pending[id(param)] = (param, value)
        else:
            item[1].add_(value)

    def has(self, param: torch.Tensor) -> bool:
        """``param`` has a pending sum."""
        return id(param) in self._pending

    def take(self, param: torch.Tensor) -> torch.Tensor | None:
        """Remove and return ``param``'s pending sum, with its ``.grad`` (if any) added in float64
        (``.grad`` is cleared); ``None`` if nothing is pending."""
        item = self._pending.pop(id(param), None)
        if item is None:
            return None
        g = item[1]
        if param.grad is not None:
            g = g + param.grad.to(torch.float64)
            param.grad = None
        return g

    def clear(self) -> None:
        """Forget every pending sum."""
        self._pending.clear()


_ACTIVE: ContextVar[ExactSums | None] = ContextVar("neurolearn_exact_sums", default=None)


@contextmanager
def exact_sums(enabled: bool = True) -> Iterator[ExactSums | None]:
    """Within the block the helpers form batch sums in float64 and keep them pending (module
    docstring) in a fresh :class:`ExactSums`, which the block yields; ``enabled=False``: the plain
    float32 path (yields ``None``)."""
    sums = ExactSums() if enabled else None
    token = _ACTIVE.set(sums)
    try:
        yield sums
    finally:
        _ACTIVE.reset(token)


def exact_enabled() -> bool:
    """``True`` inside :func:`exact_sums`."""
    return _ACTIVE.get() is not None


def exact(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float64 under :func:`exact_sums` (a per-sample factor about to be divided by the
    batch size or summed over it), else ``t`` unchanged. ``x/n_r`` rounded to float32 differs from
    ``x/n`` for a shard of ``n_r`` of ``n`` samples; in float64 the difference stays below the
    float32 rounding of the final sum."""
    return t.to(torch.float64) if _ACTIVE.get() is not None and t.is_floating_point() else t


def has_pending(param: torch.Tensor) -> bool:
    """``param`` has a float64 batch sum waiting for the update seam (in the active :class:`ExactSums`)."""
    sums = _ACTIVE.get()
    return sums is not None and sums.has(param)


def take_pending(param: torch.Tensor) -> torch.Tensor | None:
    """:meth:`ExactSums.take` of the active sums (``None`` outside :func:`exact_sums`)."""
    sums = _ACTIVE.get()
    return None if sums is None else sums.take(param)


def weight_gradient(layer: Layer, post: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``layer.weight_gradient(post, inputs)`` (``Σ_n post_n ⊗ x_n``), formed in float64 under
    :func:`exact_sums` (for a layer without decorrelation)."""
    if _ACTIVE.get() is not None and layer.decorrelation is None:
        return layer.weight_gradient(post.to(torch.float64), inputs.to(torch.float64))
    return layer.weight_gradient(post.to(inputs.dtype), inputs)  # R and its mean are in the layer's dtype


def add_grad(param: torch.Tensor | None, value: torch.Tensor) -> None:
    """Accumulate ``value`` (a fresh tensor, kept without a copy) into ``param.grad``; nothing for a
    missing or frozen parameter. Under :func:`exact_sums` the sum is kept pending in float64."""
    if not trainable(param):
        return
    sums = _ACTIVE.get()
    if sums is not None:
        sums.add(param, value)
        return
    if value.dtype != param.dtype:  # a product under bf16 autocast: .grad stays in the weight's dtype
        value = value.to(param.dtype)
    if param.grad is None:
        param.grad = value.detach()
    else:
        param.grad.add_(value)


def bias_grad(g: torch.Tensor) -> torch.Tensor:
    """``Σ g`` over samples (and positions of a conv layer) per output unit/channel (float64 under
    :func:`exact_sums`)."""
    if _ACTIVE.get() is not None:
        g = g.to(torch.float64)
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
    sums = _ACTIVE.get()
    for name, g in grads.items():
        p = getattr(layer, name)
        if not trainable(p):
            continue
        if sums is not None:
            sums.add(p, g)
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
        acc("weight", weight_gradient(layer, delta, sig.pre))
    if _ACTIVE.get() is not None:
        delta = delta.to(torch.float64)
    if trainable(layer.recurrent_weight) and sig.rec is not None:
        acc("recurrent_weight", delta.flatten(1).T @ sig.rec.flatten(1).to(delta.dtype))
    if trainable(layer.bias):
        acc("bias", delta.sum(0).flatten(1).sum(1) * sig.bias if delta.dim() > 2 else delta.sum(0) * sig.bias)
