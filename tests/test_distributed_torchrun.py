"""Data parallel under a real ``torchrun`` (not the spawn harness of test_distributed.py): a rank is
killed (SIGKILL) mid-run, torchrun stops the group, and the run resumes from rank 0's checkpoint at
the same world size and at another one; both end with what an uninterrupted single process trains.

float32 with ``train.exact_sums`` (mlp-digits' DRTP default): the results are compared bit for bit.
One test, about 20-30 s (two torchrun launches on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurolearn.config import resolve_config
from neurolearn.distributed import SINGLE
from neurolearn.runs import build_run
from neurolearn.training import Trainer

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, KILL_AFTER = 4, 2
ARGS = ["train", "--model", "mlp-digits", "--rule", "drtp", "--epochs", str(EPOCHS), "--threads", "1",
        "--no-progress"]

# torchrun runs this file: the CLI, with rank 1 killing itself (SIGKILL: no cleanup, no error message)
# right after rank 0 has written the checkpoint of epoch KILL_AFTER
KILLER = f"""
import os, signal, sys
from neurolearn.training import Trainer
from neurolearn.cli import main

save = Trainer.save

def save_then_die(self, epoch):
    save(self, epoch)
    if epoch == {KILL_AFTER} and self.ctx.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)

Trainer.save = save_then_die
sys.exit(main(sys.argv[1:]))
"""


def torchrun(args: list[str], tmp: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *args]
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)


def single(out: Path | None, resume: bool = False) -> tuple[dict, list[torch.Tensor]]:
    torch.set_num_threads(1)
    cfg = resolve_config(model="mlp-digits", rule="drtp", epochs=EPOCHS)
    trainer = Trainer(build_run(cfg), out, progress=False, log=lambda m: None, ctx=SINGLE)
    metrics = trainer.fit(resume=resume)
    return metrics, [p.detach().clone() for p in trainer.run.model.parameters()]


def saved_params(run_dir: Path) -> list[torch.Tensor]:
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    return list(state["model"].values())


def test_a_killed_rank_resumes_from_rank_0s_checkpoint_at_any_world_size(tmp_path):
    assert resolve_config(model="mlp-digits", rule="drtp")["train"]["exact_sums"] is True
    ref_metrics, ref_params = single(None)
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER)
    run = tmp_path / "run"
    killed = torchrun([str(killer), *ARGS, "--out", str(run)], tmp_path)
    assert killed.returncode != 0, killed.stdout + killed.stderr  # torchrun reports the dead worker
    assert "Signals.SIGKILL" in killed.stderr or "SIGKILL" in killed.stderr or "-9" in killed.stderr
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == KILL_AFTER  # rank 0's last checkpoint survived, nothing later
    shutil.copytree(run, tmp_path / "run-w1")

    resumed = torchrun(["-m", "neurolearn", *ARGS, "--out", str(run), "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    two = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in two["epochs"]] == list(range(1, EPOCHS + 1))
    assert two["final"]["test_accuracy"] == ref_metrics["final"]["test_accuracy"]
    assert two["final"]["train_loss"] == pytest.approx(ref_metrics["final"]["train_loss"], rel=1e-12)
    names = [n for n, _ in build_run(resolve_config(model="mlp-digits", rule="drtp")).model.named_parameters()]
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    for name, ref in zip(names, ref_params):
        assert torch.equal(state["model"][name], ref), name  # bit for bit

    one_metrics, one_params = single(tmp_path / "run-w1", resume=True)  # the W=2 checkpoint, resumed at W=1
    assert one_metrics["final"]["test_accuracy"] == ref_metrics["final"]["test_accuracy"]
    for a, b in zip(one_params, ref_params):
        assert torch.equal(a, b)
