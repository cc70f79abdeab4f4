"""Run files: strict JSON, group-readable, atomic with stale temporaries cleaned, checksummed checkpoints."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest
import torch

from neurolearn.errors import CheckpointError
from neurolearn.io import CHECKPOINT_FORMAT, load_checkpoint, read_json, save_checkpoint, write_json


def _strict(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_metrics_json_is_strict_and_round_trips_non_finite_floats(tmp_path):
    obj = {"config": {"noise_tau": math.inf, "x": [1.0, -math.inf]}, "loss": math.nan, "t": torch.tensor([1.5])}
    write_json(tmp_path / "m.json", obj)
    strict = _strict((tmp_path / "m.json").read_text())
    assert strict["config"]["noise_tau"] == "Infinity" and strict["t"] == [1.5]
    back = read_json(tmp_path / "m.json")
    assert back["config"]["noise_tau"] == math.inf and back["config"]["x"][1] == -math.inf
    assert math.isnan(back["loss"])


def test_run_files_are_group_readable_and_stale_temporaries_removed(tmp_path):
    stale = tmp_path / ".m.json.abc123"
    stale.write_text("half a file from a killed writer")
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "m.json").stat().st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH, oct(mode)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


class Evil:
    """An arbitrary pickled object: a safe (weights-only) load must refuse it."""


def checkpoint(**extra):
    state = {"format": CHECKPOINT_FORMAT, "epoch": 1, "config": {"train": {}}, "history": [], "elapsed": 1.0,
             "model": {"layers.0.weight": torch.arange(6.0).view(2, 3)}, "training_model": None}
    state.update(extra)
    return state


def test_checkpoint_weights_altered_on_disk_are_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, checkpoint())
    assert torch.equal(load_checkpoint(path)["model"]["layers.0.weight"], torch.arange(6.0).view(2, 3))
    raw = torch.load(path, weights_only=True)
    raw["model"]["layers.0.weight"][0, 0] += 1e-3  # one weight flipped on disk
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="do not match their checksum"):
        load_checkpoint(path)


@pytest.mark.parametrize("change,match", [
    (dict(epoch="1"), "'epoch' has the wrong type"),
    (dict(model=[1, 2]), "'model' has the wrong type"),
    (dict(history=None), "'history' has the wrong type"),
    (dict(epoch=True), "'epoch' has the wrong type"),
])
def test_checkpoint_fields_of_the_wrong_type_are_refused(tmp_path, change, match):
    path = tmp_path / "checkpoint.pt"
    torch.save(checkpoint(**change), path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_checkpoint_missing_field_and_unsafe_objects(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = checkpoint()
    del state["config"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="has no 'config' field"):
        load_checkpoint(path)
    torch.save({"format": CHECKPOINT_FORMAT, "evil": Evil()}, path)
    with pytest.raises(CheckpointError, match="corrupt or holds objects a safe load refuses") as err:
        load_checkpoint(path)
    assert "weights_only=False" not in str(err.value)
