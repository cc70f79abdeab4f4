"""Datasets: one :class:`Dataset` record per task, built by :func:`load_dataset`.

Names (see :data:`DATASETS`):

- ``digits``: scikit-learn's 8x8 digits, x ``[N, 64]`` in ``[0, 1]``, fixed split 1437/360.
- ``mnist`` / ``fashion-mnist``: x ``[N, 1, 28, 28]`` in ``[0, 1]``, 60000/10000 samples.
- ``seqmnist``: MNIST read row by row, x ``[N, 28, 28]`` = 28 steps of 28 pixels.
- ``copy``: memorise a symbol sequence and recall it after a delay (sequence regression).
- ``mackey-glass``: predict the Mackey-Glass series ``horizon`` samples ahead.
- ``evidence`` / ``evidence-ci``: evidence accumulation (e-prop, full size / CI scale).
- ``pattern``: pattern generation, a sum of sines from frozen Poisson input (e-prop).
- ``nmnist`` / ``shd`` / ``dvs-gesture``: event data via tonic (``neurolearn[events]``), see :mod:`neurolearn.data.events`.
- ``module:function`` (any name with a colon): a user's loader, see :func:`load_user_dataset`.

Static data is ``[N, *input_shape]``; sequence data (``sequence=True``) is
``[N, T, *input_shape]``, batch-first. Labels are int64 class indices for classification
and float32 ``[N, T, n_outputs]`` for sequence regression.
"""

from __future__ import annotations

