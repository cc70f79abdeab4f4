"""Image datasets: scikit-learn digits, MNIST, Fashion-MNIST and row-sequential MNIST.

All images are float32 in ``[0, 1]`` (grey level / max level); labels are int64 class
indices ``0..9``.

MNIST-style files are looked up in ``<root>/<name>/`` and then directly in ``<root>``,
where ``root`` is the ``root`` argument, else ``$NEUROLEARN_DATA``, else
``~/.cache/neurolearn``. Each of the four IDX files may be gzipped (``*.gz``) or not.
Missing files are downloaded (``download=True``) into ``<root>/<name>/``; downloaded
files are checked against the original md5 sums, files already present are read as
they are.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurolearn.data.dataset import Dataset, check_int
from neurolearn.data.idx import read_idx
from neurolearn.errors import ConfigError, DataError

ENV_VAR = "NEUROLEARN_DATA"
DEFAULT_ROOT = "~/.cache/neurolearn"
DOWNLOAD_TIMEOUT_S = 10.0

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


@dataclass(frozen=True)
class IdxSource:
    """Where an MNIST-format dataset lives: its folder name, mirror and md5 of the .gz files."""

    folder: str
    title: str
    url: str
    md5: tuple[str, str, str, str]  # of the .gz files, in the order of IDX_FILES


MNIST = IdxSource(
    folder="mnist",
    title="MNIST",
    url="https://ossci-datasets.s3.amazonaws.com/mnist/",
    md5=(
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
)
FASHION_MNIST = IdxSource(
    folder="fashion-mnist",
    title="Fashion-MNIST",
    url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    md5=(
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83fd310",
    ),
)


# --------------------------------------------------------------------------- digits


def load_digits(root: str | Path | None = None) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1797 samples, bundled, no download).

    x: float32 ``[N, 64]``, pixel / 16 in ``[0, 1]``; y: int64 ``[N]`` in ``0..9``.
    Fixed stratified split: 1437 train / 360 test (``random_state=0``). ``root`` is ignored.
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=360, random_state=0, stratify=y)
    return Dataset(
        name="digits",
        x_train=torch.from_numpy(x_tr),
        y_train=torch.from_numpy(y_tr),
        x_test=torch.from_numpy(x_te),
        y_test=torch.from_numpy(y_te),
        input_shape=(64,),
        n_outputs=10,
        task="classification",
        sequence=False,
        info={
            "source": "sklearn.datasets.load_digits",
            "note": "fixed stratified split: train_test_split(test_size=360, random_state=0)",
        },
    )


# --------------------------------------------------------------------------- file lookup


def data_root(root: str | Path | None = None) -> Path:
    """The data folder: ``root``, else ``$NEUROLEARN_DATA``, else ``~/.cache/neurolearn``."""
    if root is None:
        root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
    return Path(root).expanduser()


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def find_idx_files(folders: list[Path]) -> list[Path] | None:
    """The four IDX files from the first folder holding all of them, or None."""
    for folder in folders:
        found = [_find_file(folder, stem) for stem in IDX_FILES]
        if all(p is not None for p in found):
            return found  # type: ignore[return-value]
    return None


class _DownloadFailed(Exception):
    """A download that did not produce a verified file; the message says why."""


def _download(url: str, dest: Path, md5: str) -> None:
    """Fetch ``url`` into ``dest`` atomically, checking its md5."""
    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    digest = hashlib.md5()
    try:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(
                tmp, "wb"
            ) as out:
                while chunk := resp.read(1 << 16):
                    digest.update(chunk)
                    out.write(chunk)
        except Exception as exc:  # URLError, HTTPError, timeouts, disk errors, ...
            raise _DownloadFailed(f"{url}: {exc}") from exc
        if digest.hexdigest() != md5:
            raise _DownloadFailed(
                f"{url}: md5 {digest.hexdigest()} differs from the original {md5}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _download_missing(source: IdxSource, folder: Path) -> None:
    """Download the files of ``source`` that ``folder`` lacks (raises _DownloadFailed)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _DownloadFailed(f"cannot create {folder}: {exc}") from exc
    for stem, md5 in zip(IDX_FILES, source.md5):
        if _find_file(folder, stem) is None:
            _download(source.url + f"{stem}.gz", folder / f"{stem}.gz", md5)


def locate_idx_files(source: IdxSource, root: str | Path | None, download: bool) -> list[Path]:
    """The four IDX files of ``source``, downloading them if needed and allowed."""
    base = data_root(root)
    folders = [base / source.folder, base]
    found = find_idx_files(folders)
    if found is not None:
        return found
    reason = "download=False"
    if download:
        try:
            _download_missing(source, folders[0])
        except _DownloadFailed as exc:
            reason = str(exc)
        else:
            found = find_idx_files(folders[:1])
            if found is not None:
                return found
            reason = "files missing after download"
    searched = " and ".join(str(f) for f in folders)
    raise DataError(
        f"{source.title} files not found in {searched} and could not be downloaded "
        f"({reason}). Put the four IDX files ({', '.join(IDX_FILES)}, .gz or not) in "
        f"{folders[0]}/ or set {ENV_VAR} to a folder holding {source.folder}/ "
        f"(e.g. {ENV_VAR}=../shared/data)"
    )


