"""Files on disk: atomic writes, strict JSON, checksummed checkpoints.

- **Atomic**: a file is either the old one or the complete new one, never half (written to a
  temporary file beside it, flushed, renamed); temporary files left behind by a killed writer are
  removed by the next write of the same file.
- **Readable by the group**: run files get the permissions ``0666 & ~umask`` of an ordinary file
  (not the ``0600`` of a temporary file).
- **Strict JSON**: ``metrics.json`` holds no ``NaN`` or ``Infinity`` tokens (which strict parsers
  refuse); a non-finite float is written as the string ``"Infinity"``, ``"-Infinity"`` or ``"NaN"``
  and :func:`read_json` turns those strings back into floats.
- **Checksummed checkpoints**: :func:`save_checkpoint` stores a SHA-256 of every tensor of the
  ``model`` (and ``training_model``) state; :func:`load_checkpoint` recomputes it and refuses weights
  that changed on disk, and refuses missing or mistyped fields with one line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from neurolearn.errors import CheckpointError

CHECKPOINT_FORMAT = "neurolearn-checkpoint-1"
_NONFINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}

# the fields of a checkpoint and their types (None allowed where the second entry says so)
_CHECKPOINT_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "epoch": (int, False),
    "config": (dict, False),
    "model": (dict, False),
    "history": (list, False),
    "elapsed": ((int, float), False),
}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write through ``write(fh)`` into a temporary file beside ``path``, then rename it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    for stale in path.parent.glob(f"{prefix}*"):  # left behind by a writer that was killed
        try:
            stale.unlink()
        except OSError:
            pass


def _finite(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by their string names (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _finite(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (see the module docstring), atomically."""
    text = json.dumps(_finite(obj), indent=2, allow_nan=False, default=_jsonable)
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def _restore(obj: Any) -> Any:
    if isinstance(obj, str) and obj in _NONFINITE:
        return _NONFINITE[obj]
    if isinstance(obj, dict):
        return {k: _restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_restore(v) for v in obj]
    return obj


def read_json(path: str | Path) -> Any:
    """Read a file written by :func:`write_json` (non-finite floats restored)."""
    return _restore(json.loads(Path(path).read_text(encoding="utf-8")))


def _jsonable(obj: Any) -> Any:
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def state_checksum(state: dict[str, Any]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict's tensors."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically, with checksums of its model states."""
    state = dict(state)
    state["checksums"] = {key: state_checksum(state[key]) for key in ("model", "training_model")
                          if isinstance(state.get(key), dict)}
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint, with a clear error if it is missing, truncated, altered or not ours."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; train first with `neurolearn train --out {path.parent}`")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or holds objects a safe load refuses "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); "
            "delete it to train again from scratch, or point to another run directory"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a neurolearn checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    for key, (types, _) in _CHECKPOINT_FIELDS.items():
        if key not in state:
            raise CheckpointError(f"checkpoint {path} has no {key!r} field; it is damaged or from another "
                                  "program: delete it to train again, or point to another run directory")
        if not isinstance(state[key], types) or isinstance(state[key], bool):
            raise CheckpointError(f"checkpoint {path}: field {key!r} has the wrong type "
                                  f"({type(state[key]).__name__}); the file is damaged: train again")
    for key, expected in (state.get("checksums") or {}).items():
        if not isinstance(state.get(key), dict) or state_checksum(state[key]) != expected:
            raise CheckpointError(f"checkpoint {path}: the weights in {key!r} do not match their checksum: the "
                                  "file was altered or damaged on disk. Train again, or restore it from a copy")
    return state