import importlib
import inspect
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from neurolearn.data import events, tasks, vision
from neurolearn.data.dataset import Dataset, check_int
from neurolearn.errors import ConfigError, DataError, ShapeError, unknown_name

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
    "nmnist": events.load_nmnist,  # the events extra (tonic), local files only
    "shd": events.load_shd,
    "dvs-gesture": events.load_dvs_gesture,
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
    if ":" not in name and key not in DATASETS:
        raise unknown_name("dataset", name, list(DATASETS))
    valid = dataset_options(key) if ":" not in name else {}
    unknown = sorted(set(options) - set(valid)) if ":" not in name else []
    if unknown:
        listed = ", ".join(f"{k}={v!r}" for k, v in valid.items()) or "none"
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"for dataset {key!r}; valid options: {listed}"
        )
    print(f"loading {name} ...", file=sys.stderr, flush=True)  # MNIST takes seconds: say so
    start = time.perf_counter()
    if ":" in name:
        dataset = load_user_dataset(name, root, **options)
    else:
        dataset = DATASETS[key](root, **options)
    print(f"loaded {name}: {dataset.x_train.shape[0]} train / {dataset.x_test.shape[0]} test samples "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return dataset


def _import_loader(spec: str) -> Callable[..., object]:
    """The function ``module:function`` names (``module`` importable from ``sys.path``)."""
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise ConfigError(f"data {spec!r}: expected 'module:function' (e.g. mypkg.mydata:make)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"data {spec!r}: cannot import module {module_name!r} ({exc}); put its folder on PYTHONPATH "
            "or run from the folder that holds it"
        ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"data {spec!r}: module {module_name!r} has no function {func_name!r}")
    return func


def _as_tensors(split: object, which: str, spec: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``(x, y)`` sample of a map-style or iterable torch dataset (or a DataLoader), stacked."""
    if isinstance(split, (tuple, list)) and len(split) == 2 and all(isinstance(t, torch.Tensor) for t in split):
        xs, ys = split
        return xs, ys
    xs_list: list[torch.Tensor] = []
    ys_list: list[torch.Tensor] = []
    try:
        iterator = iter(split)  # map-style datasets iterate through __getitem__ until IndexError
    except TypeError:
        raise ConfigError(f"data {spec!r}: the {which} split is a {type(split).__name__}, not a dataset "
                          "(expected a torch Dataset, DataLoader or an (x, y) pair of tensors)") from None
    from torch.utils.data import DataLoader

    batched = isinstance(split, DataLoader) and split.batch_size is not None
    for i, item in enumerate(iterator):
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ConfigError(f"data {spec!r}: {which} sample {i} is a {type(item).__name__}; each sample must "
                              "be an (x, y) pair")
        x, y = torch.as_tensor(item[0]), torch.as_tensor(item[1])
        xs_list.append(x if batched else x.unsqueeze(0))
        ys_list.append(y.reshape(-1) if batched and y.dim() <= 1 else (y if batched else y.unsqueeze(0)))
    if not xs_list:
        raise DataError(f"data {spec!r}: the {which} split is empty")
    try:
        return torch.cat(xs_list), torch.cat(ys_list)
    except RuntimeError as exc:
        raise ShapeError(f"data {spec!r}: the {which} samples do not all have one shape ({exc})") from None


def load_user_dataset(spec: str, root: str | Path | None = None, **options: object) -> Dataset:
    """A user's data: ``spec = "module:function"`` names a function returning ``(train, test)``.

    Each split is a torch ``Dataset`` (map-style or iterable), a ``DataLoader``, or an ``(x, y)``
    pair of tensors, whose samples are ``(x, y)``: ``x`` one sample of any shape (the network's
    input shape; ``[T, ...]`` when sequences), ``y`` an integer class. ``options`` (a model
    file's ``[data_options]``; ``root`` only if the function takes it) are passed to the function
    as keyword arguments. The splits are read once into an in-memory :class:`Dataset`
    (classification; ``n_outputs`` = the largest class + 1); :func:`check_fits` checks them
    against the network. The model file says ``data = "mypkg.mydata:make"``; the CLI
    ``--data mypkg.mydata:make``; the module must be importable (on ``PYTHONPATH``) for
    ``train`` and for ``eval`` alike.
    """
    func = _import_loader(spec)
    kwargs = dict(options)
    if root is not None and "root" in inspect.signature(func).parameters:
        kwargs["root"] = root
    try:
        result = func(**kwargs)
    except TypeError as exc:
        if "argument" in str(exc):
            raise ConfigError(f"data {spec!r}: calling it with {kwargs or 'no options'} failed: {exc}") from None
        raise
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise ConfigError(f"data {spec!r} must return (train, test) datasets, got {type(result).__name__}")
    x_train, y_train = _as_tensors(result[0], "train", spec)
    x_test, y_test = _as_tensors(result[1], "test", spec)
    if tuple(x_train.shape[1:]) != tuple(x_test.shape[1:]):
        raise ShapeError(f"data {spec!r}: train samples have shape {list(x_train.shape[1:])} but test samples "
                         f"{list(x_test.shape[1:])}")
    for which, y in (("train", y_train), ("test", y_test)):
        if y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
            raise ConfigError(f"data {spec!r}: {which} labels must be integer class indices, one per sample; got "
                              f"{y.dtype} of shape {list(y.shape)}")
        if y.numel() and int(y.min()) < 0:
            raise ConfigError(f"data {spec!r}: {which} labels must be >= 0, got {int(y.min())}")
    n_classes = int(max(int(y_train.max()), int(y_test.max()))) + 1
    return Dataset(
        name=spec, x_train=x_train.float(), y_train=y_train.long(), x_test=x_test.float(), y_test=y_test.long(),
        input_shape=tuple(x_train.shape[1:]), n_outputs=n_classes, task="classification", sequence=False,
        info={"source": spec, "options": kwargs},
    )


def check_fits(dataset: Dataset, output_size: int, input_shape: tuple[int, ...] | None = None) -> None:
    """:class:`ShapeError` with one line unless the network's readout has one unit per class
    (classification) / per output, and its input takes the data's samples."""
    if input_shape is not None and math.prod(input_shape) != math.prod(dataset.input_shape):
        raise ShapeError(f"the network takes inputs of shape {list(input_shape)} but {dataset.name} has samples of "
                         f"shape {list(dataset.input_shape)}")
    if output_size != dataset.n_outputs:
        what = "classes" if dataset.task == "classification" else "outputs"
        raise ShapeError(
            f"the network's readout has {output_size} units but {dataset.name} has {dataset.n_outputs} {what}; "
            f"set the last layer's size to {dataset.n_outputs}"
        )


__all__ = ["DATASETS", "Dataset", "check_fits", "dataset_options", "load_dataset", "load_user_dataset"]
