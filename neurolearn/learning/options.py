r"""Validation for the rules' options: each rule's options are a frozen dataclass checked when
it is built (``__post_init__``), so a wrong type, range or name is one :class:`ConfigError`
naming the option before any training starts.

:func:`build_options` turns the keyword parameters of ``make_rule(name, **params)`` (the TOML
``[rules.<name>]`` tables, ``--set rule.params.x=...``) into a rule's options; an unknown
parameter names the nearest valid one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Iterable, TypeVar

from neurolearn.errors import ConfigError, expect_number, unknown_key, unknown_name

O = TypeVar("O")


@dataclass(frozen=True)
class NoOptions:
    """The options of a rule that takes none."""


def option_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def build_options(cls: type[O], options: O | None, params: dict[str, Any], where: str) -> O:
    """``options`` as given, or ``cls(**params)`` after refusing any unknown key (``where`` names the
    rule in the message)."""
    if options is not None:
        if params:
            raise ConfigError(f"{where}: pass either an options object or keyword parameters, not both")
        if not isinstance(options, cls):
            raise ConfigError(f"{where}: options must be a {cls.__name__}, got {type(options).__name__}")
        return options
    known = option_names(cls)
    if params and not known:
        raise ConfigError(f"{where} takes no parameters, got {', '.join(sorted(params))}")
    for key in params:
        if key not in known:
            raise unknown_key(where, key, known)
    return cls(**params)


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, integer: bool = False,
                 finite: bool = True) -> None:
    """Refuse a non-number (booleans included), a non-finite value (unless ``finite=False``)
    or one outside ``[low, high]`` (open ends with ``low_open`` / ``high_open``)."""
    expect_number(name, value, integer=integer)
    if finite and not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if math.isnan(value):
        raise ConfigError(f"{name} must be a number, got nan")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise ConfigError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")


def check_choice(name: str, value: Any, known: Iterable[str]) -> None:
    """Refuse a value that is not one of ``known`` (naming the nearest)."""
    known = tuple(known)
    if not isinstance(value, str) or value not in known:
        raise unknown_name(name, str(value), known)


def check_bool(name: str, value: Any, optional: bool = False) -> None:
    if not (isinstance(value, bool) or (optional and value is None)):
        raise ConfigError(f"{name} must be true or false{' (or unset)' if optional else ''}, got {value!r}")
