"""neurolearn sweep: grid x seeds on a process pool, restartable, table and figure."""

from __future__ import annotations

import json

import pytest

from neurolearn.cli import main
from neurolearn.errors import ConfigError
from neurolearn.sweep import parse_grid, parse_seeds, split_values, summarise


def test_grid_and_seed_parsing():
    assert parse_grid(["train.lr=1e-3,3e-3", "train.batch_size=32"]) == [
        ("train.lr=1e-3", "train.batch_size=32"), ("train.lr=3e-3", "train.batch_size=32")]
    assert parse_grid(None) == [()]
    assert split_values("[0.1,0],0.2,\"a,b\"") == ["[0.1,0]", "0.2", "\"a,b\""]
    assert parse_seeds("0-2") == [0, 1, 2] and parse_seeds("0,3,7") == [0, 3, 7]
    for bad in ("2-0", "x", "1,1"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_grid(["train.lr"])


def test_summary_is_mean_and_sample_spread_over_seeds():
    rows = summarise([{"setting": "a", "seed": s, "final": {"test_accuracy": v}} for s, v in enumerate([0.5, 0.7])])
    assert rows[0]["test_accuracy"]["mean"] == pytest.approx(0.6)
    assert rows[0]["test_accuracy"]["spread"] == pytest.approx(0.1414213562)


def test_sweep_runs_every_trial_once_and_skips_finished_ones_on_restart(tmp_path, capsys):
    out = tmp_path / "S"
    argv = ["sweep", "--model", "mlp-digits", "--rule", "bp", "--set", "train.lr=1e-3,3e-3", "--seeds", "0-1",
            "--workers", "2", "--epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "sweep.json").read_text())
    assert len(report["trials"]) == 4 and len(report["summary"]) == 2
    assert (out / "sweep.png").exists() and "train.lr=1e-3" in (out / "table.md").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.json")}
    assert len(stamps) == 4
    capsys.readouterr()
    assert main(argv) == 0  # restart: nothing reruns
    assert "4 already finished, 0 to run" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.glob("trials/*/metrics.json")} == stamps


def test_a_bad_setting_is_one_error_before_anything_runs(tmp_path, capsys):
    assert main(["sweep", "--set", "train.lrr=1e-3,2e-3", "--out", str(tmp_path / "S")]) == 2
    err = capsys.readouterr().err
    assert "lrr" in err and "Traceback" not in err
    assert not (tmp_path / "S").exists()


def test_ray_backend_without_ray_says_how_to_install(tmp_path, capsys, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["sweep", "--backend", "ray", "--epochs", "1", "--out", str(tmp_path / "S")]) == 2
    assert "neurolearn[ray]" in capsys.readouterr().err
