"""Tests of the dataset layer: IDX files, the MNIST-style loaders and the generated tasks."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from neurolearn.data import DATASETS, Dataset, load_dataset, vision
from neurolearn.data.idx import read_idx, write_idx
from neurolearn.errors import ConfigError, DataError

# The offline copy: $NEUROLEARN_DATA (as CI sets it), else ../shared/data beside the repository.
SHARED_DATA = Path(os.environ.get("NEUROLEARN_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 4)])
def test_idx_round_trip_ubyte(tmp_path: Path, suffix: str, shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.uint8)
    path = tmp_path / f"a-idx{len(shape)}-ubyte{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_idx_round_trip_other_dtypes(tmp_path: Path) -> None:
    for dtype in (np.int8, np.int16, np.int32, np.float32, np.float64):
        array = (np.arange(12).reshape(3, 4) - 5).astype(dtype)
        write_idx(tmp_path / "x.idx", array)
        back = read_idx(tmp_path / "x.idx")
        assert back.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", np.zeros((2, 300), dtype=np.uint8))
    assert (tmp_path / "x").read_bytes()[:12] == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 1, 44])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_idx_is_a_data_error(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"images{suffix}"
    write_idx(path, np.ones((10, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match="corrupt") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_not_an_idx_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"hello world, not idx")
    with pytest.raises(DataError, match="corrupt"):
        read_idx(tmp_path / "junk")


# --------------------------------------------------------------------------- MNIST-style


def write_fake_mnist(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = True) -> None:
    """Small random MNIST-format files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10)


def test_mnist_from_fake_files(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path / "mnist")
    data = load_dataset("mnist", root=tmp_path, download=False)
    assert isinstance(data, Dataset)
    assert data.x_train.shape == (20, 1, 28, 28) and data.x_test.shape == (10, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert data.y_train.shape == (20,) and data.y_test.shape == (10,)
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    assert data.y_train.tolist() == [i % 10 for i in range(20)]
    assert data.input_shape == (1, 28, 28) and data.n_outputs == 10
    assert data.task == "classification" and not data.sequence
    assert data.info["original_bytes"] is False


def test_mnist_uncompressed_files_directly_in_root_and_limits(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, gz=False)
    data = load_dataset("mnist", root=tmp_path, download=False, train_limit=5, test_limit=3)
    assert data.x_train.shape == (5, 1, 28, 28) and data.y_test.shape == (3,)


def test_seqmnist_and_fashion_from_fake_files(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path / "mnist")
    write_fake_mnist(tmp_path / "fashion-mnist", n_train=4, n_test=2)
    seq = load_dataset("seqmnist", root=tmp_path, download=False)
    flat = load_dataset("mnist", root=tmp_path, download=False)
    assert seq.x_train.shape == (20, 28, 28) and seq.sequence and seq.input_shape == (28,)
    assert torch.equal(seq.x_train, flat.x_train[:, 0])
    fashion = load_dataset("fashion-mnist", root=tmp_path, download=False)
    assert fashion.x_train.shape == (4, 1, 28, 28)


def test_missing_mnist_without_download(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("mnist", root=tmp_path / "nowhere", download=False)
    message = str(err.value)
    assert "NEUROLEARN_DATA" in message and "nowhere" in message and "download=False" in message


def test_failed_download_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(vision.urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="no network") as err:
        load_dataset("fashion-mnist", root=tmp_path)
    assert "NEUROLEARN_DATA" in str(err.value)
    assert not list((tmp_path / "fashion-mnist").iterdir())


def test_download_checks_md5_and_writes_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vision.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"bad"))
    with pytest.raises(DataError, match="md5"):
        load_dataset("mnist", root=tmp_path)
    assert not list((tmp_path / "mnist").iterdir())


def test_download_fetches_only_missing_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_fake_mnist(tmp_path / "mnist")
    missing = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    payload = missing.read_bytes()
    missing.unlink()
    fetched: list[str] = []

    def fake_urlopen(url: str, timeout: float) -> object:
        fetched.append(url)
        return io.BytesIO(payload)

    md5 = (*vision.MNIST.md5[:3], hashlib.md5(payload).hexdigest())
    mirror = vision.IdxSource("mnist", "MNIST", "http://x/", md5)
    monkeypatch.setattr(vision, "MNIST", mirror)
    monkeypatch.setattr(vision.urllib.request, "urlopen", fake_urlopen)
    data = vision.load_mnist(tmp_path)
    assert fetched == ["http://x/t10k-labels-idx1-ubyte.gz"]
    assert data.y_test.shape == (10,) and missing.is_file()


def test_neurolearn_data_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fake_mnist(tmp_path / "mnist", n_train=3, n_test=2)
    monkeypatch.setenv("NEUROLEARN_DATA", str(tmp_path))
    data = load_dataset("mnist", download=False)
    assert data.x_train.shape == (3, 1, 28, 28)
    assert str(tmp_path) in data.info["source"]


def test_corrupt_mnist_file_names_the_file(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path / "mnist")
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DataError, match="corrupt") as err:
        load_dataset("mnist", root=tmp_path, download=False)
    assert "train-images" in str(err.value)


@pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir(), reason="no offline MNIST copy")
def test_real_offline_mnist() -> None:
    data = load_dataset("mnist", root=SHARED_DATA, download=False, test_limit=100)
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (100, 1, 28, 28)
    assert data.y_train.shape == (60000,)
    assert int(data.y_train.min()) == 0 and int(data.y_train.max()) == 9
    assert 0.0 <= float(data.x_train.min()) and float(data.x_train.max()) <= 1.0


# --------------------------------------------------------------------------- digits


def test_digits_fixed_split() -> None:
    a = load_dataset("digits")
    b = load_dataset("digits")
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    assert a.y_train.dtype == torch.int64 and a.x_train.dtype == torch.float32
    assert float(a.x_train.min()) == 0.0 and float(a.x_train.max()) == 1.0
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert torch.bincount(a.y_test).min() >= 35  # stratified: 36 per class, give or take


# --------------------------------------------------------------------------- copy


def test_copy_task() -> None:
    data = load_dataset("copy")
    assert data.x_train.shape == (1, 25, 6) and data.y_train.shape == (1, 25, 6)
    assert data.y_train.numel() == 150 and data.n_outputs == 6 and data.input_shape == (6,)
    assert data.task == "sequence_regression" and data.sequence
    assert torch.equal(data.x_train, data.x_test) and torch.equal(data.y_train, data.y_test)
    x, y = data.x_train[0], data.y_train[0]
    assert torch.all(x.sum(-1) == 1)  # one-hot input at every step
    assert torch.all(y[:15] == 0)
    assert torch.all(y[15:].sum(-1) == 1)  # one-hot target during recall
    assert torch.all(x[10:15, 0] == 1) and torch.all(x[15:, 5] == 1)  # blanks, then markers
    input_symbols = x[:10].argmax(-1)
    assert torch.all((input_symbols >= 1) & (input_symbols <= 4))
    assert torch.equal(y[15:].argmax(-1), input_symbols)


def test_copy_options_and_seed() -> None:
    data = load_dataset("copy", n_symbols=3, alphabet=2, delay=0, n_sequences=5, seed=7)
    assert data.x_train.shape == (5, 6, 4)
    assert torch.equal(data.y_train[:, 3:].argmax(-1), data.x_train[:, :3].argmax(-1))
    again = load_dataset("copy", n_symbols=3, alphabet=2, delay=0, n_sequences=5, seed=7)
    assert torch.equal(data.x_train, again.x_train)
    with pytest.raises(ConfigError, match="n_symbols"):
        load_dataset("copy", n_symbols=0)


# --------------------------------------------------------------------------- Mackey-Glass


def test_mackey_glass() -> None:
    data = load_dataset("mackey-glass")
    assert data.x_train.shape == (64, 200, 1) and data.y_train.shape == (64, 200, 1)
    assert data.x_test.shape == (16, 200, 1) and data.y_test.shape == (16, 200, 1)
    assert data.loss_mask is not None and data.loss_mask.dtype == torch.bool
    assert data.loss_mask.shape == (200,) and not data.loss_mask[:20].any()
    assert data.loss_mask[20:].all()
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()
    # the target is the input 15 samples later, within and across chunks
    assert torch.equal(data.y_train[:, :-15], data.x_train[:, 15:])
    assert torch.equal(data.y_train[0, -15:], data.x_train[1, :15])
    assert abs(float(data.x_train.mean())) < 1e-4 and float(data.x_train.std()) > 0.1
    assert data.info["target_var"] > 0.01
    assert data.task == "sequence_regression" and data.n_outputs == 1 and data.sequence


def test_mackey_glass_determinism() -> None:
    options = dict(length=50, n_train=4, n_test=2, washout=5)
    a = load_dataset("mackey-glass", seed=1, **options)
    b = load_dataset("mackey-glass", seed=1, **options)
    c = load_dataset("mackey-glass", seed=2, **options)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    with pytest.raises(ConfigError, match="washout"):
        load_dataset("mackey-glass", length=10, washout=10)


# --------------------------------------------------------------------------- registry


def test_unknown_name_and_option() -> None:
    assert set(DATASETS) == {"digits", "mnist", "fashion-mnist", "seqmnist", "copy", "mackey-glass", "evidence",
                             "evidence-ci", "pattern", "nmnist", "shd", "dvs-gesture"}
    with pytest.raises(ConfigError, match="known datasets"):
        load_dataset("cifar-10")
    with pytest.raises(ConfigError, match="n_symbols") as err:
        load_dataset("copy", n_symbol=3)
    assert "n_symbol" in str(err.value)
    with pytest.raises(ConfigError, match="train_limit"):
        load_dataset("mnist", limit=3)
    with pytest.raises(ConfigError):
        load_dataset("mnist", root="/nonexistent", train_limit=0)


def test_gzip_detected_from_content(tmp_path: Path) -> None:
    write_idx(tmp_path / "plain", np.arange(5, dtype=np.uint8))
    zipped = gzip.compress((tmp_path / "plain").read_bytes())
    (tmp_path / "zipped-without-suffix").write_bytes(zipped)
    np.testing.assert_array_equal(read_idx(tmp_path / "zipped-without-suffix"), np.arange(5))