def _matches_original(source: IdxSource, files: list[Path]) -> bool:
    """Whether all four files are the original .gz files (by md5)."""
    for path, md5 in zip(files, source.md5):
        if path.suffix != ".gz" or hashlib.md5(path.read_bytes()).hexdigest() != md5:
            return False
    return True


# --------------------------------------------------------------------------- MNIST-style


def _check_limit(option: str, value: int | None, dataset: str) -> int | None:
    return None if value is None else check_int(option, value, 1, dataset)


def _read_split(
    images_path: Path, labels_path: Path, limit: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images float32 ``[N, 28, 28]`` in ``[0, 1]`` and labels int64 ``[N]``."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{images_path} holds {images.dtype} {images.shape}, not uint8 [N, 28, 28] images; "
            "it is corrupt or the wrong file: delete it and download it again"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{labels_path} holds labels of shape {labels.shape} for {len(images)} images in "
            f"{images_path}; one of them is corrupt: delete both and download them again"
        )
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{labels_path} holds labels outside 0..9; it is corrupt: delete it")
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def _load_idx_dataset(
    source: IdxSource,
    name: str,
    root: str | Path | None,
    train_limit: int | None,
    test_limit: int | None,
    download: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """Train/test images ``[N, 28, 28]`` and labels, plus the info dict."""
    train_limit = _check_limit("train_limit", train_limit, name)
    test_limit = _check_limit("test_limit", test_limit, name)
    if not isinstance(download, bool):
        raise ConfigError(f"dataset {name!r}: download must be True or False, got {download!r}")
    files = locate_idx_files(source, root, download)
    x_tr, y_tr = _read_split(files[0], files[1], train_limit)
    x_te, y_te = _read_split(files[2], files[3], test_limit)
    original = _matches_original(source, files)
    info = {
        "source": f"{source.title} IDX files in {files[0].parent}",
        "files": [str(p) for p in files],
        "original_bytes": original,
        "note": (
            f"{source.title}, files identical to the originals"
            if original
            else f"{source.title}, local copy not byte-identical to the original .gz files "
            f"(e.g. the offline copy: quote results as '{source.title} (offline copy)')"
        ),
    }
    if train_limit is not None or test_limit is not None:
        info["limits"] = {"train_limit": train_limit, "test_limit": test_limit}
    return x_tr, y_tr, x_te, y_te, info


def _image_dataset(
    source: IdxSource,
    name: str,
    root: str | Path | None,
    train_limit: int | None,
    test_limit: int | None,
    download: bool,
) -> Dataset:
    x_tr, y_tr, x_te, y_te, info = _load_idx_dataset(
        source, name, root, train_limit, test_limit, download
    )
    return Dataset(
        name=name,
        x_train=x_tr.unsqueeze(1),
        y_train=y_tr,
        x_test=x_te.unsqueeze(1),
        y_test=y_te,
        input_shape=(1, 28, 28),
        n_outputs=10,
        task="classification",
        sequence=False,
        info=info,
    )


def load_mnist(
    root: str | Path | None = None,
    *,
    train_limit: int | None = None,
    test_limit: int | None = None,
    download: bool = True,
) -> Dataset:
    """MNIST: x float32 ``[N, 1, 28, 28]`` in ``[0, 1]``, y int64 ``[N]`` in ``0..9``.

    60000 train / 10000 test; ``train_limit`` / ``test_limit`` keep the first K samples
    (all of them if K exceeds the count).
    """
    return _image_dataset(MNIST, "mnist", root, train_limit, test_limit, download)


def load_fashion_mnist(
    root: str | Path | None = None,
    *,
    train_limit: int | None = None,
    test_limit: int | None = None,
    download: bool = True,
) -> Dataset:
    """Fashion-MNIST: x float32 ``[N, 1, 28, 28]`` in ``[0, 1]``, y int64 ``[N]`` in ``0..9``.

    60000 train / 10000 test; same options as :func:`load_mnist`.
    """
    return _image_dataset(
        FASHION_MNIST, "fashion-mnist", root, train_limit, test_limit, download
    )


def load_seqmnist(
    root: str | Path | None = None,
    *,
    train_limit: int | None = None,
    test_limit: int | None = None,
    download: bool = True,
) -> Dataset:
    """Row-sequential MNIST: x float32 ``[N, 28, 28]`` = 28 time steps of 28 pixels.

    Pixels in ``[0, 1]``; y int64 ``[N]`` in ``0..9`` is the label of the whole sequence.
    Reads the MNIST files (same folder and options as :func:`load_mnist`).
    """
    x_tr, y_tr, x_te, y_te, info = _load_idx_dataset(
        MNIST, "seqmnist", root, train_limit, test_limit, download
    )
    info["note"] = info["note"] + "; rows are time steps (28 steps x 28 pixels)"
    return Dataset(
        name="seqmnist",
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        input_shape=(28,),
        n_outputs=10,
        task="classification",
        sequence=True,
        info=info,
    )
