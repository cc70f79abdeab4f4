"""Every bad input through the real command line: exit status 2 and one ``error: ...`` line, nothing lost.

The table ``CASES`` holds (name, arguments, a piece of the message); ``{run}`` is a small trained run
(rate MLP on digits, 1 epoch), ``{tmp}`` a fresh folder per case, ``{file}`` a file in it, ``{full}``
a folder holding only a ``metrics.json`` and a note (must not be overwritten), ``{nir}`` the NIR file an
export would write (must not be written). The config cases of tests/test_config.py are not counted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurolearn.cli import main

SMALL = ["--set", "model.layers.0.size=8", "--set", "model.layers.1.size=8"]
TRAIN = ["train", "--no-progress", "--threads", "1", "--epochs", "1"]
HUGE = str(10**9)

CASES: list[tuple[str, list[str], str]] = [
    # --out that cannot take a run: refused before any data is loaded or any epoch trained
    ("out is a file", [*TRAIN, "--out", "{file}"], "is a file, not a folder"),
    ("out under a missing parent", [*TRAIN, "--out", "{tmp}/no/such/run"], "does not exist"),
    ("out under a file", [*TRAIN, "--out", "{file}/run"], "is a file, not a folder"),
    ("out not writable", [*TRAIN, "--out", "/sys/neurolearn-run"], "cannot write in /sys"),
    ("out only metrics.json", [*TRAIN, "--out", "{full}"], "is not empty (metrics.json, note.txt)"),
    ("out only metrics.json, resume", [*TRAIN, "--out", "{full}", "--resume"], "holds no checkpoint"),
    ("out holds a run", [*TRAIN, *SMALL, "--out", "{run}"], "already holds a run; pass --resume"),
    ("resume another seed", [*TRAIN, *SMALL, "--out", "{run}", "--resume", "--seed", "7"],
     "train.seed: checkpoint has 0, now 7"),
    ("resume another lr", [*TRAIN, *SMALL, "--out", "{run}", "--resume", "--lr", "0.5"], "train.lr: checkpoint has"),
    ("resume another layer size", [*TRAIN, "--out", "{run}", "--resume"], "model.layers"),
    ("resume another rule", [*TRAIN, *SMALL, "--out", "{run}", "--resume", "--rule", "np"], "rule.name"),
    # sizes whose memory cannot be allocated: estimated before allocating, with what to change
    ("huge first layer", [*TRAIN, "--out", "{tmp}/r", "--set", f"model.layers.0.size={HUGE}"], "lower --batch-size"),
    ("huge second layer", [*TRAIN, "--out", "{tmp}/r", "--set", f"model.layers.1.size={HUGE}"], "GiB"),
    ("huge readout", [*TRAIN, "--out", "{tmp}/r", "--set", f"model.layers.2.size={HUGE}"], "is available on cpu"),
    ("weights dominate", [*TRAIN, "--out", "{tmp}/r", "--set", "model.layers.0.size=400000",
                          "--set", "model.layers.1.size=400000", "--set", "train.eval_batch_size=1",
                          "--batch-size", "1"], "lower model.layers.1.size"),
    ("huge encoder steps", [*TRAIN, "--out", "{tmp}/r", "--set", "model.encoder.steps=100000000"],
     "model.encoder.steps"),
    ("steps x whole set", [*TRAIN, "--out", "{tmp}/r", "--batch-size", "0", "--set", "model.encoder.steps=2000000"],
     "T=2,000,000"),
    ("huge eval batch x steps", [*TRAIN, "--out", "{tmp}/r", "--set", "train.eval_batch_size=100000000",
                                 "--set", "model.encoder.steps=100000"], "activity needs"),
    ("huge anp layer", [*TRAIN, "--out", "{tmp}/r", "--rule", "anp", "--set", f"model.layers.0.size={HUGE}"], "GiB"),
    ("huge model file layer", [*TRAIN, "--out", "{tmp}/r", "--model", "{huge_model}"], "GiB"),
    # sample counts checked before anything runs or is written
    *[(f"simulate --samples {n}", ["simulate", "{run}", "--backend", "torch", "--samples", n],
       "--samples must be at least 1") for n in ("0", "-1", "-100")],
    *[(f"plot --samples {n}", ["plot", "{run}", "--samples", n], "--samples must be at least 1") for n in ("0", "-2")],
    *[(f"export --check-samples {n}", ["export", "{run}", "--nir", "{nir}", "--check-samples", n],
       "--check-samples must be at least 1") for n in ("0", "-1", "-64")],
    *[(f"export --dt {v}", ["export", "{run}", "--nir", "{nir}", f"--dt={v}"], "--dt must be a positive number")
      for v in ("0", "-1e-3", "nan", "inf", "-inf")],
    ("export to a folder", ["export", "{run}", "--nir", "{tmp}"], "is a folder"),
    ("export a rate network", ["export", "{run}", "--nir", "{nir}"], "Only spiking networks can be exported"),
    ("export for a refused reader", ["export", "{run}", "--nir", "{nir}", "--for", "sinabs"], "spiking"),
    # run directories that are not runs
    *[(f"{cmd} of a missing folder", [cmd, "{tmp}/missing", *extra], "is not a run directory")
      for cmd, extra in (("eval", []), ("plot", []), ("simulate", ["--backend", "torch"]),
                         ("export", ["--nir", "{nir}"]))],
    *[(f"{cmd} of an empty folder", [cmd, "{tmp}", *extra], "is not a run directory")
      for cmd, extra in (("eval", []), ("plot", []), ("simulate", ["--backend", "torch"]),
                         ("export", ["--nir", "{nir}"]))],
    *[(f"{cmd} of a file", [cmd, "{file}", *extra], "is not a run directory")
      for cmd, extra in (("eval", []), ("plot", []), ("simulate", ["--backend", "torch"]),
                         ("export", ["--nir", "{nir}"]))],
    *[(f"{cmd} of a damaged metrics.json", [cmd, "{damaged}", *extra], "is damaged")
      for cmd, extra in (("eval", []), ("plot", []), ("simulate", ["--backend", "torch"]),
                         ("export", ["--nir", "{nir}"]))],
    *[(f"{cmd} of metrics without a checkpoint", [cmd, "{full}", *extra], "is damaged")
      for cmd, extra in (("eval", []), ("simulate", ["--backend", "torch"]), ("export", ["--nir", "{nir}"]))],
    ("eval with cuda on a cpu machine", ["eval", "{run}", "--device", "cuda"], "no CUDA GPU"),
    # usage errors: one line too
    ("unknown command", ["trian"], "invalid choice: 'trian'"),
    ("no command", [], "required: command"),
    ("epochs not a number", ["train", "--epochs", "abc"], "invalid int value: 'abc'"),
    ("epochs a float", ["train", "--epochs", "1.5"], "invalid int value: '1.5'"),
    ("lr not a number", ["train", "--lr", "fast"], "invalid float value: 'fast'"),
    ("batch size text", ["train", "--batch-size", "big"], "invalid int value"),
    ("seed text", ["train", "--seed", "x"], "invalid int value"),
    ("unknown optimizer", ["train", "--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    ("unknown option", ["train", "--learning-rate", "1"], "unrecognized arguments"),
    ("--set without a value", ["train", "--set"], "expected one argument"),
    ("unknown backend", ["simulate", "{run}", "--backend", "nest"], "invalid choice: 'nest'"),
    ("unknown target", ["simulate", "{run}", "--target", "c"], "invalid choice: 'c'"),
    ("samples a float", ["simulate", "{run}", "--samples", "1.5"], "invalid int value"),
    ("unknown split", ["eval", "{run}", "--split", "val"], "invalid choice: 'val'"),
    ("eval without a run", ["eval"], "the following arguments are required: run_dir"),
    ("export without --nir", ["export", "{run}"], "the following arguments are required: --nir"),
    ("export for an unknown reader", ["export", "{run}", "--nir", "{nir}", "--for", "loihi"], "invalid choice"),
    ("export dt text", ["export", "{run}", "--nir", "{nir}", "--dt", "1ms"], "invalid float value"),
    ("check-samples text", ["export", "{run}", "--nir", "{nir}", "--check-samples", "all"], "invalid int value"),
    ("threads 0", [*TRAIN, "--out", "{tmp}/r", "--threads", "0"], "--threads must be at least 1"),
    ("threads negative", [*TRAIN, "--out", "{tmp}/r", "--threads", "-4"], "--threads must be at least 1"),
    ("threads text", ["train", "--threads", "many"], "invalid int value"),
    ("plot with extra argument", ["plot", "{run}", "extra"], "unrecognized arguments"),
    # names and files
    ("unknown model", [*TRAIN, "--out", "{tmp}/r", "--model", "mlp-digit"], "mlp-digits"),
    ("missing model file", [*TRAIN, "--out", "{tmp}/r", "--model", "{tmp}/none.toml"], "none.toml"),
    ("model file is a folder", [*TRAIN, "--out", "{tmp}/r", "--model", "{tmp}/dir.toml"], "dir.toml"),
    ("model file bad TOML", [*TRAIN, "--out", "{tmp}/r", "--model", "{bad_toml}"], "bad.toml"),
    ("unknown rule", [*TRAIN, "--out", "{tmp}/r", "--rule", "anpp"], "did you mean 'anp'"),
    ("unknown dataset", [*TRAIN, "--out", "{tmp}/r", "--data", "digit"], "digits"),
    ("missing data folder", [*TRAIN, "--out", "{tmp}/r", "--model", "mlp-mnist", "--data-dir", "{tmp}/nodata"],
     "mnist"),
    ("cuda without a GPU", [*TRAIN, "--out", "{tmp}/r", "--device", "cuda"], "no CUDA GPU"),
    ("unknown device", [*TRAIN, "--out", "{tmp}/r", "--device", "tpu"], "train.device"),
    ("set without =", [*TRAIN, "--out", "{tmp}/r", "--set", "train.lr"], "train.lr"),
    ("set bad TOML value", [*TRAIN, "--out", "{tmp}/r", "--set", "train.lr=[1,"], "train.lr"),
    ("set empty key", [*TRAIN, "--out", "{tmp}/r", "--set", "=3"], "error"),
    ("negative sigma", [*TRAIN, "--out", "{tmp}/r", "--rule", "np", "--set", "rule.params.sigma=-1"], "sigma"),
    ("unknown rule option", [*TRAIN, "--out", "{tmp}/r", "--rule", "np", "--set", "rule.params.sigam=1"],
     "did you mean 'sigma'"),
    ("zero draws", [*TRAIN, "--out", "{tmp}/r", "--rule", "anp", "--set", "rule.params.draws=0"], "draws"),
    ("unknown neuron", [*TRAIN, "--out", "{tmp}/r", "--set", "model.layers.0.neuron=\"lief\""], "lif"),
    ("unknown encoder", [*TRAIN, "--out", "{tmp}/r", "--set", "model.encoder.kind=\"ratee\""], "rate"),
    ("zero encoder steps", [*TRAIN, "--out", "{tmp}/r", "--set", "model.encoder.steps=0"], "steps"),
    ("nan lr", [*TRAIN, "--out", "{tmp}/r", "--lr", "nan"], "train.lr"),
    ("inf lr", [*TRAIN, "--out", "{tmp}/r", "--lr", "inf"], "train.lr"),
    ("inf decor lr", [*TRAIN, "--out", "{tmp}/r", "--set", "decor.lr=inf"], "decor.lr must be a finite number"),
    ("inf dt", [*TRAIN, "--out", "{tmp}/r", "--set", "model.dt=inf"], "model.dt must be a finite number"),
    ("huge epochs type", [*TRAIN, "--out", "{tmp}/r", "--set", "train.epochs=\"10\""], "train.epochs"),
    ("layer type typo", [*TRAIN, "--out", "{tmp}/r", "--set", "model.layers.0.type=\"dens\""], "dense"),
    ("negative tau", [*TRAIN, "--out", "{tmp}/r", "--set", "model.layers.0.neuron={{model=\"lif\",tau_mem=-1}}"],
     "tau_mem"),
    ("infinite threshold", [*TRAIN, "--out", "{tmp}/r",
                            "--set", "model.layers.0.neuron={{model=\"lif\",threshold=inf}}"], "threshold"),
    ("tau below dt", [*TRAIN, "--out", "{tmp}/r",
                      "--set", "model.layers.0.neuron={{model=\"lif\",tau_mem=1e-5}}"], "tau_mem"),
    ("unknown neuron key", [*TRAIN, "--out", "{tmp}/r",
                            "--set", "model.layers.0.neuron={{model=\"lif\",tau=1e-2}}"], "tau_mem"),
    ("conv on flat data", [*TRAIN, "--out", "{tmp}/r",
                           "--set", "model.layers.0={{type=\"conv2d\",channels=2,kernel=3}}"], "conv2d"),
    ("input shape mismatch", [*TRAIN, "--out", "{tmp}/r", "--set", "model.input=[3]"], "expects inputs of shape"),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*TRAIN, *SMALL, "--out", str(out)]) == 0
    return out


def _fill(args: list[str], tmp: Path, run: Path) -> dict:
    (tmp / "file.txt").write_text("not a folder")
    full = tmp / "full"
    full.mkdir()
    (full / "metrics.json").write_text('{"note": "results of last week"}')
    (full / "note.txt").write_text("keep me")
    damaged = tmp / "damaged"
    damaged.mkdir()
    (damaged / "metrics.json").write_text('{"config": ')
    (damaged / "checkpoint.pt").write_bytes(b"x")
    (tmp / "dir.toml").mkdir()
    (tmp / "bad.toml").write_text("layers = [\n")
    (tmp / "huge.toml").write_text(f'data = "digits"\n[[layers]]\nsize = {HUGE}\n[[layers]]\nsize = 10\n')
    names = {"run": run, "tmp": tmp, "file": tmp / "file.txt", "full": full, "damaged": damaged,
             "nir": tmp / "out.nir", "bad_toml": tmp / "bad.toml", "huge_model": tmp / "huge.toml"}
    return names


def _snapshot(paths: list[Path]) -> dict[str, bytes]:
    return {str(f): f.read_bytes() for p in paths for f in sorted(p.rglob("*")) if f.is_file()}


@pytest.mark.parametrize("name,args,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(name, args, message, run_dir, tmp_path, capsys):
    names = _fill(args, tmp_path, run_dir)
    argv = [a.format(**names) for a in args]
    before = _snapshot([run_dir, names["full"]])
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert status == 2, (status, err)
    # one error line, the last; before it at most the run's banner (what is being trained, the resolved settings)
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0] and "Traceback" not in err, err
    err = errors[0]
    assert message in err, err
    # nothing lost or written: the trained run, the folder of results, no NIR file, no new run directory
    assert _snapshot([run_dir, names["full"]]) == before
    assert not names["nir"].exists()
    assert not (tmp_path / "r").exists() and not (tmp_path / "no").exists()


def test_table_size():
    assert len(CASES) >= 100


def test_divergence_without_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """lr 1e-3 in epoch 1, 1e6 from epoch 2 (lr_decay 1e9): the loss blows up (finite) and training stops."""
    out = tmp_path / "run"
    status = main([*TRAIN, *SMALL, "--epochs", "4", "--lr", "1e-3", "--set", "train.lr_decay=1e9",
                   "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2 and "blew up" in err and "epoch 2" in err and "last good checkpoint (epoch 1)" in err, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and "epoch 2" in metrics["diverged_at"]
    assert [e["epoch"] for e in metrics["epochs"]] == [1]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    # the kept checkpoint evaluates
    assert main(["eval", str(out)]) == 0


def test_adam_lr_1e6_is_diverged_not_finished(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, *SMALL, "--epochs", "3", "--lr", "1e6", "--out", str(out)]) == 2
    assert json.loads((out / "metrics.json").read_text())["status"] == "diverged"
    assert not (out / "checkpoint.pt").exists()


def test_read_only_parent_is_refused_before_training(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (the /sys case of the table covers the probe)")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main([*TRAIN, "--out", str(ro / "run")]) == 2
        assert "cannot write" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("args,message", [
    (["simulate", "{run}", "--samples", "0"], "--samples must be at least 1"),
    (["train", "--epochs", "x"], "invalid int value"),
    (["train", "--out", "{file}"], "is a file"),
])
def test_through_a_subprocess(args, message, run_dir, tmp_path):
    names = _fill(args, tmp_path, run_dir)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, "-m", "neurolearn.cli", *[a.format(**names) for a in args]],
                          capture_output=True, text=True, env=env, timeout=120)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and message in err, err
