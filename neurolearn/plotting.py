"""Figures of a run: learning curves, spike rasters and membrane traces (matplotlib, Agg).

Every figure says what it shows: curves carry markers (a one-epoch run is a visible point,
not an empty axis); activity figures name the backend, the sample and its label in the
title, put units on the axes (time in ms for spiking networks, the membrane in the model's
own scale), draw each layer's threshold and give images a colour bar. A static network (one
time step) gets one panel per layer over its neurons, not time panels.

``plot`` and ``simulate`` encode their inputs with :func:`encode_samples`: sample ``i`` is
drawn from its own generator seeded by ``(seed, i)`` in float32, so its spikes do not depend
on how many samples are encoded together or on the backend's dtype (the Brian2 and torch
rasters of sample 0 show the same input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

MARKER_MAX_POINTS = 40  # curves with at most this many epochs get a marker on every point


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend (figures are written to files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Lay out ``fig``, write it to ``path`` (PNG) and close it (frees its memory)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def encode_samples(model, x: torch.Tensor, seed: int = 0, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``model.encode`` of each sample of ``x`` with its own generator (seed ``seed * 100003 + i``),
    in float32, stacked on the batch axis ``[T, B, ...]`` and cast to ``dtype`` (default: the
    model's). Sample ``i`` gets the same spikes whatever the batch size or dtype."""
    dtype = dtype or next(model.parameters()).dtype
    parts = [model.encode(x[i:i + 1].float(), torch.Generator().manual_seed(seed * 100003 + i)) for i in range(x.shape[0])]
    return torch.cat(parts, dim=1).to(dtype)


def curves_figure(metrics: dict[str, Any]):
    """The figure of :func:`plot_curves` (``None`` without epochs)."""
    plt = pyplot()
    epochs = metrics["epochs"]
    if not epochs:
        return None
    e = [m["epoch"] for m in epochs]
    style = {"marker": "o", "markersize": 4} if len(e) <= MARKER_MAX_POINTS else {}
    scores = [k for k in ("test_accuracy", "test_error_bits", "test_nmse") if k in epochs[0]]
    fig, axes = plt.subplots(1, 1 + len(scores), figsize=(4.5 * (1 + len(scores)), 3.5), squeeze=False)
    axes = list(axes[0])
    axes[0].plot(e, [m["train_loss"] for m in epochs], label="train", **style)
    axes[0].plot(e, [m["test_loss"] for m in epochs], label="test", **style)
    axes[0].set_ylabel("loss")
    axes[0].set_yscale("log")
    axes[0].legend()
    for ax, key in zip(axes[1:], scores):
        ax.plot(e, [m[key] for m in epochs], **style)
        ax.set_ylabel(key.replace("test_", "test "))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    cfg = metrics.get("config", {})
    fig.suptitle(f"{cfg.get('model', {}).get('name', '')} · {cfg.get('rule', {}).get('name', '')}")
    return fig


def plot_curves(metrics: dict[str, Any], path: str | Path) -> None:
    """Train/test loss and the task's score per epoch (a marker on every point of a short run)."""
    fig = curves_figure(metrics)
    if fig is not None:
        save_figure(fig, path)


def layer_info(model) -> tuple[list[float | None], list[str]]:
    """Per layer: the neuron's threshold (``None`` if it has none) and its membrane's unit
    (a neuron may declare ``mem_unit``; neurolearn's LIF membrane is dimensionless, threshold 1)."""
    thresholds, units = [], []
    for layer in model.layers:
        neuron = layer.neuron
        th = getattr(neuron, "threshold", None) if neuron is not None and neuron.spiking else None
        thresholds.append(float(th) if isinstance(th, (int, float)) else None)
        units.append(getattr(neuron, "mem_unit", "dimensionless"))
    return thresholds, units


