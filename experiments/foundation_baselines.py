"""The backprop/BPTT baselines of the foundation: each ready model trained with its defaults.

Runs, through the command line exactly as a user would, ::

    neurolearn train                                           # mlp-digits, >= 0.97 in < 60 s
    neurolearn train --model mlp-mnist --rule bp --optimizer adam --epochs 10   # >= 0.980
    neurolearn train --model snn-mnist --rule bp               # >= 0.970 (BPTT, surrogate gradients)
    neurolearn train --model rnn-copy --rule bp                # 0 error bits

and prints a table, writes ``experiments/results/foundation_baselines.json`` (each run's final
metrics) and a figure of the test curves. ``--quick`` runs only the two small models.
MNIST comes from ``$NEUROLEARN_DATA``. Each run uses one torch thread (``--threads 1``):
on a shared machine, oversubscribed threads made runs about ten times slower.

Usage: ``python experiments/foundation_baselines.py [--quick] [--runs-dir DIR] [--out RESULTS_DIR]``
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from neurolearn import harness
from neurolearn.plotting import pyplot, save_figure


CHECKS = [
    ("mlp-digits", [], "test_accuracy", ">=", 0.97),
    ("rnn-copy", ["--model", "rnn-copy", "--rule", "bp"], "error_bits", "==", 0.0),
    ("mlp-mnist", ["--model", "mlp-mnist", "--rule", "bp", "--optimizer", "adam", "--epochs", "10"],
     "test_accuracy", ">=", 0.980),
    ("snn-mnist", ["--model", "snn-mnist", "--rule", "bp"], "test_accuracy", ">=", 0.970),
]


def train(args: list[str], out: Path) -> dict:
    cmd = [sys.executable, "-m", "neurolearn.cli", "train", "--no-progress", "--threads", "1", "--out", str(out), *args]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def main() -> None:
    parser = harness.parser(__doc__, quick="only mlp-digits and rnn-copy")
    parser.add_argument("--runs-dir", default=None, help="folder for the run directories (default: a temporary one)")
    args = harness.start(parser)
    root = Path(args.runs_dir or tempfile.mkdtemp(prefix="neurolearn-baselines-"))
    checks = CHECKS[:2] if args.quick else CHECKS
    rows, runs = [], {}
    for name, flags, key, op, target in checks:
        metrics = train(flags, root / name)
        value = metrics["final"][key]
        ok = value >= target if op == ">=" else value == target
        rows.append({"model": name, "metric": key, "value": value, "target": f"{op} {target}", "met": ok,
                     "epochs": len(metrics["epochs"]), "wall_time_s": metrics["final"]["wall_time_s"]})
        runs[name] = metrics["epochs"]
    print(f"{'model':12s} {'metric':14s} {'value':>8s} {'target':>9s} {'met':>4s} {'epochs':>6s} {'wall s':>8s}")
    for r in rows:
        print(f"{r['model']:12s} {r['metric']:14s} {r['value']:8.4f} {r['target']:>9s} {str(r['met']):>4s} "
              f"{r['epochs']:6d} {r['wall_time_s']:8.1f}")
    harness.write_results(args, "foundation_baselines", {"rows": rows, "epochs": runs})
    plot(runs, harness.results_path(args, "foundation_baselines.png"))
    print(json.dumps({r["model"]: r["value"] for r in rows}))


def plot(runs: dict, path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.2))
    for ax, (name, epochs) in zip(axes, runs.items()):
        key = "test_accuracy" if "test_accuracy" in epochs[0] else "test_error_bits"
        ax.plot([e["epoch"] for e in epochs], [e[key] for e in epochs])
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " "))
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main()
