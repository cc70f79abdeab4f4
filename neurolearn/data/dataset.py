"""The dataset record every loader returns, and the option check the loaders share."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from neurolearn.errors import ConfigError


@dataclass(repr=False)
class Dataset:
    """A train/test split of one task, as float32/int64 tensors on the CPU.

    ``x_*`` is float32: ``[N, *input_shape]`` for static data, ``[N, T, *input_shape]`` for
    sequences. ``y_*`` is int64 ``[N]`` (classification) or float32 ``[N, T, n_outputs]``
    (sequence regression). ``loss_mask`` (bool ``[T]``) marks the steps where the loss
    counts; ``None`` means all steps. ``info`` holds provenance and notes.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    n_outputs: int
    task: str
    sequence: bool
    loss_mask: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, task={self.task!r}, train x{tuple(self.x_train.shape)} "
            f"y{tuple(self.y_train.shape)}, test x{tuple(self.x_test.shape)} "
            f"y{tuple(self.y_test.shape)}, input_shape={self.input_shape}, "
            f"n_outputs={self.n_outputs}, sequence={self.sequence})"
        )


def check_int(option: str, value: object, minimum: int, dataset: str) -> int:
    """``value`` as an int, or :class:`ConfigError` if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"dataset {dataset!r}: {option} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"dataset {dataset!r}: {option} must be >= {minimum}, got {value}")
    return value
