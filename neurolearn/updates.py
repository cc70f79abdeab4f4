r"""The one place where updates are applied: :class:`Updater`.

A learning rule computes its updates into ``.grad`` (see :class:`neurolearn.rules.Rule` for the
contract) and hands them to :meth:`Updater.apply`, which does, in this order:

1. **frozen means frozen**: drop any ``.grad`` on a parameter with ``requires_grad=False``;
2. **synchronise**: ``synchronise(grads, stats)`` with the list of gradients about to be applied
   and the rule's statistics (identity by default). Under ``train.exact_sums``
   (:func:`neurolearn.learning.grads.exact_sums`) a gradient a rule formed in float64 is handed
   over in float64 (its pending sum plus any ``.grad``) and cast to the parameter's dtype only
   after synchronising, so the combined sum is rounded to float32 once, whatever the split. The data-parallel mode
   (:class:`neurolearn.distributed.GradSync`) all-reduces them here, in place, in one
   collective: ``g ← Σ_r (n_r/n) g_r``; ``stats["sum"]`` (a float64 tensor) is summed over the
   processes; ``stats["scalar_update"]`` (:class:`neurolearn.distributed.ScalarUpdate`, weight
   perturbation) sends only its scalars and rebuilds the gradients from shared seeds;
3. **step**: ``optimizer.step()`` on the given parameters only (a layer-by-layer or online rule
   passes one layer's), every other ``.grad`` set aside meanwhile;
4. **clear** the stepped parameters' ``.grad``;
5. **decorrelation**: the decorrelated layers learn ``R`` from the clean inputs the rule hands
   over (a run's record, one step's taps or one layer's inputs); in a data-parallel run
   ``gather_batch`` first joins every process's share, so ``R`` learns from the whole batch and
   stays identical on every process.

Once per training step, after the rule's last ``apply``, :meth:`Updater.finish_step` updates the
**weight average** ``W̄ ← a W̄ + (1 − a) W`` (Polyak averaging, ``average = a``; 0: off), which
:meth:`averaged_weights` swaps in for evaluation and checkpoints.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from neurolearn.decorrelation import (has_decorrelation, update_decorrelation, update_decorrelation_step,
                                      update_layer_decorrelation)
from neurolearn.errors import ConfigError
from neurolearn.layers import Layer, Taps
from neurolearn.learning.grads import has_pending, take_pending
from neurolearn.network import LayerRecord, Network, Record

Synchronise = Callable[[list[torch.Tensor], dict[str, Any]], None]


def no_synchronisation(grads: list[torch.Tensor], stats: dict[str, Any]) -> None:
    """One process: nothing to combine."""


def copy_all(dst: Sequence[torch.Tensor], src: Sequence[torch.Tensor]) -> None:
    """Copy tensor values in place (parameters to or from their average)."""
    with torch.no_grad():
        torch._foreach_copy_(list(dst), [t.detach() for t in src])


class Updater:
    """Applies a rule's updates to ``model`` (see the module docstring for the order).

    ``optimizer``: any ``torch.optim`` optimizer over the model's parameters (``None`` for
    solvers that set the weights themselves); ``average``: decay ``a ∈ [0, 1)`` of the weight
    average (0: off); ``synchronise``: the hook a distributed mode fills.
    """

    def __init__(self, model: Network, optimizer: torch.optim.Optimizer | None = None, *, average: float = 0.0,
                 synchronise: Synchronise | None = None) -> None:
        if isinstance(average, bool) or not isinstance(average, (int, float)) or not 0.0 <= average < 1.0:
            raise ConfigError(f"train.average must be in [0, 1) (the moving average's decay per step; 0 = off), "
                              f"got {average!r}")
        self.model = model
        self.optimizer = optimizer
        self.average = float(average)
        self.synchronise = synchronise or no_synchronisation
        # data parallel (neurolearn.distributed): the whole batch's tensor from this process's
        # share, ``gather_batch(t, batch_dim)``; decorrelation learns from it (None: one process)
        self.gather_batch: Callable[[torch.Tensor, int], torch.Tensor] | None = None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.averaged = [p.detach().clone() for p in self.params] if self.average > 0 else None

    @classmethod
    def wrap(cls, model: Network, optimizer: "Updater | torch.optim.Optimizer | None") -> "Updater":
        """An :class:`Updater` as given, or one around a plain optimizer (the hand-written loop's)."""
        if isinstance(optimizer, Updater):
            if optimizer.model is not model:
                raise ConfigError("the updater was built for another model")
            return optimizer
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(f"train_step needs a torch optimizer or an Updater, got {type(optimizer).__name__}")
        return cls(model, optimizer)

    # ------------------------------------------------------------------ the step
    def zero_grad(self) -> None:
        """Clear every ``.grad`` of the model (before a rule fills them), pending float64 sums too."""
        for p in self.model.parameters():
            p.grad = None
            take_pending(p)

    @torch.no_grad()
    def apply(self, params: Iterable[torch.Tensor] | None = None, *, record: Record | None = None,
              taps: Sequence[Taps] | None = None, layer_inputs: tuple[Layer, torch.Tensor, str] | None = None,
              generator: torch.Generator | None = None, stats: dict[str, Any] | None = None) -> None:
        """Apply the ``.grad`` of ``params`` (default: every parameter of the model), then let the
        decorrelated layers learn from the clean inputs: ``record`` (a run, all steps pooled),
        ``taps`` (one time step of every layer) or ``layer_inputs = (layer, inputs, where)``.
        ``params=[]`` steps nothing (a decorrelation update within a sequence)."""
        every = params is None
        chosen = list(self.model.parameters()) if every else list(params)
        for p in self.model.parameters():  # 1. frozen means frozen
            if not p.requires_grad:
                p.grad = None
        chosen = [p for p in chosen if p.requires_grad and (p.grad is not None or has_pending(p))]
        if chosen:
            grads, exact = [], []
            rebuilt = bool(stats) and stats.get("scalar_update") is not None  # from all-reduced scalars
            for p in chosen:
                g64 = take_pending(p)  # float64 batch sums (train.exact_sums): cast after synchronising
                if g64 is not None and rebuilt:
                    p.grad, g64 = g64.to(p.dtype), None
                if g64 is not None:
                    exact.append((p, g64))
                grads.append(p.grad if g64 is None else g64)
            self.synchronise(grads, dict(stats or {}))  # 2.
            for p, g64 in exact:
                p.grad = g64.to(p.dtype)
            if self.optimizer is None:
                raise ConfigError("this rule computed gradients but the updater has no optimizer")
            aside: list[tuple[torch.Tensor, torch.Tensor]] = []
            if not every:  # 3. only the chosen parameters move
                ids = {id(p) for p in chosen}
                aside = [(p, p.grad) for p in self.model.parameters() if p.grad is not None and id(p) not in ids]
                for p, _ in aside:
                    p.grad = None
            self.optimizer.step()
            for p in chosen:  # 4.
                p.grad = None
            for p, g in aside:
                p.grad = g
        if record is not None or taps is not None or layer_inputs is not None:  # 5.
            self.update_decorrelation(record=record, taps=taps, layer_inputs=layer_inputs, generator=generator)

    def update_decorrelation(self, *, record: Record | None = None, taps: Sequence[Taps] | None = None,
                             layer_inputs: tuple[Layer, torch.Tensor, str] | None = None,
                             generator: torch.Generator | None = None) -> None:
        gather = self.gather_batch
        if layer_inputs is not None:
            layer, inputs, where = layer_inputs
            if gather is not None and layer.decorrelation is not None:
                inputs = gather(inputs, 0)
            update_layer_decorrelation(layer, inputs, generator, where=where)
        if not has_decorrelation(self.model):
            return
        if gather is not None:  # data parallel: every process learns R from the whole batch's inputs
            if record is not None:
                record = Record(record.output, [LayerRecord(gather(lr.input, 1), None, None) for lr in record.layers])
            if taps is not None:
                taps = [Taps(gather(t.input, 0), None, None, None, None, None) for t in taps]
        if record is not None:
            update_decorrelation(self.model, record, generator)
        if taps is not None:
            update_decorrelation_step(self.model, taps, generator)

    # ------------------------------------------------------------------ weight averaging
    @torch.no_grad()
    def finish_step(self) -> None:
        """End of one training step: ``W̄ ← a W̄ + (1 − a) W`` for every trained parameter."""
        if self.averaged is not None:
            torch._foreach_lerp_(self.averaged, [p.detach() for p in self.params], 1.0 - self.average)

    @contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights (no-op without averaging)."""
        if self.averaged is None:
            yield
            return
        current = [p.detach().clone() for p in self.params]
        copy_all(self.params, self.averaged)
        try:
            yield
        finally:
            copy_all(self.params, current)


__all__ = ["Updater", "Synchronise", "no_synchronisation", "copy_all"]
