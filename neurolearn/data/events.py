"""Event-camera and spike datasets read through tonic (the optional ``events`` extra).

Names: ``nmnist`` (N-MNIST, 2x34x34 DVS frames, 10 digits), ``shd`` (Spiking Heidelberg
Digits, 700 input channels, 20 classes) and ``dvs-gesture`` (IBM DVS Gesture, 2x128x128
frames, 11 classes).

Files are read from a local folder only, never downloaded: ``root`` (``--data-dir``), else
``$NEUROLEARN_DATA``, else ``~/.cache/neurolearn``, in tonic's own layout under
``<root>/<TonicClass>/``:

- ``nmnist``: ``<root>/NMNIST/Train/<digit>/*.bin`` and ``<root>/NMNIST/Test/<digit>/*.bin``
  (the extracted archives);
- ``shd``: ``<root>/SHD/shd_train.h5`` and ``<root>/SHD/shd_test.h5``;
- ``dvs-gesture``: ``<root>/DVSGesture/ibmGestureTrain/user*_*/<class>.npy`` and
  ``.../ibmGestureTest/...`` (tonic's preprocessed ``.npy`` files).

Each recording (events ``e_k = (t_k, x_k, y_k, p_k)``) becomes ``T`` frames with tonic's
``transforms.ToFrame``: frame ``i`` counts the events of bin ``i``,

    frame[i, p, y, x] = #{k : t_k in bin i, p_k = p, x_k = x, y_k = y},

with either ``n_time_bins`` equal bins spanning each recording (default 25), or bins of a
fixed ``time_window`` (microseconds, tonic's time unit), in which case recordings of different
lengths are zero-padded at the end to the longest one. x is float32 ``[N, T, *input_shape]``
(``sequence=True``), y int64 class indices. ``train_limit`` / ``test_limit`` keep a fixed
(seed 0) random subset of that size, in file order, so small subsets still hold every class.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from neurolearn.data.dataset import Dataset, check_int
from neurolearn.data.vision import ENV_VAR, data_root
from neurolearn.errors import ConfigError, DataError

EXTRA_HINT = "pip install 'neurolearn[events]'"
DEFAULT_TIME_BINS = 25


@dataclass(frozen=True)
class EventSource:
    """One tonic dataset: its class, the files each split needs, its frame shape and classes."""

    name: str
    tonic_class: str
    train_path: str  # relative to <root>/<tonic_class>/
    test_path: str
    input_shape: tuple[int, ...]
    n_outputs: int
    split_kwarg: str  # how the tonic class is told the split: "train" (bool)


NMNIST = EventSource("nmnist", "NMNIST", "Train", "Test", (2, 34, 34), 10, "train")
SHD = EventSource("shd", "SHD", "shd_train.h5", "shd_test.h5", (700,), 20, "train")
DVS_GESTURE = EventSource("dvs-gesture", "DVSGesture", "ibmGestureTrain", "ibmGestureTest", (2, 128, 128), 11,
                          "train")


def import_tonic(dataset: str) -> ModuleType:
    """``tonic``, imported on first use; :class:`DataError` naming the extra if it is absent."""
    try:
        return importlib.import_module("tonic")
    except ImportError as exc:
        raise DataError(f"dataset {dataset!r} needs tonic, which is not installed ({exc}); "
                        f"install the events extra: {EXTRA_HINT}") from None


def _present(path: Path) -> bool:
    """A data file, or a folder holding at least one file (at any depth)."""
    if path.is_file():
        return True
    return path.is_dir() and any(p.is_file() for p in path.rglob("*"))


def _tonic_dataset(tonic: ModuleType, source: EventSource, base: Path, train: bool) -> Any:
    """tonic's dataset object for one split, reading ``base`` only: downloading raises DataError.

    tonic's own existence checks want the downloaded archive and (for N-MNIST) all 10000
    files; the subclass accepts any extracted copy, so subsets and test fixtures load too.
    """
    cls = getattr(tonic.datasets, source.tonic_class)
    wanted = base / source.tonic_class / (source.train_path if train else source.test_path)

    def _check_exists(self: Any) -> bool:
        return _present(wanted)

    def download(self: Any) -> None:  # never reached while _check_exists holds; a guard
        raise DataError(f"dataset {source.name!r}: {wanted} is missing and neurolearn never downloads")

    local = type(cls.__name__, (cls,), {"_check_exists": _check_exists, "download": download})
    try:
        return local(str(base), **{source.split_kwarg: train})
    except DataError:
        raise
    except Exception as exc:  # corrupt files: tonic/h5py/numpy raise many kinds
        raise DataError(f"dataset {source.name!r}: cannot read {wanted} ({type(exc).__name__}: {exc})") from None


def _subset(n: int, limit: int | None) -> np.ndarray:
    """Indices of a fixed (seed 0) random subset of size ``limit``, in file order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).permutation(n)[:limit])