def activity_figure(record, sample: int = 0, max_neurons: int = 100, dt: float | None = None, *,
                    backend: str = "torch", label: Any = None, thresholds: Sequence[float | None] | None = None,
                    units: Sequence[str] | None = None):
    """The figure of :func:`plot_activity`."""
    plt = pyplot()
    layers = record.layers
    steps_n = record.output.shape[0]
    title = f"{backend} · sample {sample}" + (f" · label {label}" if label is not None else "")
    if steps_n == 1:  # a static network: one panel per layer over its neurons
        fig, axes = plt.subplots(len(layers), 1, figsize=(8, 2.2 * len(layers)), squeeze=False)
        for k, lr in enumerate(layers):
            act = lr.act[0, sample].reshape(-1)[:max_neurons].detach().cpu().numpy()
            ax = axes[k][0]
            ax.bar(np.arange(act.shape[0]), act, width=0.9)
            ax.set_title(f"layer {k}: activation of {act.shape[0]} neurons")
            ax.set_xlabel("neuron")
            ax.set_ylabel("activation")
        fig.suptitle(title)
        return fig
    unit = "ms" if dt else "step"
    t_axis = np.arange(steps_n) * (dt * 1e3 if dt else 1)
    fig, axes = plt.subplots(len(layers), 2, figsize=(11, 2.6 * len(layers)), squeeze=False)
    for k, lr in enumerate(layers):
        act = lr.act[:, sample].reshape(steps_n, -1)[:, :max_neurons].detach().cpu().numpy()
        ax = axes[k][0]
        if lr.mem is not None and ((act == 0) | (act == 1)).all():
            t_idx, n_idx = np.nonzero(act)
            ax.scatter(t_axis[t_idx], n_idx, s=2, c="k")
            ax.set_xlim(t_axis[0] - 0.5 * (t_axis[1] - t_axis[0]), t_axis[-1] + 0.5 * (t_axis[1] - t_axis[0]))
            ax.set_ylim(-0.5, act.shape[1] - 0.5)
            ax.set_title(f"layer {k}: spikes ({int(act.sum())} in {act.shape[1]} neurons)")
        else:
            im = ax.imshow(act.T, aspect="auto", origin="lower", interpolation="nearest",
                           extent=(t_axis[0], t_axis[-1] + (t_axis[1] - t_axis[0]), -0.5, act.shape[1] - 0.5))
            fig.colorbar(im, ax=ax, label="activation")
            ax.set_title(f"layer {k}: activity")
        ax.set_xlabel(f"time ({unit})")
        ax.set_ylabel("neuron")
        ax = axes[k][1]
        is_mem = lr.mem is not None
        trace = (lr.mem if is_mem else lr.pre)[:, sample].reshape(steps_n, -1)[:, :5].detach().cpu().numpy()
        ax.plot(t_axis, trace, marker="." if steps_n <= MARKER_MAX_POINTS else None)
        th = thresholds[k] if thresholds is not None and k < len(thresholds) else None
        if is_mem and th is not None:
            ax.axhline(th, color="r", ls="--", lw=1, label=f"threshold {th:g}")
            ax.legend(loc="upper right", fontsize=7)
        u = units[k] if units is not None and k < len(units) else "dimensionless"
        ax.set_title(f"layer {k}: {'membrane before reset' if is_mem else 'pre-activation'} ({trace.shape[1]} neurons)")
        ax.set_xlabel(f"time ({unit})")
        ax.set_ylabel(f"{'v' if is_mem else 'z'} ({u})")
    fig.suptitle(title)
    return fig


def plot_activity(record, path: str | Path, sample: int = 0, max_neurons: int = 100, dt: float | None = None, *,
                  backend: str = "torch", label: Any = None, thresholds: Sequence[float | None] | None = None,
                  units: Sequence[str] | None = None) -> None:
    """Spike rasters (spiking layers) or activity images, and membrane traces with the threshold,
    of one sample of a run's record; a static network's activations per neuron (module docstring).
    ``thresholds``/``units`` per layer come from :func:`layer_info`."""
    save_figure(activity_figure(record, sample, max_neurons, dt, backend=backend, label=label,
                                thresholds=thresholds, units=units), path)
