"""Assemble a run from its configuration, and reload a trained run from its directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurolearn.build import build_network, check_memory, resolve_device
from neurolearn.config import DECOR_SCHEMA, check_config, check_table
from neurolearn.data import Dataset, check_fits, load_dataset
from neurolearn.errors import CheckpointError, NeurolearnError
from neurolearn.io import load_checkpoint, read_json
from neurolearn.network import Network
from neurolearn.objectives import Objective
from neurolearn.rules import Rule, make_rule

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.json"


@dataclass
class Run:
    """Everything a training run is made of."""

    config: dict[str, Any]
    dataset: Dataset
    model: Network
    objective: Objective
    rule: Rule
    device: torch.device


def build_run(config: dict[str, Any], dataset: Dataset | None = None) -> Run:
    """Load the data and build the network (seeded by ``train.seed``) and the rule.

    ``config`` is checked and completed by :func:`neurolearn.config.check_config` first (a config
    edited by hand after :func:`~neurolearn.config.resolve_config` is checked as well)."""
    config = check_config(config)
    device = resolve_device(config["train"]["device"])
    if dataset is None:
        dataset = load_dataset(config["data"]["name"], **config["data"].get("options", {}))
    check_memory(config["model"], dataset.input_shape, batch=_training_batch(config, dataset),
                 steps=_steps(config, dataset), device=device)  # before anything is allocated
    torch.manual_seed(int(config["train"]["seed"]))
    model = build_network(config["model"], dataset.input_shape)
    check_fits(dataset, model.output_size)  # one readout unit per class / output, with a one-line message
    apply_decorrelation(model, config.get("decor", {}))
    rule = make_rule(config["rule"]["name"], **config["rule"].get("params", {}))
    rule.precision = config["train"]["precision"]
    return Run(config, dataset, model.to(device), Objective.for_dataset(dataset), rule, device)


def _training_batch(config: dict[str, Any], dataset: Dataset) -> int:
    """The largest batch a run holds at once: the training batch (0 = the whole set) or the evaluation batch."""
    n = int(dataset.x_train.shape[0])
    bs = int(config["train"]["batch_size"])
    bs = n if bs <= 0 else min(bs, n)
    return max(bs, min(int(config["train"]["eval_batch_size"]), max(n, int(dataset.x_test.shape[0]))))


def _steps(config: dict[str, Any], dataset: Dataset) -> int:
    """Time steps per sample: the sequence length for sequence data, else the encoder's steps."""
    if dataset.sequence and dataset.x_train.dim() >= 2:
        return int(dataset.x_train.shape[1])
    return int(config["model"].get("encoder", {}).get("steps", 1))


def apply_decorrelation(model: Network, decor_cfg: dict[str, Any]) -> None:
    """Give every layer a decorrelation matrix if ``decor.enabled`` (see neurolearn.decorrelation)."""
    decor_cfg = check_table("decor", decor_cfg, DECOR_SCHEMA)
    if not decor_cfg["enabled"]:
        return
    from neurolearn.decorrelation import add_decorrelation

    add_decorrelation(model, **{k: v for k, v in decor_cfg.items() if k != "enabled"})


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The configuration a run was trained with (from metrics.json, else its checkpoint)."""
    run_dir = Path(run_dir)
    metrics = run_dir / METRICS_NAME
    if metrics.exists():
        try:
            config = read_json(metrics)["config"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{metrics} is damaged ({exc}); rerun the training") from None
        return check_config(config)
    if (run_dir / CHECKPOINT_NAME).exists():
        return check_config(load_checkpoint(run_dir / CHECKPOINT_NAME)["config"])
    raise NeurolearnError(f"{run_dir} is not a run directory (no {METRICS_NAME} or {CHECKPOINT_NAME}); "
                          "pass the --out directory of `neurolearn train`")


def load_trained(run_dir: str | Path, device: str = "cpu", dataset: Dataset | None = None) -> Run:
    """Rebuild a trained run with the weights of its last checkpoint."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    config["train"]["device"] = device
    run = build_run(config, dataset)
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location=run.device)
    load_model_state(run.model, state["model"], run_dir / CHECKPOINT_NAME)
    return run


def load_model_state(model: Network, state: dict[str, torch.Tensor], source: Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {source} does not fit this model ({str(exc).splitlines()[0]}); it was written for another "
            "model configuration: use a new --out directory, or the configuration it was trained with"
        ) from None


def check_out_dir(out: str | Path, *, resume: bool = False, create_parents: bool = False) -> Path:
    """Refuse, before any data is loaded or any epoch trained, a run directory that cannot take a run.

    Refused: a path that is a file; a parent folder that is missing (unless ``create_parents``:
    the default ``runs/...`` directory) or not a folder; a folder that cannot be written (probed
    by creating and removing a temporary file, which also catches read-only file systems and
    works for root); a folder that already holds a run (a checkpoint) without ``resume``; a
    folder that holds other files but no checkpoint (e.g. only a ``metrics.json``), which would
    be overwritten silently. Returns ``out`` as a :class:`~pathlib.Path`; creates nothing.
    """
    import os
    import tempfile

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NeurolearnError(f"--out {out} is a file, not a folder; choose a folder for the run (e.g. {out}.run)")
    if out.is_dir():
        probe_dir = out
        if (out / CHECKPOINT_NAME).exists():
            if not resume:
                raise NeurolearnError(f"{out} already holds a run; pass --resume to continue it, or choose another --out")
        else:
            held = sorted(p.name for p in out.iterdir())
            if held:
                shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
                raise NeurolearnError(
                    f"--out {out} is not empty ({shown}) but holds no checkpoint to resume; it would be overwritten: "
                    "choose another --out, or move those files away")
    else:
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.exists() and not create_parents:
            raise NeurolearnError(f"--out {out}: the folder {parent} does not exist; create it first, or choose "
                                  "another --out")
        probe_dir = parent
        while not probe_dir.exists():
            probe_dir = probe_dir.parent
        if not probe_dir.is_dir():
            raise NeurolearnError(f"--out {out}: {probe_dir} is a file, not a folder; choose another --out")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".neurolearn-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise NeurolearnError(f"--out {out}: cannot write in {probe_dir} ({exc.strerror or exc}); choose a folder "
                              "you can write to") from None
    return out
