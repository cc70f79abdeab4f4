"""Figures of a run: learning curves, spike rasters and membrane traces (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


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


def plot_curves(metrics: dict[str, Any], path: str | Path) -> None:
    """Train/test loss and the task's score per epoch."""
    plt = pyplot()
    epochs = metrics["epochs"]
    if not epochs:
        return
    e = [m["epoch"] for m in epochs]
    scores = [k for k in ("test_accuracy", "test_error_bits", "test_nmse") if k in epochs[0]]
    fig, axes = plt.subplots(1, 1 + len(scores), figsize=(4.5 * (1 + len(scores)), 3.5))
    axes = list(axes) if hasattr(axes, "__len__") else [axes]
    axes[0].plot(e, [m["train_loss"] for m in epochs], label="train")
    axes[0].plot(e, [m["test_loss"] for m in epochs], label="test")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].set_yscale("log")
    axes[0].legend()
    for ax, key in zip(axes[1:], scores):
        ax.plot(e, [m[key] for m in epochs])
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("test_", "test "))
    cfg = metrics.get("config", {})
    fig.suptitle(f"{cfg.get('model', {}).get('name', '')} · {cfg.get('rule', {}).get('name', '')}")
    save_figure(fig, path)


def plot_activity(record, path: str | Path, sample: int = 0, max_neurons: int = 100, dt: float | None = None) -> None:
    """Spike rasters (spiking layers) and membrane traces of one sample of a run's record."""
    plt = pyplot()
    layers = record.layers
    fig, axes = plt.subplots(len(layers), 2, figsize=(11, 2.6 * len(layers)), squeeze=False)
    for k, lr in enumerate(layers):
        act = lr.act[:, sample].reshape(lr.act.shape[0], -1)[:, :max_neurons].detach().cpu().numpy()
        steps = np.arange(act.shape[0]) * (dt * 1e3 if dt else 1)
        unit = "ms" if dt else "step"
        ax = axes[k][0]
        if lr.mem is not None and ((act == 0) | (act == 1)).all():
            t_idx, n_idx = np.nonzero(act)
            ax.scatter(steps[t_idx], n_idx, s=2, c="k")
            ax.set_title(f"layer {k}: spikes ({int(act.sum())} in {act.shape[1]} neurons)")
        else:
            ax.imshow(act.T, aspect="auto", origin="lower", interpolation="nearest")
            ax.set_title(f"layer {k}: activity")
        ax.set_xlabel(unit)
        ax.set_ylabel("neuron")
        ax = axes[k][1]
        trace = (lr.mem if lr.mem is not None else lr.pre)[:, sample].reshape(act.shape[0], -1)[:, :5].detach().cpu().numpy()
        ax.plot(steps, trace)
        ax.set_title(f"layer {k}: {'membrane' if lr.mem is not None else 'pre-activation'} (5 neurons)")
        ax.set_xlabel(unit)
    save_figure(fig, path)
