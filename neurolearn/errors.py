"""The one exception family of neurolearn.

Every error a user can cause (a wrong name, a bad parameter, a missing file, a run that
diverged) is raised as a :class:`NeurolearnError` whose message says what is wrong and how
to fix it. The command line prints that message without a traceback.
"""

from __future__ import annotations


class NeurolearnError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""


class ConfigError(NeurolearnError, ValueError):
    """An invalid parameter, name or configuration value."""


class ShapeError(NeurolearnError, ValueError):
    """An input whose shape does not fit the model."""


class DataError(NeurolearnError, FileNotFoundError):
    """A dataset that is missing or unreadable."""


class CheckpointError(NeurolearnError):
    """A checkpoint that is corrupt or belongs to another model."""


class TrainingDiverged(NeurolearnError, FloatingPointError):
    """The loss became NaN or infinite during training."""


def unknown_name(kind: str, name: str, known: "list[str] | tuple[str, ...]") -> ConfigError:
    """The error for an unknown ``kind`` called ``name``, listing the known ones."""
    return ConfigError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")
