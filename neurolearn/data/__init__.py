"""Datasets: one :class:`Dataset` record per task, built by :func:`load_dataset`.

Names (see :data:`DATASETS`):

- ``digits``: scikit-learn's 8x8 digits, x ``[N, 64]`` in ``[0, 1]``, fixed split 1437/360.
- ``mnist`` / ``fashion-mnist``: x ``[N, 1, 28, 28]`` in ``[0, 1]``, 60000/10000 samples.
- ``seqmnist``: MNIST read row by row, x ``[N, 28, 28]`` = 28 steps of 28 pixels.
- ``copy``: memorise a symbol sequence and recall it after a delay (sequence regression).
- ``mackey-glass``: predict the Mackey-Glass series ``horizon`` samples ahead.
- ``evidence`` / ``evidence-ci``: evidence accumulation (e-prop, full size / CI scale).
- ``pattern``: pattern generation, a sum of sines from frozen Poisson input (e-prop).

Static data is ``[N, *input_shape]``; sequence data (``sequence=True``) is
``[N, T, *input_shape]``, batch-first. Labels are int64 class indices for classification
and float32 ``[N, T, n_outputs]`` for sequence regression.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from neurolearn.data import tasks, vision
from neurolearn.data.dataset import Dataset, check_int
from neurolearn.errors import ConfigError, unknown_name

__all__ = ["Dataset", "check_int", "DATASETS", "load_dataset", "dataset_options"]

DATASETS: dict[str, Callable[..., Dataset]] = {
    "digits": vision.load_digits,
    "mnist": vision.load_mnist,
    "fashion-mnist": vision.load_fashion_mnist,
    "seqmnist": vision.load_seqmnist,
    "copy": tasks.load_copy,
    "mackey-glass": tasks.load_mackey_glass,
    "evidence": tasks.load_evidence,
    "evidence-ci": tasks.load_evidence_ci,
    "pattern": tasks.load_pattern,
}


def dataset_options(name: str) -> dict[str, object]:
    """The options of dataset ``name`` with their defaults."""
    loader = DATASETS[name]
    return {
        p.name: p.default
        for p in inspect.signature(loader).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def load_dataset(name: str, root: str | Path | None = None, **options: object) -> Dataset:
    """Load dataset ``name`` (see :data:`DATASETS`) with its ``options``.

    ``root`` is the data folder for file-based datasets (default: ``$NEUROLEARN_DATA``,
    else ``~/.cache/neurolearn``); generated tasks ignore it. Names are case-insensitive
    and ``_`` may stand for ``-``. Raises :class:`ConfigError` for an unknown name or
    option, :class:`DataError` for missing or corrupt files.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise unknown_name("dataset", name, list(DATASETS))
    valid = dataset_options(key)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listed = ", ".join(f"{k}={v!r}" for k, v in valid.items()) or "none"
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"for dataset {key!r}; valid options: {listed}"
        )
    return DATASETS[key](root, **options)


__all__ = ["DATASETS", "Dataset", "dataset_options", "load_dataset"]
