r"""One trainer for every rule: epochs, mini-batches, evaluation, metrics, checkpoints.

The rule decides what one step does (:meth:`neurolearn.rules.Rule.train_step`); the trainer
feeds it encoded, time-major batches, evaluates on the test split after every epoch and
writes, into the run directory,

- ``checkpoint.pt``: model, optimizer and rule state after the last finished epoch (written
  atomically, so a killed run loses at most the epoch in progress);
- ``metrics.json``: ``config`` (everything needed to rerun), ``epochs`` (one entry per
  epoch) and ``final``;
- ``curves.png``: loss and accuracy (or error) per epoch.

Weight averaging (``train.average = a``, 0 = off): after every training step the update seam
(:class:`neurolearn.updates.Updater`)
updates an exponential moving average of the parameters, ``W̄ ← a W̄ + (1 - a) W`` (Polyak
averaging), and evaluates, reports and keeps ``W̄``. Noisy gradient estimates (the perturbation
rules) leave the weights wandering around a minimum at a distance set by the step size; the
average sits closer to it. The checkpoint's ``model`` is then the average (what ``neurolearn eval``,
``export`` and ``simulate`` load) and ``training_model`` the weights training continues from;
after :meth:`fit` the model holds the average.

Divergence: training stops with :class:`~neurolearn.errors.TrainingDiverged` when a batch's
mean loss is not finite, when it blows up past :data:`DIVERGENCE_FACTOR` times the reference
loss ``L0`` (the first batch's mean loss of the run, before any update, floored at 1:
``L > DIVERGENCE_FACTOR * max(L0, 1)``), or when a parameter is not finite after an epoch.
The epoch in progress is not saved, so the checkpoint keeps the last good epoch (parameters
are checked before every save: a NaN checkpoint is never written), and ``metrics.json`` gets
``status = "diverged"`` with ``diverged_at`` saying where and why.

**Your own data** (``train_data=``, ``test_data=``): a torch map-style ``Dataset`` of
``(x, y)`` samples is batched in the trainer's own seeded order (the same batches as the
in-memory path for the same tensors), an iterable ``Dataset`` ``batch_size`` samples at a
time as it streams, and a ``DataLoader`` (or any iterable of ``(x, y)`` batches) as it comes;
the run directory, metrics, checkpoints and resume are the same. Class labels are checked
against the readout (one clear error, not an IndexError).

Randomness is explicit and repeatable: the weights are drawn from ``seed``; the batch order,
the input encoding and the rule's noise of epoch ``e`` come from generators seeded by
``(seed, e)``, so ``--resume`` continues a killed run to exactly the result of an
uninterrupted one.

**Data parallel** (``torchrun --nproc-per-node=W -m neurolearn train ...``; ``ctx`` = this
process's place in the group, :mod:`neurolearn.distributed`): every process walks the same batch
order and encodes the same global batch, keeps its contiguous share of it, and the update seam
combines the shares' gradients and statistics in one all-reduce per step, so ``W`` processes
train what one process would (up to the order of float sums; the resume may use another ``W``).
Evaluation is shared out by batch and the metric sums added; rank 0 alone writes the run
directory.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from neurolearn.build import make_optimizer
from neurolearn.config import TRAIN_KEYS
from neurolearn.decorrelation import decorrelation_metrics
from neurolearn.distributed import Context, GradSync, check_identical, current, refuse_unsupported, report_failure, \
    shard_range, mix_seed
from neurolearn.errors import CheckpointError, ConfigError, NeurolearnError, TrainingDiverged
from neurolearn.feedback import Progress, spike_metrics, write_csv
from neurolearn.learning.grads import exact_sums
from neurolearn.io import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint, write_json
from neurolearn.runs import CHECKPOINT_NAME, METRICS_NAME, Run, load_model_state
from neurolearn.updates import Updater, copy_all


DIVERGENCE_FACTOR = 1e4
"""A batch loss above this multiple of the run's first loss (floored at 1) is a blow-up (module docstring)."""

