"""Event datasets through tonic (neurolearn.data.events): N-MNIST files in tonic's on-disk
format written here, binned by ToFrame; the missing-files and missing-tonic messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurolearn.data import load_dataset
from neurolearn.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


def write_nmnist_bin(path: Path, x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray) -> None:
    """One N-MNIST recording: 5 bytes per event, x, y, p<<7 | t[22:16], t[15:8], t[7:0] (t in us)."""
    assert t.max() < 2**23 and y.max() < 240  # y == 240 marks a timestamp-overflow record
    raw = np.zeros((len(x), 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | ((t >> 16) & 127)
    raw[:, 3], raw[:, 4] = (t >> 8) & 255, t & 255
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def make_nmnist(root: Path, per_split: dict[str, list[int]], n_events: int = 60, seed: int = 0,
                durations: list[int] | None = None) -> dict[str, list[tuple[np.ndarray, ...]]]:
    """Recordings of the given digits in <root>/NMNIST/{Train,Test}/<digit>/, events in file order."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[tuple[np.ndarray, ...]]] = {}
    for split, digits in per_split.items():
        written[split] = []
        for k, digit in enumerate(digits):
            duration = durations[k] if durations else 300_000
            x, y = rng.integers(0, 34, n_events), rng.integers(0, 34, n_events)
            t, p = np.sort(rng.integers(0, duration, n_events)), rng.integers(0, 2, n_events)
            write_nmnist_bin(root / "NMNIST" / split / str(digit) / f"{k:05d}.bin", x, y, t, p)
            written[split].append((x, y, t, p))
    return written


def expected_frames(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray, n_bins: int) -> np.ndarray:
    """ToFrame's n_time_bins counts: bins of w = (t_last - t_first) // n_bins us from t_first,
    frame[i, p, y, x] = #events with (t - t_first) // w == i; the tail past n_bins * w is dropped."""
    w = (t[-1] - t[0]) // n_bins
    b = (t - t[0]) // w
    keep = b < n_bins
    frames = np.zeros((n_bins, 2, 34, 34))
    np.add.at(frames, (b[keep], p[keep], y[keep], x[keep]), 1)
    return frames


def test_core_imports_without_tonic() -> None:
    code = "import neurolearn, neurolearn.data, neurolearn.cli, sys; assert 'tonic' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_nmnist_frames_count_the_written_events(tmp_path: Path) -> None:
    pytest.importorskip("tonic")
    written = make_nmnist(tmp_path, {"Train": [0, 3, 7, 9], "Test": [1, 5]})
    ds = load_dataset("nmnist", root=tmp_path, n_time_bins=6)
    assert ds.sequence and ds.task == "classification" and ds.input_shape == (2, 34, 34) and ds.n_outputs == 10
    assert ds.x_train.shape == (4, 6, 2, 34, 34) and ds.x_test.shape == (2, 6, 2, 34, 34)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.y_train.tolist() == [0, 3, 7, 9] and ds.y_test.tolist() == [1, 5]
    for x, events in [(ds.x_train, written["Train"]), (ds.x_test, written["Test"])]:
        for i, ev in enumerate(events):
            np.testing.assert_array_equal(x[i].numpy(), expected_frames(*ev, n_bins=6))
            assert x[i].sum() >= len(ev[0]) - 6  # at most the last partial bin's events are dropped


def test_nmnist_default_bins_and_limits(tmp_path: Path) -> None:
    pytest.importorskip("tonic")
    make_nmnist(tmp_path, {"Train": list(range(10)), "Test": [2, 4, 6]})
    ds = load_dataset("nmnist", root=tmp_path, train_limit=4, test_limit=2)
    assert ds.x_train.shape == (4, 25, 2, 34, 34) and ds.x_test.shape == (2, 25, 2, 34, 34)
    labels = ds.y_train.tolist()
    assert labels == sorted(labels) and len(set(labels)) == 4 and labels != [0, 1, 2, 3]  # a spread subset
    assert load_dataset("nmnist", root=tmp_path, train_limit=4, test_limit=2).y_train.tolist() == labels


