r"""Fixed random feedback matrices (DRTP, tpSGD, DFA).

Every hidden layer ``k`` gets a matrix ``B_k ∈ R^{C × n_k}`` drawn once (:func:`fixed_projection`)
and frozen; a label or an output error ``v ∈ R^C`` reaches the layer as ``v B_k``
(:func:`project`). The output layer learns from its true error (:func:`output_error`).
:class:`FixedFeedback` is the mixin that draws, keeps and checkpoints the matrices;
:class:`FeedbackOptions` its validated options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from neurolearn.errors import ConfigError, ShapeError, unknown_name
from neurolearn.layers import Layer
from neurolearn.learning.grads import exact
from neurolearn.learning.options import check_choice, check_number
from neurolearn.learning.traces import SPIKE_DERIVATIVES, SpikeDerivative
from neurolearn.network import Network
from neurolearn.objectives import Objective

PROJECTIONS = ("kaiming_uniform", "uniform", "uniform_positive", "normal", "sign")


def fixed_projection(
    n_labels: int, shape: tuple[int, ...], dist: str, scale: float, generator: torch.Generator | None
) -> torch.Tensor:
    """A fixed random matrix ``B ∈ R^{C × prod(shape)}``, returned as ``[C, *shape]``:
    ``"kaiming_uniform"`` ``U(±scale·√(6/C))``, ``"uniform"`` ``U(±scale)``, ``"uniform_positive"``
    ``U(0, scale)``, ``"normal"`` ``N(0, scale²)``, ``"sign"`` ``±scale``."""
    if dist not in PROJECTIONS:
        raise unknown_name("projection", dist, PROJECTIONS)
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"projection scale must be a positive number, got {scale!r}")
    device = generator.device if generator is not None else None
    size = (n_labels, *shape)
    u = torch.rand(size, generator=generator, device=device)
    if dist == "kaiming_uniform":
        return (2 * u - 1) * scale * math.sqrt(6.0 / n_labels)
    if dist == "uniform":
        return (2 * u - 1) * scale
    if dist == "uniform_positive":
        return u * scale
    if dist == "sign":
        return torch.where(u < 0.5, -scale, scale)
    return torch.randn(size, generator=generator, device=device) * scale


def project(label: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``t = y* B``: a label ``[B, C]`` through ``B`` (``[C, *shape]``) gives ``[B, *shape]``."""
    return (label @ matrix.flatten(1).to(label.dtype)).view(label.shape[0], *matrix.shape[1:])  # float64: exact_sums


def label_vectors(y: torch.Tensor, n_labels: int, steps: int, dtype: torch.dtype) -> torch.Tensor:
    """The label at every step, ``[T, B, C]``: one-hot class indices, or per-step targets."""
    if y.dim() == 1:
        return F.one_hot(y, n_labels).to(dtype).unsqueeze(0).expand(steps, -1, -1)
    if y.dim() == 3 and y.shape[0] == steps and y.shape[-1] == n_labels:
        return y.to(dtype)
    raise ShapeError(
        f"target projection needs class labels [B] or per-step targets [T={steps}, B, C={n_labels}], "
        f"got {list(y.shape)}"
    )


def output_error(model: Network, outputs: torch.Tensor, y: torch.Tensor, objective: Objective
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(e, loss, pred)``: ``e = ∂⟨L⟩_B/∂out[t]`` (``[T, B, C]``) through the model's decode."""
    leaf = exact(outputs.detach()).requires_grad_(True)  # float64 under train.exact_sums (the 1/B)
    with torch.enable_grad():
        pred = model.decode_output(leaf)
        loss = objective.loss(pred, y)
        (e,) = torch.autograd.grad(loss.mean(), leaf)
    return e, loss.detach().to(outputs.dtype), pred.detach().to(outputs.dtype)


def check_readout(model: Network) -> None:
    out = model.layers[-1]
    if out.recurrent or out.spiking:
        raise ConfigError(
            "the output layer of a target-projection / feedback-alignment rule must be a non-recurrent, "
            "non-spiking readout (linear, rate or leaky integrator): it learns from its exact local error"
        )


@dataclass(frozen=True)
class FeedbackOptions:
    """Options shared by the fixed-feedback rules: the projection ``B_k`` (``projection``,
    ``scale``) and the surrogate-free spike factor (``spike_derivative``, ``window``,
    ``smoothing``)."""

    projection: str = "kaiming_uniform"
    scale: float = 1.0
    spike_derivative: str = "window"
    window: float = 0.5
    smoothing: float = 0.2

    def __post_init__(self) -> None:
        check_choice("projection", self.projection, PROJECTIONS)
        check_number("scale", self.scale, low=0, low_open=True)
        check_choice("spike_derivative", self.spike_derivative, SPIKE_DERIVATIVES)
        check_number("window", self.window, low=0, low_open=True)
        check_number("smoothing", self.smoothing, low=0, low_open=True)

    @property
    def spike(self) -> SpikeDerivative:
        return SpikeDerivative(self.spike_derivative, float(self.window), float(self.smoothing))


class FixedFeedback:
    """Mixin for rules whose hidden layers learn through fixed random matrices ``B_k`` (DRTP, tpSGD, DFA).

    Reads the projection settings from ``self.options`` (a :class:`FeedbackOptions`), draws one
    ``B_k ∈ R^{C × n_k}`` per hidden layer in :meth:`setup` from the rule's generator
    (:func:`fixed_projection`) and keeps them in the rule's checkpoint state. Put it before
    the rule base class, so that its ``setup`` runs the base class's first.
    """

    name: str
    options: FeedbackOptions
    matrices: list[torch.Tensor]

    @property
    def spike(self) -> SpikeDerivative:
        return self.options.spike

    def setup(self, model: Network, objective: Objective, generator: torch.Generator) -> None:
        super().setup(model, objective, generator)  # type: ignore[misc]
        check_readout(model)
        c = model.output_size
        self.matrices = [fixed_projection(c, self.feedback_shape(layer), self.options.projection,
                                          float(self.options.scale), generator)
                         for layer in model.layers[:-1]]

    def feedback_shape(self, layer: Layer) -> tuple[int, ...]:
        """The shape ``B_k`` maps the label to: the layer's pre-activation (per sample)."""
        return tuple(layer.pre_features_shape)

    def check_setup(self) -> None:
        if not getattr(self, "matrices", None):
            raise ConfigError(f"rule {self.name!r}: call setup(model, objective, generator) before training")

    def state_dict(self) -> dict[str, Any]:
        return {"matrices": [m.clone() for m in self.matrices]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.matrices = [m.clone() for m in state["matrices"]]
