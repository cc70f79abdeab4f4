r"""What a run tells its user: progress that a batch job can read, per-epoch spike metrics, a CSV log.

**Progress** (:class:`Progress`): under a terminal a tqdm bar that stays on screen; when the
stream is not a terminal (``neurolearn train ... > log.txt 2>&1``, a cluster job) one plain
line every ``interval`` seconds (default 10 s, ``$NEUROLEARN_PROGRESS_INTERVAL``)::

    epoch 1/10: 120/938 batches (13%), 10.0 s, ~58 s left, loss 0.4512

**Spike metrics** (:func:`spike_metrics`) of a spiking network on one encoded batch, per sample:

- ``rate_<k>``: firing rate of spiking layer ``k``, spikes per neuron per time step
  (``r_k = Σ_{t,i} s_i[t] / (T N_k)``; in Hz: ``r_k / dt``, written as ``rate_hz_<k>``);
- ``synops_<k>`` and ``synops``: synaptic operations as NeuroBench counts them (its
  ``SynapticOperations`` "effective" ops): every non-zero input of a layer costs one
  operation per synapse it drives, ``Σ_t Σ_j [x_j[t] ≠ 0] · fanout_j``, summed over time and
  averaged over the samples (for a binary input these are accumulates, ACs; for a real-valued
  input, e.g. direct encoding into the first layer, multiply-accumulates). Dense layers have
  ``fanout_j = N_out``; conv layers the number of outputs each pixel reaches (counted exactly by
  convolving the non-zero mask with a kernel of ones); a recurrent layer adds
  ``[s_j[t-1] ≠ 0] · N`` for its recurrent synapses.

**CSV log** (:func:`write_csv`): ``metrics.csv`` beside ``metrics.json``, one row per epoch.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import torch
import torch.nn.functional as F

DEFAULT_INTERVAL_S = 10.0


def progress_interval() -> float:
    """Seconds between progress lines off a terminal (``$NEUROLEARN_PROGRESS_INTERVAL``, default 10)."""
    raw = os.environ.get("NEUROLEARN_PROGRESS_INTERVAL")
    if raw is None or raw.strip() == "":
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        from neurolearn.errors import ConfigError

        raise ConfigError(f"NEUROLEARN_PROGRESS_INTERVAL must be a number of seconds >= 0, got {raw!r}")
    return value


class Progress:
    """Iterate ``iterable`` and report progress on ``stream`` (see the module docstring).

    ``set_postfix(loss=...)`` adds values to the report (tqdm's API). ``tty`` forces the
    terminal (``True``) or the line (``False``) form; ``None`` asks the stream.
    """

    def __init__(self, iterable: Iterable, desc: str, *, total: int | None = None, unit: str = "batches",
                 stream: IO[str] | None = None, interval: float | None = None, tty: bool | None = None) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval = progress_interval() if interval is None else float(interval)
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.postfix: dict[str, Any] = {}
        self._bar = None
        self.lines = 0

    def set_postfix(self, refresh: bool = False, **values: Any) -> None:
        self.postfix = dict(values)
        if self._bar is not None:
            self._bar.set_postfix(refresh=refresh, **values)

    def __iter__(self) -> Iterator:
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(self.iterable, desc=self.desc, total=self.total, leave=True, file=self.stream)
            yield from self._bar
            return
        start = last = time.perf_counter()
        done = 0
        for item in self.iterable:
            yield item
            done += 1
            now = time.perf_counter()
            if now - last >= self.interval:
                self._line(done, now - start)
                last = now
        if self.lines:  # a loop that reported along the way also says when it is done
            self._line(done, time.perf_counter() - start, final=True)

    def _line(self, done: int, elapsed: float, final: bool = False) -> None:
        parts = [f"{done}/{self.total} {self.unit}" if self.total else f"{done} {self.unit}"]
        if self.total and not final:
            parts[0] += f" ({100 * done / self.total:.0f}%)"
        parts.append(f"{elapsed:.1f} s")
        if self.total and not final and 0 < done < self.total:
            parts.append(f"~{elapsed / done * (self.total - done):.0f} s left")
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        print(f"{self.desc}: {'done ' if final else ''}{', '.join(parts)}", file=self.stream, flush=True)
        self.lines += 1


def _fanout_ops(weight: torch.Tensor, nonzero: torch.Tensor, layer: torch.nn.Module) -> torch.Tensor:
    """Synaptic operations of one step's non-zero inputs ``[B, ...]`` through ``weight``."""
    if weight.dim() == 4:  # conv: each input pixel reaches out_channels x (the kernel positions it falls in)
        ones = torch.ones((weight.shape[0], *weight.shape[1:]), dtype=nonzero.dtype, device=nonzero.device)
        reached = F.conv2d(nonzero, ones, stride=getattr(layer, "stride", 1), padding=getattr(layer, "padding", 0))
        return reached.sum()
    return nonzero.reshape(nonzero.shape[0], -1).sum() * weight.shape[0]


@torch.no_grad()
def spike_metrics(model, x: torch.Tensor) -> dict[str, float]:
    """Firing rates per spiking layer and NeuroBench synaptic operations per sample of the
    encoded batch ``x`` ``[T, B, ...]`` (see the module docstring); ``{}`` for a network
    without spiking layers."""
    if not model.spiking:
        return {}
    was_training = model.training
    model.eval()
    try:
        record = model.run(x, record=("input", "act"))
    finally:
        model.train(was_training)
    steps, batch = x.shape[0], x.shape[1]
    dt = float(getattr(model, "dt", 0.0) or 0.0)
    out: dict[str, float] = {}
    total = 0.0
    for k, (layer, rec) in enumerate(zip(model.layers, record.layers)):
        if layer.spiking:
            rate = float(rec.act.float().mean())
            out[f"rate_{k}"] = rate
            if dt > 0:
                out[f"rate_hz_{k}"] = rate / dt
        ops = 0.0
        for t in range(steps):
            nonzero = (rec.input[t] != 0).to(layer.weight.dtype)
            ops += float(_fanout_ops(layer.weight, nonzero, layer))
            if getattr(layer, "recurrent", False) and t > 0:
                ops += float((rec.act[t - 1] != 0).sum()) * layer.recurrent_weight.shape[0]
        out[f"synops_{k}"] = ops / batch
        total += ops / batch
    out["synops"] = total
    return out


def write_csv(history: list[dict[str, Any]], path: str | Path) -> None:
    """The per-epoch entries as a CSV table (columns: every key of any epoch, in first-seen order)."""
    from neurolearn.io import atomic_write

    columns: list[str] = []
    for entry in history:
        columns += [k for k in entry if k not in columns]
    import io as _io

    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for entry in history:
        writer.writerow({k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in entry.items()})
    atomic_write(path, lambda fh: fh.write(buf.getvalue()), mode="w")


__all__ = ["DEFAULT_INTERVAL_S", "Progress", "progress_interval", "spike_metrics", "write_csv"]