def test_nmnist_time_window_pads_short_recordings(tmp_path: Path) -> None:
    tonic = pytest.importorskip("tonic")
    written = make_nmnist(tmp_path, {"Train": [1, 2], "Test": [3]}, durations=[300_000, 100_000])
    ds = load_dataset("nmnist", root=tmp_path, time_window=50_000.0)
    to_frame = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), time_window=50_000.0)
    dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    lengths = []
    for i, (x, y, t, p) in enumerate(written["Train"]):
        events = np.zeros(len(x), dtype=dtype)
        events["x"], events["y"], events["t"], events["p"] = x, y, t, p
        frames = to_frame(events)
        lengths.append(frames.shape[0])
        np.testing.assert_array_equal(ds.x_train[i, : frames.shape[0]].numpy(), frames)
        assert not ds.x_train[i, frames.shape[0]:].any()
    assert ds.x_train.shape[1] == max(lengths) and lengths[1] < lengths[0]


@pytest.mark.parametrize("name,missing", [("nmnist", "NMNIST/Train"), ("shd", "SHD/shd_train.h5"),
                                          ("dvs-gesture", "DVSGesture/ibmGestureTrain")])
def test_missing_files_say_where_and_which_extra(tmp_path: Path, name: str, missing: str) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(name, root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / missing) in message and "pip install 'neurolearn[events]'" in message
    assert "\n" not in message


def test_missing_tonic_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_nmnist(tmp_path, {"Train": [0], "Test": [1]})
    monkeypatch.setitem(sys.modules, "tonic", None)  # import tonic -> ImportError
    with pytest.raises(DataError, match=r"needs tonic.*pip install 'neurolearn\[events\]'"):
        load_dataset("nmnist", root=tmp_path)


def test_bad_binning_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        load_dataset("nmnist", root=tmp_path, n_time_bins=5, time_window=1000.0)
    with pytest.raises(ConfigError, match="time_window"):
        load_dataset("nmnist", root=tmp_path, time_window=0)
    with pytest.raises(ConfigError, match="n_time_bins"):
        load_dataset("nmnist", root=tmp_path, n_time_bins=0)
    with pytest.raises(ConfigError, match="n_time_bins"):
        load_dataset("shd", root=tmp_path, n_time_bin=5)


def test_shd_frames_count_the_written_spikes(tmp_path: Path) -> None:
    """SHD's HDF5 layout (spikes/times in s, spikes/units, labels): x [N, T, 700] spike counts."""
    pytest.importorskip("tonic")
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    written = {}
    for split, labels in (("train", [3, 7, 19]), ("test", [0, 5])):
        (tmp_path / "SHD").mkdir(exist_ok=True)
        with h5py.File(tmp_path / "SHD" / f"shd_{split}.h5", "w") as f:
            times = f.create_dataset("spikes/times", (len(labels),), dtype=h5py.vlen_dtype(np.float32))
            units = f.create_dataset("spikes/units", (len(labels),), dtype=h5py.vlen_dtype(np.uint16))
            written[split] = []
            for i in range(len(labels)):
                t, u = np.sort(rng.uniform(0, 1, 40)).astype(np.float32), rng.integers(0, 700, 40).astype(np.uint16)
                times[i], units[i] = t, u
                written[split].append((t.astype(np.float64) * 1e6, u))  # tonic's microseconds
            f["labels"] = np.array(labels, dtype=np.uint16)
            f["extra/keys"] = np.array([b"digit"] * 20)
            f["extra/speaker"] = np.zeros(len(labels), dtype=np.uint16)
    ds = load_dataset("shd", root=tmp_path, n_time_bins=4)
    assert ds.x_train.shape == (3, 4, 700) and ds.x_test.shape == (2, 4, 700) and ds.n_outputs == 20
    assert ds.y_train.tolist() == [3, 7, 19] and ds.y_test.tolist() == [0, 5]
    for i, (t, u) in enumerate(written["train"]):
        w = (t[-1] - t[0]) // 4
        b = ((t - t[0]) // w).astype(int)
        expected = np.zeros((4, 700))
        np.add.at(expected, (b[b < 4], u[b < 4]), 1)
        np.testing.assert_array_equal(ds.x_train[i].numpy(), expected)
