"""Every script in experiments/ imports and answers --help through the shared harness."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neurolearn import harness

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.py"))


# One process runs every script as __main__ with --help (torch and brian2 imported once, not 23 times).
_RUN_ALL = """
import contextlib, io, json, runpy, sys
out = {}
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(path, run_name="__main__")
        code = "no exit"
    except SystemExit as exc:
        code = exc.code or 0
    except BaseException as exc:
        code = f"{type(exc).__name__}: {exc}"
    out[path] = [code, buf.getvalue()]
print(json.dumps(out))
"""


def test_every_script_answers_help_with_the_harness_options():
    import json

    assert len(SCRIPTS) >= 20
    root = SCRIPTS[0].parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "experiments")])}
    proc = subprocess.run([sys.executable, "-c", _RUN_ALL, *map(str, SCRIPTS)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for script in SCRIPTS:
        code, text = results[str(script)]
        assert code == 0, f"{script.name}: {code}"
        for option in ("--quick", "--out", "--data-dir"):
            assert option in text, f"{script.name} --help lacks {option}"
        source = script.read_text()
        assert "sys.path" not in source and "shared" + '" / "data' not in source, script.name


def test_results_are_written_with_run_info_and_the_summary_is_the_last_line(tmp_path, capsys, monkeypatch):
    ap = harness.parser("demo experiment\n\nmore text", quick="tiny")
    args = harness.start(ap, ["--out", str(tmp_path / "res"), "--data-dir", str(tmp_path / "data")])
    assert os.environ["NEUROLEARN_DATA"] == str((tmp_path / "data").resolve())
    cfg = harness.resolve(model="mlp-digits", rule="anp", overrides=["train.lr=0.5"], epochs=2)
    assert cfg["train"]["lr"] == 0.5 and cfg["train"]["epochs"] == 2 and cfg["rule"]["params"]["draws"] == 8
    drawn = []
    harness.finish(args, "demo", {"acc": 0.5}, record={"acc": 0.5, "rows": [1]}, table=["a | b"],
                   figure=drawn.append)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == '{"acc": 0.5}' and out[0] == "a | b"
    import json

    saved = json.loads((tmp_path / "res" / "demo.json").read_text())
    assert saved["rows"] == [1] and {"wall_s", "cpu_s", "load_start", "load_end"} <= set(saved["run_info"])
    assert drawn == [tmp_path / "res" / "demo.png"]
    monkeypatch.delenv("NEUROLEARN_DATA")
    with pytest.raises(SystemExit):
        harness.start(ap, ["--bogus"])


@pytest.mark.parametrize("kind,text,ok", [(int, "3", True), (int, "0", False), (int, "-2", False), (int, "2.5", False),
                                          (float, "0.5", True), (float, "0", False), (float, "nan", False),
                                          (float, "inf", False)])
def test_positive_arguments_are_refused_in_one_line(kind, text, ok):
    import argparse

    from neurolearn.harness import positive

    if ok:
        assert positive(kind)(text) == kind(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            positive(kind)(text)
