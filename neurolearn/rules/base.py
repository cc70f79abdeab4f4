r"""The learning-rule interface.

A rule decides what one training step does. Most rules are **gradient estimators**
(:class:`GradientRule`): from one mini-batch they compute an update direction for every
parameter and put it in ``.grad``; an ordinary ``torch.optim`` optimizer (SGD, Adam) then
applies it, so schedulers, clipping and weight decay combine with every rule. **Solvers**
(``uses_optimizer = False``) set the weights themselves.

Every rule states what a synapse needs to apply it (:class:`Requirements`): that is what
decides whether it is local, i.e. runnable as synaptic plasticity on neuromorphic hardware.

Inputs reach a rule already encoded and time-major: ``x`` is ``[T, B, ...]``; ``y`` is
``[B]`` (class indices) or ``[T, B, C]`` (per-step targets).

**The update contract** (see :class:`Rule`): a rule computes, the seam
(:class:`neurolearn.updates.Updater`) applies.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from neurolearn.errors import ConfigError
from neurolearn.learning.options import NoOptions, build_options
from neurolearn.network import Network, Record
from neurolearn.objectives import Objective
from neurolearn.updates import Updater


@dataclass(frozen=True)
class Requirements:
    """What the update of one synapse needs to see."""

    pre: bool = True  # pre-synaptic activity
    post: bool = True  # post-synaptic activity or state
    broadcast_scalar: bool = False  # a global scalar (reward, loss difference)
    broadcast_vector: bool = False  # a vector per neuron through fixed random feedback
    weight_transport: bool = False  # other neurons' weights (the transpose of the forward path)
    whole_batch: bool = False  # all samples at once (matrix inverses, batch statistics)
    through_time: bool = False  # the stored past of the whole sequence (BPTT)

    @property
    def local(self) -> bool:
        """Local: nothing but pre, post and broadcast signals, online."""
        return not (self.weight_transport or self.whole_batch or self.through_time)

    def describe(self) -> str:
        names = [f.name.replace("_", " ") for f in fields(self) if getattr(self, f.name)]
        return ", ".join(names) + ("  [local]" if self.local else "  [non-local]")


@dataclass
class StepOutput:
    """What one training step produced: per-sample loss ``[B]`` and prediction (detached).

    ``record`` is the clean pass's record when the rule made one (decorrelation reads the
    layer inputs from it).
    """

    loss: torch.Tensor
    pred: torch.Tensor
    record: Record | None = None


PRECISIONS = ("fp32", "bf16")


def precision_context(precision: str, device: torch.device):
    """The autocast of a training step: ``"bf16"`` runs matrix products and convolutions in
    bfloat16 (torch's autocast op list; elementwise work, state, weights, ``.grad`` and the
    optimizer stay fp32); ``"fp32"``: nothing changes."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


class Rule:
    """Base class of all learning rules. Subclasses set ``name``, ``summary``, ``requires`` and
    ``Options`` (a frozen dataclass of their validated options) and implement :meth:`step`.

    **The update contract.**

    - A rule *computes* updates: it writes ``∂L/∂θ`` (or its estimate) into ``θ.grad``, adding
      to what is there, and never touches ``θ`` itself; it never calls ``optimizer.step()`` nor
      a decorrelation update. Frozen parameters (``requires_grad=False``) receive no ``.grad``
      (the toolkit's :mod:`neurolearn.learning.grads` skips them).
    - It hands them to the *seam*, ``updater.apply(params=None, record=/taps=/layer_inputs=,
      generator=, stats=)`` (:class:`neurolearn.updates.Updater`), which in this order drops
      any ``.grad`` of a frozen parameter, calls ``synchronise(grads, stats)`` (a distributed
      mode all-reduces the gradients and the rule's statistics there; identity on one
      process), steps the optimizer on ``params`` only (default: all), clears their ``.grad``
      and lets decorrelated layers learn ``R`` from the *clean* inputs the rule passes.
    - Once per batch the rule calls ``apply`` at least once: at the end of the step (batch
      rules), after each time step (online rules, ``params=None``), after each layer's forward
      pass with that layer's parameters (layer-by-layer rules). ``apply(params=[], ...)``
      updates decorrelation alone (within a sequence, before the weights' step).
    - :meth:`train_step` clears every ``.grad``, runs :meth:`step` and ends with
      ``updater.finish_step()`` (the weight average, once per batch).
    - Statistics a rule keeps across steps (running reward baselines) are passed as ``stats``
      so that a distributed mode can combine them before they are used; noise comes from the
      rule's ``generator``.
    - **Solvers** (``uses_optimizer = False``) write weights directly from a closed-form fit;
      they skip frozen parameters (or refuse, naming them, where the algorithm cannot).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    requires: ClassVar[Requirements] = Requirements()
    uses_optimizer: ClassVar[bool] = True
    Options: ClassVar[type] = NoOptions
    precision: str = "fp32"  # "bf16": train_step runs under bfloat16 autocast (train.precision)

    def __init__(self, options: Any = None, **params: Any) -> None:
        self.options = build_options(self.Options, options, params, f"rule {self.name!r}")
        self.generator: torch.Generator | None = None

    def __getattr__(self, key: str) -> Any:
        """``rule.x`` reads ``rule.options.x`` (the options are the rule's settings)."""
        options = self.__dict__.get("options")
        if options is not None and not key.startswith("_") and hasattr(options, key):
            return getattr(options, key)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {key!r}")

    def setup(self, model: Network, objective: Objective, generator: torch.Generator) -> None:
        """Called once before training: keep the random generator, build fixed matrices."""
        self.generator = generator

    def train_step(
        self,
        model: Network,
        x: torch.Tensor,
        y: torch.Tensor,
        objective: Objective,
        updater: Updater | torch.optim.Optimizer | None,
    ) -> StepOutput:
        """One training step on a batch; ``updater`` is the seam (a plain torch optimizer is wrapped
        in one, so a hand-written loop can pass its optimizer)."""
        updater = Updater.wrap(model, updater)
        if self.uses_optimizer and updater.optimizer is None:
            raise ConfigError(f"rule {self.name!r} computes gradients: train_step needs an optimizer")
        updater.zero_grad()
        with precision_context(self.precision, x.device):
            out = self.step(model, x, y, objective, updater)
        updater.finish_step()
        return out

    def step(self, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective,
             updater: Updater) -> StepOutput:
        """The rule's own part of :meth:`train_step`: compute updates, hand them to ``updater``."""
        raise NotImplementedError

    def epoch_metrics(self, model: Network) -> dict[str, float]:
        """Rule-specific figures to log once per epoch (e.g. alignment, decorrelation loss)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Rule state to checkpoint (fixed feedback matrices, running baselines)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"rule {self.name!r} has no state but the checkpoint holds {sorted(state)}")


class GradientRule(Rule):
    """A rule that estimates gradients into ``.grad`` (:meth:`estimate_gradients`); the seam applies
    them once per batch, and the decorrelated layers learn from the clean run's record."""

    def estimate_gradients(self, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective) -> StepOutput:
        raise NotImplementedError

    def step(self, model, x, y, objective, updater) -> StepOutput:
        out = self.estimate_gradients(model, x, y, objective)
        updater.apply(record=out.record, generator=self.generator)
        return out
