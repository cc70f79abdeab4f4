"""The one exception family of neurolearn.

Every error a user can cause (a wrong name, a bad parameter, a missing file, a run that
diverged) is raised as a :class:`NeurolearnError` whose message says what is wrong and how
to fix it. The command line prints that message without a traceback.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable


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


class NIRError(NeurolearnError, ValueError):
    """A network NIR cannot express, or a NIR graph/file neurolearn cannot read."""


class TrainingDiverged(NeurolearnError, FloatingPointError):
    """The loss became NaN or infinite during training."""


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (a likely typo), or ``None`` if none is close."""
    match = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return match[0] if match else None


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    guess = nearest(name, known)
    return f" (did you mean {guess!r}?)" if guess else ""


def unknown_name(kind: str, name: str, known: "list[str] | tuple[str, ...]") -> ConfigError:
    """The error for an unknown ``kind`` called ``name``, listing the known ones."""
    return ConfigError(f"unknown {kind} {name!r}{_did_you_mean(name, known)}; "
                       f"known {kind}s: {', '.join(sorted(known))}")


def unknown_key(where: str, key: str, known: Iterable[str]) -> ConfigError:
    """The error for an unknown configuration key ``key`` in ``where`` (e.g. ``"[train]"``,
    ``"neuron model 'lif'"``), naming the nearest valid key and listing them all."""
    known = sorted(str(k) for k in known)
    return ConfigError(f"{where}: unknown key {key!r}{_did_you_mean(key, known)}; valid keys: {', '.join(known)}")


def expect_number(where: str, value: Any, *, integer: bool = False) -> None:
    """Raise a :class:`ConfigError` unless ``value`` is a number (an int if ``integer``); booleans are
    refused (TOML's ``true`` is not the number 1)."""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where} must be {kind}, got {value!r} ({type(value).__name__})")
