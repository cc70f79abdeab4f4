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
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch

from neurolearn.decorrelation import has_decorrelation, update_decorrelation
from neurolearn.network import Network, Record
from neurolearn.objectives import Objective


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


class Rule:
    """Base class of all learning rules. Subclasses set ``name``, ``summary``, ``requires``."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    requires: ClassVar[Requirements] = Requirements()
    uses_optimizer: ClassVar[bool] = True

    def __init__(self) -> None:
        self.generator: torch.Generator | None = None

    def setup(self, model: Network, objective: Objective, generator: torch.Generator) -> None:
        """Called once before training: keep the random generator, build fixed matrices."""
        self.generator = generator

    def train_step(
        self,
        model: Network,
        x: torch.Tensor,
        y: torch.Tensor,
        objective: Objective,
        optimizer: torch.optim.Optimizer | None,
    ) -> StepOutput:
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
    """A rule that estimates gradients into ``.grad``; the optimizer applies them."""

    def estimate_gradients(self, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective) -> StepOutput:
        raise NotImplementedError

    def train_step(self, model, x, y, objective, optimizer) -> StepOutput:
        optimizer.zero_grad(set_to_none=True)
        out = self.estimate_gradients(model, x, y, objective)
        optimizer.step()
        if out.record is not None and has_decorrelation(model):
            # the layers' decorrelation matrices learn from the clean pass's inputs
            update_decorrelation(model, out.record, self.generator)
        return out