def _frames(tonic: ModuleType, source: EventSource, data: Any, indices: np.ndarray,
            n_time_bins: int | None, time_window: float | None, which: str) -> tuple[list[np.ndarray], list[int]]:
    """Binned frames ``[T_i, *input_shape]`` (int counts) and labels of the chosen samples."""
    sensor_size = data.sensor_size
    if time_window is not None:
        to_frame = tonic.transforms.ToFrame(sensor_size=sensor_size, time_window=time_window)
    else:
        to_frame = tonic.transforms.ToFrame(sensor_size=sensor_size, n_time_bins=n_time_bins)
    frames: list[np.ndarray] = []
    labels: list[int] = []
    for i in indices:
        try:
            events, label = data[int(i)]
            frame = to_frame(events)
        except Exception as exc:
            raise DataError(f"dataset {source.name!r}: cannot read {which} sample {int(i)} "
                            f"({type(exc).__name__}: {exc})") from None
        frames.append(np.asarray(frame).reshape(frame.shape[0], *source.input_shape))
        labels.append(int(label))
    return frames, labels


def _stack(frames: list[np.ndarray], steps: int, shape: tuple[int, ...]) -> torch.Tensor:
    """float32 ``[N, steps, *shape]``, each recording zero-padded at the end to ``steps``."""
    x = np.zeros((len(frames), steps, *shape), dtype=np.float32)
    for i, f in enumerate(frames):
        x[i, : f.shape[0]] = f[:steps]
    return torch.from_numpy(x)


def load_events(
    source: EventSource,
    root: str | Path | None,
    n_time_bins: int | None,
    time_window: float | None,
    train_limit: int | None,
    test_limit: int | None,
) -> Dataset:
    """The :class:`Dataset` of ``source`` (see the module docstring for layout and binning)."""
    name = source.name
    if n_time_bins is not None and time_window is not None:
        raise ConfigError(f"dataset {name!r}: give n_time_bins or time_window, not both")
    if time_window is not None:
        if isinstance(time_window, bool) or not isinstance(time_window, (int, float)) \
                or not math.isfinite(time_window) or time_window <= 0:
            raise ConfigError(f"dataset {name!r}: time_window must be a positive number of "
                              f"microseconds, got {time_window!r}")
    else:
        n_time_bins = check_int("n_time_bins", DEFAULT_TIME_BINS if n_time_bins is None else n_time_bins, 1, name)
    for option, value in (("train_limit", train_limit), ("test_limit", test_limit)):
        if value is not None:
            check_int(option, value, 1, name)
    base = data_root(root)
    for rel in (source.train_path, source.test_path):
        wanted = base / source.tonic_class / rel
        if not _present(wanted):
            raise DataError(
                f"dataset {name!r}: {wanted} is missing (tonic's layout under <data dir>/{source.tonic_class}/; "
                f"set --data-dir or {ENV_VAR}; neurolearn never downloads it; needs {EXTRA_HINT})"
            )
    tonic = import_tonic(name)
    splits = []
    for train, limit in ((True, train_limit), (False, test_limit)):
        data = _tonic_dataset(tonic, source, base, train)
        which = "train" if train else "test"
        n = len(data)
        if n == 0:
            raise DataError(f"dataset {name!r}: no {which} recordings in "
                            f"{base / source.tonic_class / (source.train_path if train else source.test_path)}")
        splits.append(_frames(tonic, source, data, _subset(n, limit), n_time_bins, time_window, which))
    steps = max(f.shape[0] for frames, _ in splits for f in frames)
    if steps == 0:
        raise DataError(f"dataset {name!r}: time_window={time_window} gives no complete bin in any recording")
    (f_tr, y_tr), (f_te, y_te) = splits
    binning = f"{n_time_bins} time bins per recording" if time_window is None else \
        f"bins of {time_window} us, zero-padded to {steps} steps"
    return Dataset(
        name=name,
        x_train=_stack(f_tr, steps, source.input_shape),
        y_train=torch.tensor(y_tr, dtype=torch.int64),
        x_test=_stack(f_te, steps, source.input_shape),
        y_test=torch.tensor(y_te, dtype=torch.int64),
        input_shape=source.input_shape,
        n_outputs=source.n_outputs,
        task="classification",
        sequence=True,
        info={"source": str(base / source.tonic_class), "note": f"tonic ToFrame event counts, {binning}"},
    )


def load_nmnist(root: str | Path | None = None, *, n_time_bins: int | None = None, time_window: float | None = None,
                train_limit: int | None = None, test_limit: int | None = None) -> Dataset:
    """N-MNIST: x float32 ``[N, T, 2, 34, 34]`` event counts (polarity, y, x), y int64 in ``0..9``."""
    return load_events(NMNIST, root, n_time_bins, time_window, train_limit, test_limit)


def load_shd(root: str | Path | None = None, *, n_time_bins: int | None = None, time_window: float | None = None,
             train_limit: int | None = None, test_limit: int | None = None) -> Dataset:
    """Spiking Heidelberg Digits: x float32 ``[N, T, 700]`` spike counts, y int64 in ``0..19``."""
    return load_events(SHD, root, n_time_bins, time_window, train_limit, test_limit)


def load_dvs_gesture(root: str | Path | None = None, *, n_time_bins: int | None = None,
                     time_window: float | None = None, train_limit: int | None = None,
                     test_limit: int | None = None) -> Dataset:
    """IBM DVS Gesture: x float32 ``[N, T, 2, 128, 128]`` event counts, y int64 in ``0..10``."""
    return load_events(DVS_GESTURE, root, n_time_bins, time_window, train_limit, test_limit)
