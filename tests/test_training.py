"""The trainer and the command line end to end: metrics, checkpoints, resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from neurolearn.cli import main
from neurolearn.config import resolve_config
from neurolearn.errors import CheckpointError, TrainingDiverged
from neurolearn.io import load_checkpoint
from neurolearn.rules import Backprop
from neurolearn.runs import build_run
from neurolearn.training import Trainer


def train(tmp_path: Path, name: str, *args: str) -> dict:
    out = tmp_path / name
    assert main(["train", "--no-progress", "--out", str(out), *args]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_cli_trains_evaluates_and_plots(tmp_path, capsys):
    m = train(tmp_path, "run", "--epochs", "3", "--seed", "1")
    assert [e["epoch"] for e in m["epochs"]] == [1, 2, 3]
    for key in ("train_loss", "test_loss", "test_accuracy", "wall_time_s"):
        assert key in m["epochs"][0]
    fin = m["final"]
    assert fin["test_accuracy"] > 0.85  # chance is 0.1: three epochs of backprop on digits learn
    assert set(fin) >= {"test_accuracy", "test_loss", "train_loss", "wall_time_s", "peak_memory_mb"}
    assert m["config"]["model"]["name"] == "mlp-digits" and m["config"]["rule"]["name"] == "bp"
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["accuracy"] == pytest.approx(fin["test_accuracy"])
    assert main(["plot", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "activity.png").exists()
    assert main(["rules"]) == 0 and "bp" in capsys.readouterr().out
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    for name in ("mlp-digits", "mlp-mnist", "snn-mnist", "rnn-copy", "rnn-mackey-glass", "rnn-seqmnist"):
        assert name in listed


def test_same_seed_same_numbers(tmp_path):
    a = train(tmp_path, "a", "--epochs", "2", "--seed", "3")
    b = train(tmp_path, "b", "--epochs", "2", "--seed", "3")
    c = train(tmp_path, "c", "--epochs", "2", "--seed", "4")
    strip = lambda m: [{k: v for k, v in e.items() if k != "wall_time_s"} for e in m["epochs"]]  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_resume_continues_to_the_same_result(tmp_path):
    full = train(tmp_path, "full", "--epochs", "4", "--set", "train.optimizer=\"sgd\"", "--set", "train.momentum=0.9",
                 "--lr", "0.05")
    train(tmp_path, "part", "--epochs", "2", "--set", "train.optimizer=\"sgd\"", "--set", "train.momentum=0.9",
          "--lr", "0.05")
    resumed = train(tmp_path, "part", "--epochs", "4", "--set", "train.optimizer=\"sgd\"", "--set",
                    "train.momentum=0.9", "--lr", "0.05", "--resume")
    key = lambda m: [(e["train_loss"], e["test_loss"]) for e in m["epochs"]]  # noqa: E731
    assert key(resumed) == key(full)
    wa = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]
    wb = load_checkpoint(tmp_path / "part" / "checkpoint.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_weight_averaging_evaluates_keeps_and_resumes_the_average(tmp_path, capsys):
    opts = ["--set", "train.optimizer=\"sgd\"", "--lr", "0.05", "--set", "train.average=0.9"]
    full = train(tmp_path, "full", "--epochs", "3", *opts)
    ckpt = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    avg, raw = ckpt["model"], ckpt["training_model"]
    assert any(not torch.equal(avg[k], raw[k]) for k in avg)  # the average is not the last iterate
    # the reported test numbers are the saved average's
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "full")]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] == pytest.approx(full["final"]["test_loss"])
    # the same run without averaging trains the same raw weights and reports them
    plain = train(tmp_path, "plain", "--epochs", "3", "--set", "train.optimizer=\"sgd\"", "--lr", "0.05")
    plain_w = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")["model"]
    assert all(torch.equal(plain_w[k], raw[k]) for k in raw)
    assert [e["train_loss"] for e in plain["epochs"]] == [e["train_loss"] for e in full["epochs"]]
    assert plain["final"]["test_loss"] != full["final"]["test_loss"]
    # resuming continues both the weights and their average
    train(tmp_path, "part", "--epochs", "1", *opts)
    resumed = train(tmp_path, "part", "--epochs", "3", *opts, "--resume")
    assert [e["test_loss"] for e in resumed["epochs"]] == [e["test_loss"] for e in full["epochs"]]
    capsys.readouterr()
    assert main(["train", "--no-progress", "--out", str(tmp_path / "bad"), "--set", "train.average=1.0"]) != 0
    assert "train.average must be in [0, 1)" in capsys.readouterr().err


def test_weight_average_is_the_moving_average_of_the_steps():
    cfg = resolve_config(model="mlp-digits", rule="bp", epochs=1, optimizer="sgd", lr=0.05, batch_size=256)
    cfg["train"]["average"] = 0.5
    trainer = Trainer(build_run(cfg), None, progress=False, log=lambda m: None)
    expected = [p.detach().clone() for p in trainer.params]
    steps = []
    original = trainer.run.rule.train_step

    def step(*args):
        out = original(*args)
        steps.append([p.detach().clone() for p in trainer.params])
        return out

    trainer.run.rule.train_step = step
    trainer.fit()
    for w in steps:
        expected = [0.5 * e + 0.5 * x for e, x in zip(expected, w)]
    assert len(steps) > 3
    assert all(torch.allclose(p, e) for p, e in zip(trainer.params, expected))  # after fit: the average


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL a training process mid-run, resume it, and compare with an uninterrupted run."""
    args = ["--model", "rnn-copy", "--epochs", "150", "--no-progress"]
    cmd = [sys.executable, "-m", "neurolearn.cli", "train", *args]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(cmd + ["--out", str(tmp_path / "ref")], check=True, capture_output=True, env=env)
    proc = subprocess.Popen(cmd + ["--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                if load_checkpoint(ckpt)["epoch"] >= 5:
                    break
            except CheckpointError:
                pass
        time.sleep(0.02)
    killed_mid_run = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(cmd + ["--out", str(tmp_path / "killed"), "--resume"], check=True, capture_output=True, env=env)
    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    res = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert [e["train_loss"] for e in res["epochs"]] == [e["train_loss"] for e in ref["epochs"]]
    assert res["final"]["test_loss"] == ref["final"]["test_loss"]
    if not killed_mid_run:
        pytest.skip("the run finished before it could be killed (machine too fast); resume was still checked")


class NaNAfter(Backprop):
    """Backprop whose loss turns NaN at a given step (to test the divergence guard)."""

    def __init__(self, bad_step: int):
        super().__init__()
        self.bad_step, self.calls = bad_step, 0

    def estimate_gradients(self, model, x, y, objective):
        out = super().estimate_gradients(model, x, y, objective)
        self.calls += 1
        if self.calls >= self.bad_step:
            out.loss[0] = float("nan")
        return out


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = resolve_config("mlp-digits", epochs=5)
    run = build_run(cfg)
    per_epoch = -(-run.dataset.x_train.shape[0] // cfg["train"]["batch_size"])
    run.rule = NaNAfter(bad_step=2 * per_epoch + 5)  # fails in epoch 3
    with pytest.raises(TrainingDiverged, match=r"epoch 3.*last good checkpoint \(epoch 2\)"):
        Trainer(run, tmp_path / "r", progress=False).fit()
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["epoch"] == 2
    assert "diverged" in json.loads((tmp_path / "r" / "metrics.json").read_text())["status"]


def run_cli_error(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    return err


def test_bad_input_gives_a_clear_message(tmp_path, capsys, monkeypatch):
    assert "unknown model 'nope'" in run_cli_error(capsys, "train", "--model", "nope")
    assert "unknown rule 'magic'" in run_cli_error(capsys, "train", "--rule", "magic", "--out", str(tmp_path / "a"))
    assert "unknown dataset" in run_cli_error(capsys, "train", "--data", "imagenet", "--out", str(tmp_path / "b"))
    assert "expects inputs of shape" in run_cli_error(capsys, "train", "--data", "copy", "--out", str(tmp_path / "c"))
    snn_on_digits = ["train", "--model", "snn-mnist", "--data", "digits", "--set", "model.input=[64]"]
    assert "larger than" in run_cli_error(
        capsys, *snn_on_digits, "--set", "model.layers.0.neuron.tau_mem=1e-4", "--out", str(tmp_path / "d"))
    assert "positive" in run_cli_error(
        capsys, *snn_on_digits, "--set", "model.layers.0.neuron.tau_mem=-0.02", "--out", str(tmp_path / "e"))
    assert "above v_reset" in run_cli_error(
        capsys, *snn_on_digits, "--set", "model.layers.0.neuron.threshold=0.0", "--out", str(tmp_path / "f"))
    assert "--set expects key=value" in run_cli_error(capsys, "train", "--set", "train.lr")
    monkeypatch.setenv("NEUROLEARN_DATA", str(tmp_path / "empty"))
    err = run_cli_error(capsys, "train", "--model", "mlp-mnist", "--set", "data.options.download=false",
                        "--out", str(tmp_path / "g"))
    assert "MNIST" in err and "NEUROLEARN_DATA" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_refused(capsys, tmp_path):
    assert "no CUDA GPU" in run_cli_error(capsys, "train", "--device", "cuda", "--out", str(tmp_path / "x"))


def test_corrupt_and_mismatched_checkpoints(tmp_path, capsys):
    train(tmp_path, "run", "--epochs", "1")
    assert "already holds a run" in run_cli_error(capsys, "train", "--epochs", "1", "--out", str(tmp_path / "run"))
    err = run_cli_error(capsys, "train", "--epochs", "2", "--resume", "--out", str(tmp_path / "run"),
                        "--set", "model.layers.0.size=64")
    assert "another configuration" in err and "layers" in err
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:500])  # truncated
    assert "corrupt" in run_cli_error(capsys, "eval", str(tmp_path / "run"))
    assert "not a run directory" in run_cli_error(capsys, "eval", str(tmp_path / "nothing"))
