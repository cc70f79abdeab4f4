"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 <dtype code> <ndim>``, then ``ndim``
big-endian ``uint32`` sizes, then the values in C order, big-endian. The dtype codes are
``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32 and
``0x0E`` float64. Files may be gzip-compressed (detected from the content, so a ``.gz``
name is not required for reading).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from neurolearn.errors import ConfigError, DataError

# dtype code -> big-endian numpy dtype
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

_GZIP_MAGIC = b"\x1f\x8b"


def _corrupt(path: Path, why: str) -> DataError:
    return DataError(
        f"{path} is corrupt ({why}); delete it and download it again "
        "(the loader re-downloads missing files)"
    )


def _read_bytes(path: Path) -> bytes:
    """The content of ``path``, decompressed if it is gzip data."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} not found") from None
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise _corrupt(path, f"bad gzip data: {exc}") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into a writable array in native byte order.

    Returns an array of the file's shape and dtype (``uint8`` for MNIST images
    ``[N, 28, 28]`` and labels ``[N]``). Raises :class:`DataError` if the file is missing,
    truncated or otherwise corrupt.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise _corrupt(path, f"only {len(data)} bytes, shorter than the IDX header")
    if data[0] != 0 or data[1] != 0:
        raise _corrupt(path, f"bad magic number {data[:4].hex()}, not an IDX file")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise _corrupt(path, f"unknown IDX dtype code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt(path, "truncated in the header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        raise _corrupt(
            path, f"{len(data)} bytes where the header {dims} implies {expected} (truncated?)"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _idx_code(dtype: np.dtype) -> int:
    for code, name in IDX_DTYPES.items():
        if np.dtype(name).newbyteorder("=") == dtype.newbyteorder("="):
            return code
    known = ", ".join(str(np.dtype(n).newbyteorder("=")) for n in IDX_DTYPES.values())
    raise ConfigError(f"IDX cannot store dtype {dtype}; use one of: {known}")


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

    The dtype must be one IDX supports (uint8, int8, int16, int32, float32, float64).
    The file is written atomically (temporary file, then rename).
    """
    path = Path(path)
    array = np.asarray(array)
    code = _idx_code(array.dtype)
    if array.ndim > 255:
        raise ConfigError(f"IDX stores at most 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=np.dtype(IDX_DTYPES[code])).tobytes()
    data = header + body
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
