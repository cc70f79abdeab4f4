r"""Losses and metrics of a task, per sample (the per-sample loss is what perturbation rules
compare between a clean and a noisy pass).

- ``classification``: prediction ``[B, C]`` (the decoded output), target ``[B]`` class
  indices; loss = cross-entropy ``-log softmax(pred)[y]``; metric: accuracy.
- ``sequence_regression``: prediction and target ``[T, B, C]`` (time-major); loss = mean
  over the counted steps (``loss_mask``) and channels of ``(pred - y)^2``; metrics: ``nmse``
  (MSE / target variance) and, for the copy task, ``error_bits`` (output entries wrong
  after thresholding at 0.5, per sequence).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neurolearn.errors import ConfigError, ShapeError

TASKS = ("classification", "sequence_regression")


class Objective:
    """Loss and metrics of one dataset's task."""

    def __init__(self, task: str, *, loss_mask: torch.Tensor | None = None, target_var: float | None = None,
                 error_bits: bool = False) -> None:
        if task not in TASKS:
            raise ConfigError(f"unknown task kind {task!r}; known: {', '.join(TASKS)}")
        self.task = task
        self.loss_mask = loss_mask
        self.target_var = target_var
        self.error_bits = error_bits

    @classmethod
    def for_dataset(cls, dataset) -> "Objective":
        return cls(
            dataset.task,
            loss_mask=dataset.loss_mask,
            target_var=dataset.info.get("target_var"),
            error_bits=dataset.name == "copy",
        )

    @property
    def sequential_targets(self) -> bool:
        """True if there is a target at every time step (time-domain rules can use it)."""
        return self.task == "sequence_regression"

    def _mask(self, steps: int, device) -> torch.Tensor:
        if self.loss_mask is None:
            return torch.ones(steps, dtype=torch.bool, device=device)
        return self.loss_mask.to(device)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample loss ``[B]``."""
        if self.task == "classification":
            if pred.dim() != 2:
                raise ShapeError(
                    f"classification needs a decoded prediction [B, C], got {list(pred.shape)}; "
                    "set the model's decode to 'last', 'mean', 'sum' or 'max'"
                )
            return F.cross_entropy(pred, target, reduction="none")
        if pred.shape != target.shape:
            raise ShapeError(
                f"prediction {list(pred.shape)} and target {list(target.shape)} differ; a sequence task "
                "needs decode = 'all' and an output layer with as many units as target channels"
            )
        mask = self._mask(pred.shape[0], pred.device).to(pred.dtype)
        sq = ((pred - target) ** 2).mean(-1)  # [T, B]
        return (sq * mask[:, None]).sum(0) / mask.sum()

    def step_loss(self, out_t: torch.Tensor, target_t: torch.Tensor, t: int) -> torch.Tensor:
        """Per-sample loss ``[B]`` of one time step (sequence tasks only), zero where masked."""
        if not self.sequential_targets:
            raise ConfigError("this task has no per-step targets; use a rule mode that accumulates over the sequence")
        w = 1.0 if self.loss_mask is None else float(self.loss_mask[t])
        return w * ((out_t - target_t) ** 2).mean(-1)

    def batch_metrics(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Sums over the batch (divide by ``count`` after adding up batches)."""
        out = {"count": float(target.shape[0] if self.task == "classification" else target.shape[1])}
        out["loss_sum"] = float(self.loss(pred, target).sum())
        if self.task == "classification":
            out["correct"] = float((pred.argmax(-1) == target).sum())
        else:
            mask = self._mask(pred.shape[0], pred.device)
            out["sq_err_sum"] = float(((pred - target)[mask] ** 2).mean(-1).mean(0).sum())
            if self.error_bits:
                out["error_bits_sum"] = float(((pred > 0.5) != (target > 0.5)).sum())
        return out

    def summarise(self, sums: dict[str, float]) -> dict[str, float]:
        """Turn added-up :meth:`batch_metrics` into the reported metrics."""
        n = max(sums.get("count", 0.0), 1.0)
        res = {"loss": sums["loss_sum"] / n}
        if self.task == "classification":
            res["accuracy"] = sums["correct"] / n
        else:
            mse = sums["sq_err_sum"] / n
            res["mse"] = mse
            if self.target_var:
                res["nmse"] = mse / self.target_var
            if self.error_bits:
                res["error_bits"] = sums["error_bits_sum"] / n
        return res
