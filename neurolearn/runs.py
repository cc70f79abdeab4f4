"""Assemble a run from its configuration, and reload a trained run from its directory."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neurolearn.build import build_network, resolve_device
from neurolearn.config import DECOR_SCHEMA, check_config, check_table
from neurolearn.data import Dataset, load_dataset
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
    torch.manual_seed(int(config["train"]["seed"]))
    model = build_network(config["model"], dataset.input_shape)
    apply_decorrelation(model, config.get("decor", {}))
    rule = make_rule(config["rule"]["name"], **config["rule"].get("params", {}))
    rule.precision = config["train"]["precision"]
    return Run(config, dataset, model.to(device), Objective.for_dataset(dataset), rule, device)


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
