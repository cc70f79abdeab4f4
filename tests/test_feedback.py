"""Feedback of a run: progress lines off a terminal, per-epoch spike metrics, the CSV log."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from neurolearn import Dense, Encoder, LIFParams, LIParams, Network
from neurolearn.cli import main
from neurolearn.feedback import Progress, spike_metrics

ROOT = Path(__file__).resolve().parents[1]


def test_progress_off_a_terminal_prints_periodic_lines():
    stream = io.StringIO()
    bar = Progress(range(5), "epoch 1/2", stream=stream, interval=0.0, tty=False)
    for i in bar:
        bar.set_postfix(loss=f"{i / 10:.2f}")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("epoch 1/2: 1/5 batches (20%)") and "loss 0.00" in lines[0]
    assert len(lines) == 6 and lines[-1].startswith("epoch 1/2: done 5/5 batches")
    quiet = io.StringIO()
    assert list(Progress(range(3), "x", stream=quiet, interval=60.0, tty=False)) == [0, 1, 2]
    assert quiet.getvalue() == ""  # a loop faster than the interval stays silent


def test_spike_metrics_count_rates_and_synops():
    lif = LIFParams(tau_mem=10e-3, dt=1e-3, threshold=0.5)
    net = Network([Dense(3, 2, lif, bias=False), Dense(2, 4, LIParams(tau=10e-3, dt=1e-3), bias=False)],
                  encoder=Encoder("direct", steps=1), decode="mean")
    with torch.no_grad():
        net.layers[0].weight.fill_(1.0)  # input 1 on one channel: both neurons spike every step
    x = torch.zeros(5, 2, 3)
    x[:, 0, 0] = 1.0  # sample 0: one active input for 5 steps; sample 1: silent
    m = spike_metrics(net, x)
    assert m["rate_0"] == 0.5 and abs(m["rate_hz_0"] - 500.0) < 1e-6  # 10 spikes / (5 steps x 2 neurons x 2 samples)
    assert "rate_1" not in m  # the LI readout does not spike
    assert m["synops_0"] == 5 * 2 / 2  # 5 steps x 1 input x fan-out 2, per sample
    assert m["synops_1"] == 5 * 2 * 4 / 2  # 5 steps x 2 spikes x fan-out 4, per sample
    assert m["synops"] == m["synops_0"] + m["synops_1"]


def test_spiking_run_has_per_epoch_rates_and_csv(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--no-progress", "--threads", "1", "--model", "snn-mnist", "--data", "digits",
                 "--set", "model.input=[64]", "--set", "model.encoder.steps=4", "--set", "model.layers.0.size=32", "--epochs", "2",
                 "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["epochs"]) == 2
    for entry in m["epochs"]:
        assert 0.0 <= entry["rate_0"] <= 1.0 and entry["synops"] > 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "rate_0" in rows[0]


def test_batch_job_log_gets_progress_lines(tmp_path):
    log = tmp_path / "log.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NEUROLEARN_PROGRESS_INTERVAL": "0"}
    with log.open("w") as fh:
        rc = subprocess.run([sys.executable, "-m", "neurolearn.cli", "train", "--model", "mlp-digits", "--rule", "bp",
                             "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "run")],
                            stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, timeout=300).returncode
    text = log.read_text()
    assert rc == 0, text
    assert "loading digits ..." in text
    assert "epoch 1/1: 1/" in text and "epoch 1/1: done" in text
    assert "evaluating (test, 360 samples): done" in text