_seed = mix_seed  # a 63-bit seed mixed from integers (stable across runs, platforms and world sizes)


@torch.no_grad()
def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, else the resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Trainer:
    """Train ``run.model`` with ``run.rule`` on ``run.dataset``; see the module docstring."""

    def __init__(self, run: Run, out_dir: str | Path | None = None, *, progress: bool = True,
                 log: Callable[[str], None] | None = None, ctx: Context | None = None,
                 train_data: Any = None, test_data: Any = None) -> None:
        self.run = run
        self.train_data, self.test_data = train_data, test_data
        self.ctx = ctx if ctx is not None else current()
        self.cfg = run.config["train"]
        self.seed = int(self.cfg["seed"])
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress and self.ctx.is_main
        log = log or (lambda msg: print(msg, file=sys.stderr))
        self.log = log if self.ctx.is_main else (lambda msg: None)
        self.device = run.device
        ds = run.dataset
        self.x_train, self.y_train = ds.x_train.to(self.device), ds.y_train.to(self.device)
        self.x_test, self.y_test = ds.x_test.to(self.device), ds.y_test.to(self.device)
        if train_data is None:
            self._check_labels(self.y_train, "the training set")
        if test_data is None:
            self._check_labels(self.y_test, "the test set")
        self.optimizer = make_optimizer(run.model.parameters(), self.cfg) if run.rule.uses_optimizer else None
        self.noise_gen = torch.Generator(device=self.device)
        self.encode_gen = torch.Generator(device=self.device)
        run.rule.setup(run.model, run.objective, self.noise_gen)
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        self.start_epoch = 1
        self.reference_loss: float | None = None  # L0 of the divergence test (module docstring)
        # the update seam: optimizer step, decorrelation and the weight average (train.average)
        self.sync = GradSync(self.ctx)
        self.updater = Updater(run.model, self.optimizer, average=self.cfg["average"], synchronise=self.sync)
        self.shard_sizes: list[int] = []
        self.exact = bool(self.cfg.get("exact_sums", False))  # float64 batch sums (neurolearn.learning.grads)
        if self.exact:
            run.rule.reduce_mean = self._global_mean
        if self.ctx.active:
            refuse_unsupported(self.ctx, run.rule, int(self.cfg["batch_size"]), self.x_train.shape[0])
            self.updater.gather_batch = lambda t, dim: self.sync.gather(t, dim, self.shard_sizes)
            run.rule.reduce_mean = self._global_mean
            run.rule.reduce_sum = self.sync.sum_tensor
            check_identical(self.ctx, list(run.model.parameters()), "the initial parameters")
        self.average = self.updater.average
        self.params = self.updater.params

    @property
    def averaged(self) -> list[torch.Tensor] | None:
        """The moving average of the trained parameters (``None`` without averaging)."""
        return self.updater.averaged

    def averaged_weights(self):
        """Within the block the model holds the averaged weights (no-op without averaging)."""
        return self.updater.averaged_weights()

    # ------------------------------------------------------------------ data
    def _check_labels(self, y: torch.Tensor, where: str) -> None:
        """Class labels must fit the readout: one clear line, not an IndexError deep in a loss."""
        if self.run.objective.task != "classification" or y.numel() == 0 or y.is_floating_point():
            return
        top, units = int(y.max()), self.run.model.output_size
        if top >= units or int(y.min()) < 0:
            raise ConfigError(f"{where} has class labels {int(y.min())}..{top} ({top + 1} classes) but the network's "
                              f"readout has {units} units: labels must be 0..{units - 1}; give the last layer "
                              f"{top + 1} units (model.layers.<last>.size) or map the labels")

    def _source_batches(self, data: Any, order: torch.Tensor | None, bs: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` batches of a user's data: a ``DataLoader`` (or any iterable of batches) as it
        comes, an iterable ``Dataset`` of samples grouped ``bs`` at a time, a map-style ``Dataset``
        in ``order`` (``None``: as stored) ``bs`` samples at a time. Labels are checked against the
        readout on every batch."""
        from torch.utils.data import DataLoader, IterableDataset, default_collate

        if isinstance(data, DataLoader) or (not isinstance(data, IterableDataset) and not hasattr(data, "__getitem__")):
            for item in data:
                yield self._to_batch(item)
            return
        if isinstance(data, IterableDataset):
            chunk: list[Any] = []
            for sample in data:
                chunk.append(sample)
                if len(chunk) == bs:
                    yield self._to_batch(default_collate(chunk))
                    chunk = []
            if chunk:
                yield self._to_batch(default_collate(chunk))
            return
        idx = order.tolist() if order is not None else list(range(len(data)))
        for i in range(0, len(idx), bs):
            yield self._to_batch(default_collate([data[j] for j in idx[i:i + bs]]))

    def _to_batch(self, item: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ConfigError(f"a data batch must be a pair (inputs, targets), got {type(item).__name__}"
                              + (f" of {len(item)}" if isinstance(item, (tuple, list)) else ""))
        x, y = (torch.as_tensor(t).to(self.device) for t in item)
        self._check_labels(y, "a data batch")
        return x.to(self.x_train.dtype) if x.is_floating_point() else x, y

    def batch(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a data batch to ``[T, B, ...]``; per-step targets become ``[T, B, C]``."""
        xe = self.run.model.encode(x, gen)
        if self.run.objective.sequential_targets:
            y = y.transpose(0, 1)
        return xe, y

    def _global_mean(self, values: torch.Tensor) -> float:
        """The mean of a per-sample tensor over the whole batch (every process's share; summed in float64)."""
        total, count = self.sync.sum_floats([float(values.double().sum()), float(values.numel())])
        return total / count

    def _shard(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's share of an encoded global batch (``x`` ``[T, B, ...]``; ``y`` ``[B]`` or
        ``[T, B, C]``); sets the gradient weight ``n_r/n`` and the rule's shard."""
        n = xb.shape[1]
        ranges = [shard_range(n, r, self.ctx.world) for r in range(self.ctx.world)]
        self.shard_sizes = [hi - lo for lo, hi in ranges]
        lo, hi = ranges[self.ctx.rank]
        self.sync.weight = (hi - lo) / n
        self.run.rule.shard = (lo, hi, n)
        return xb[:, lo:hi], (yb[:, lo:hi] if self.run.objective.sequential_targets else yb[lo:hi])

    def _batch_size(self, n: int) -> int:
        bs = int(self.cfg["batch_size"])
        return n if bs <= 0 else min(bs, n)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Loss and metrics on a split (inputs encoded with a fixed seed: repeatable)."""
        with self.averaged_weights():
            return self._evaluate(split)

    def _evaluate(self, split: str) -> dict[str, float]:
        model, objective = self.run.model, self.run.objective
        x, y = (self.x_test, self.y_test) if split == "test" else (self.x_train, self.y_train)
        source = self.test_data if split == "test" else self.train_data
        gen = torch.Generator(device=self.device).manual_seed(_seed(self.seed, 10**6))
        bs = int(self.cfg["eval_batch_size"])
        if source is None:
            bs = min(bs, x.shape[0])
            batches: Iterator = ((x[i:i + bs], y[i:i + bs]) for i in range(0, x.shape[0], bs))
        else:
            batches = self._source_batches(source, None, bs)
        sums: dict[str, float] = {}
        was_training = model.training
        model.eval()
        for j, (xs, ys) in enumerate(_progress(batches, f"evaluating ({split}, {x.shape[0]} samples)"
                                               if source is None else f"evaluating ({split})",
                                               self.progress and self.ctx.is_main,
                                               total=-(-x.shape[0] // bs) if source is None else None)):
            xb, yb = self.batch(xs, ys, gen)  # every process encodes: the same draws
            if j % self.ctx.world != self.ctx.rank:
                continue
            pred = model.decode_output(model(xb))
            for k, v in objective.batch_metrics(pred, yb).items():
                sums[k] = sums.get(k, 0.0) + v
        model.train(was_training)
        if self.ctx.active:  # add up every process's sums (the keys are the objective's, the same everywhere)
            keys = sorted(objective.batch_metrics(*self._probe(x, y, gen)).keys()) if not sums else sorted(sums)
            sums = dict(zip(keys, self.sync.sum_floats([sums.get(k, 0.0) for k in keys])))
        return objective.summarise(sums)

    def _probe(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample's prediction and target (the metric names of a process that had no batch)."""
        xb, yb = self.batch(x[:1], y[:1], torch.Generator(device=self.device).manual_seed(0))
        return self.run.model.decode_output(self.run.model(xb)), yb

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    def save(self, epoch: int) -> None:
        """Write the checkpoint (rank 0 alone, atomically; the others wait at a barrier)."""
        if self.checkpoint_path is None:
            return
        if not self.ctx.is_main:
            self.ctx.barrier()
            return
        training_model = None
        if self.averaged is not None:  # "model" is what was evaluated: the average
            training_model = {k: v.clone() for k, v in self.run.model.state_dict().items()}
        with self.averaged_weights():
            model = {k: v.clone() for k, v in self.run.model.state_dict().items()}
        save_checkpoint(self.checkpoint_path, {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "config": self.run.config,
            "model": model,
            "training_model": training_model,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "rule": self.run.rule.state_dict(),
            "history": self.history,
            "elapsed": self.elapsed,
            "reference_loss": self.reference_loss,
        })
        self.ctx.barrier()

    def resume(self) -> bool:
        """Load the run directory's checkpoint; False if there is none yet."""
        path = self.checkpoint_path
        if path is None or not path.exists():
            return False
        state = load_checkpoint(path, map_location=self.device)
        if _comparable(state["config"]) != _comparable(self.run.config):
            raise CheckpointError(
                f"the checkpoint in {self.out_dir} was written for another configuration "
                f"({_first_difference(_comparable(state['config']), _comparable(self.run.config))}); "
                "resume with the same options, "
                "or train into a new --out directory"
            )
        load_model_state(self.run.model, state["model"], path)
        if self.averaged is not None:  # the saved "model" is the average; training goes on from "training_model"
            copy_all(self.averaged, self.params)
            load_model_state(self.run.model, state.get("training_model") or state["model"], path)
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.run.rule.load_state_dict(state["rule"])
        self.history = list(state["history"])
        ref = state.get("reference_loss")  # absent in older checkpoints: the resumed run's first batch sets it
        ok = isinstance(ref, (int, float)) and not isinstance(ref, bool) and math.isfinite(ref)
        self.reference_loss = float(ref) if ok else None
        self.elapsed = float(state["elapsed"])
        self.start_epoch = int(state["epoch"]) + 1
        check_identical(self.ctx, list(self.run.model.parameters()), "the resumed parameters")
        return True

    # ------------------------------------------------------------------ training
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``train.epochs`` epochs; returns the metrics written to metrics.json."""
        try:
            return self._fit(resume)
        except BaseException as exc:
            report_failure(self.ctx, exc)
            raise

    def _fit(self, resume: bool) -> dict[str, Any]:
        if self.out_dir is not None:
            if resume:
                if self.resume():
                    self.log(f"resuming {self.out_dir} after epoch {self.start_epoch - 1}")
                else:
                    self.log(f"--resume: no checkpoint in {self.out_dir} yet, starting from scratch")
            elif self.checkpoint_path.exists():
                raise NeurolearnError(
                    f"{self.out_dir} already holds a run; pass --resume to continue it, or choose another --out"
                )
            self.ctx.barrier()  # every process has looked before rank 0 writes
            if self.ctx.is_main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
        epochs = int(self.cfg["epochs"])
        for epoch in range(self.start_epoch, epochs + 1):
            t0 = time.perf_counter()
            train_loss = self.train_epoch(epoch, epochs)
            entry = {"epoch": epoch, "train_loss": train_loss}
            entry.update({f"test_{k}": v for k, v in self.evaluate("test").items()})
            entry.update(self.run.rule.epoch_metrics(self.run.model))
            entry.update(decorrelation_metrics(self.run.model))  # decor_loss_<layer>, if any
            with self.averaged_weights():  # rate_<k>, rate_hz_<k>, synops_<k>, synops (spiking nets; neurolearn.feedback)
                entry.update(spike_metrics(self.run.model, self.batch(self.x_test[:256], self.y_test[:256], torch.Generator(
                    device=self.device).manual_seed(_seed(self.seed, 10**6)))[0]))
            self.elapsed += time.perf_counter() - t0
            entry["wall_time_s"] = self.elapsed
            self.history.append(entry)
            self._check_parameters(epoch)
            self.save(epoch)
            self.log(_format_entry(entry))
            self.write_metrics()
        if self.averaged is not None:  # the trained model is the average (as evaluated and saved)
            copy_all(self.params, self.averaged)
        return self.write_metrics(final=True)

    def train_epoch(self, epoch: int, epochs: int) -> float:
        """One pass over the training data, without evaluation or checkpoint; returns the mean train
        loss. ``epoch`` (of ``epochs``) seeds the shuffle, the input encoding and the rule's noise and
        sets the decayed lr, so an epoch repeats exactly. :meth:`fit` calls it once per epoch;
        benchmarks call it alone to time an epoch."""
        model, rule, objective = self.run.model, self.run.rule, self.run.objective
        model.train()
        data = self.train_data
        sized = data is None or (hasattr(data, "__getitem__") and hasattr(data, "__len__")
                                 and not isinstance(data, (torch.utils.data.DataLoader, torch.utils.data.IterableDataset)))
        n = self.x_train.shape[0] if data is None else (len(data) if sized else 0)
        bs = self._batch_size(n) if sized else int(self.cfg["batch_size"])
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(self.seed, epoch, 0)))
        if data is None:
            order = order.to(self.device)
            batches: Iterator = ((self.x_train[order[i:i + bs]], self.y_train[order[i:i + bs]])
                                 for i in range(0, n, bs))
        else:
            if hasattr(data, "sampler") and hasattr(data.sampler, "set_epoch"):
                data.sampler.set_epoch(epoch)  # a DistributedSampler or the like: a new order each epoch
            batches = self._source_batches(data, order if sized else None, max(bs, 1))
        self.encode_gen.manual_seed(_seed(self.seed, epoch, 1))
        self.noise_gen.manual_seed(_seed(self.seed, epoch, 2))
        if self.optimizer is not None:  # train.lr_decay: exponential per-epoch decay, a function of the epoch alone
            for group in self.optimizer.param_groups:
                group["lr"] = float(self.cfg["lr"]) * float(self.cfg["lr_decay"]) ** (epoch - 1)
        bar = _progress(batches, f"epoch {epoch}/{epochs}", self.progress and self.ctx.is_main,
                        total=-(-n // bs) if sized and bs > 0 else None)
        total, count = 0.0, 0
        for step, (xs, ys) in enumerate(bar):
            xb, yb = self.batch(xs, ys, self.encode_gen)
            if self.ctx.active:
                xb, yb = self._shard(xb, yb)
            with exact_sums(self.exact):  # this step's float64 batch sums (none left if it fails)
                out = rule.train_step(model, xb, yb, objective, self.updater)
            loss = out.loss
            if not torch.isfinite(loss).all():
                raise self._diverged(epoch, step, float(loss[~torch.isfinite(loss)][0]))
            mean = float(loss.mean())
            if self.reference_loss is None:
                self.reference_loss = mean
            limit = DIVERGENCE_FACTOR * max(self.reference_loss, 1.0)
            if mean > limit:
                raise self._diverged(epoch, step, mean, f"the training loss blew up to {mean:.3g} (above "
                                     f"{DIVERGENCE_FACTOR:g} x max(first loss {self.reference_loss:.3g}, 1))")
            total += float(loss.double().sum())
            count += loss.shape[0]
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
        if self.ctx.active:
            total, count = self.sync.sum_floats([total, float(count)])
        return total / max(count, 1)

    def _check_parameters(self, epoch: int) -> None:
        for name, p in self.run.model.named_parameters():
            if not torch.isfinite(p).all():
                raise self._diverged(epoch, None, float("nan"), f"parameter {name} is not finite")

    def _diverged(self, epoch: int, step: int | None, value: float, what: str | None = None) -> TrainingDiverged:
        where = f"epoch {epoch}" + (f", batch {step}" if step is not None else "")
        what = what or f"the training loss became {value}"
        # the checkpoint on disk was written after the last epoch whose parameters were all finite
        kept = (f"the last good checkpoint (epoch {epoch - 1}) is kept in {self.checkpoint_path}"
                if self.checkpoint_path is not None and self.checkpoint_path.exists() and epoch > 1
                else "no checkpoint was written yet")
        if self.out_dir is not None:
            self.write_metrics(status="diverged", diverged_at=f"{where}: {what}")
        return TrainingDiverged(
            f"{what} at {where}; training stopped and {kept}. Lower the learning rate (--lr), "
            "or for perturbation rules the noise scale, and train again"
        )

    # ------------------------------------------------------------------ reporting
    def write_metrics(self, final: bool = False, status: str | None = None,
                      diverged_at: str | None = None) -> dict[str, Any]:
        metrics: dict[str, Any] = {"config": self.run.config, "epochs": self.history}
        if status:
            metrics["status"] = status
        if diverged_at:
            metrics["diverged_at"] = diverged_at
        if final:
            last = self.history[-1] if self.history else {}
            fin = {k: v for k, v in last.items() if k.startswith("test_")}
            for key in ("error_bits", "nmse"):
                if f"test_{key}" in last:
                    fin[key] = last[f"test_{key}"]
            fin["train_loss"] = last.get("train_loss")
            fin["wall_time_s"] = self.elapsed
            fin["peak_memory_mb"] = peak_memory_mb(self.device)
            metrics["final"] = fin
            metrics["status"] = "finished"
        if self.out_dir is not None and self.ctx.is_main:
            write_json(self.out_dir / METRICS_NAME, metrics)
            write_csv(self.history, self.out_dir / "metrics.csv")
            if final:
                from neurolearn.plotting import plot_curves

                plot_curves(metrics, self.out_dir / "curves.png")
        return metrics


def _progress(iterable, desc: str, enabled: bool, total: int | None = None):
    """``iterable`` reporting its progress on stderr (a bar on a terminal, periodic lines otherwise;
    :class:`neurolearn.feedback.Progress`); ``total``: the number of items when ``iterable`` has no length."""
    return Progress(iterable, desc, total=total) if enabled else iterable


def _format_entry(entry: dict[str, Any]) -> str:
    parts = [f"epoch {entry['epoch']}"]
    for k, v in entry.items():
        if k != "epoch" and isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
    return "  ".join(parts)


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config without the entries that may change on resume (epochs, device)."""
    cfg = {k: v for k, v in config.items()}
    # a train key added since the checkpoint was written (e.g. exact_sums) compares as its default
    cfg["train"] = {k: v for k, v in {**TRAIN_KEYS, **config["train"]}.items() if k not in ("epochs", "device")}
    return cfg


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
    return f"{path}: checkpoint has {a!r}, now {b!r}"
