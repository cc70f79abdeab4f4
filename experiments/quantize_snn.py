"""snn-mnist on hardware terms: NIR export + re-import, and n-bit weights (per-layer scale).

For a trained snn-mnist run (``--run RUN_DIR``; without it the script trains one with
``--rule`` for ``--epochs`` epochs into experiments/results/quantize_snn_run), it measures
the test accuracy of

- the trained network,
- the network exported to NIR and read back (must be identical),
- the network with weights quantised to 8, 6 and 4 bits (one scale per weight tensor),

all with the same encoder seed (paired comparison). Prints a table, writes
experiments/results/quantize_snn.{json,png}; the last stdout line is JSON with
``accuracy_before``, ``accuracy_8bit``, ``drop_8bit_points``, ``reimport_accuracy``,
``reimport_equal``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from neurolearn import harness
from neurolearn.plotting import pyplot, save_figure

ROOT = Path(__file__).resolve().parent.parent


def train(out: Path, rule: str, epochs: int, quick: bool) -> None:
    cmd = [sys.executable, "-m", "neurolearn.cli", "train", "--model", "snn-mnist", "--rule", rule,
           "--epochs", str(epochs), "--out", str(out), "--no-progress"]
    if quick:
        cmd += ["--set", "data.options.train_limit=2000", "--set", "data.options.test_limit=1000"]
    print("$", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=ROOT, env=os.environ)


def main() -> None:
    ap = harness.parser(__doc__, quick="train on 2000 images, test on 1000")
    ap.add_argument("--run", default=None, help="a trained snn-mnist run directory")
    ap.add_argument("--rule", default="bp")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--bits", type=int, nargs="+", default=[8, 6, 4])
    args = harness.start(ap)

    import torch

    from neurolearn.export.nir import read, write
    from neurolearn.quantize import accuracy, quantize_network
    from neurolearn.runs import load_trained

    run_dir = Path(args.run) if args.run else harness.results_path(args, "quantize_snn_run")
    if not args.run:
        train(run_dir, args.rule, args.epochs, args.quick)
    run = load_trained(run_dir)
    x, y = run.dataset.x_test, run.dataset.y_test
    net = run.model
    rows = {"trained": accuracy(net, x, y)}
    with tempfile.TemporaryDirectory() as d:
        write(Path(d) / "m.nir", net)
        back = read(Path(d) / "m.nir")
    rows["NIR export + re-import"] = accuracy(back, x, y)
    with torch.no_grad():
        xe = net.encode(x[:200], torch.Generator().manual_seed(0))
        ra, rb = net.run(xe), back.run(xe)
    reimport_equal = all(torch.equal(a.act, b.act) for a, b, l in zip(ra.layers, rb.layers, net.layers) if l.spiking)
    scales = {}
    for b in args.bits:
        q = quantize_network(net, b)
        rows[f"{b}-bit weights"] = accuracy(q.model, x, y)
        scales[b] = q.scales
    base = rows["trained"]
    print(f"snn-mnist run {run_dir} ({run.config['rule']['name']}), {len(y)} test images")
    print(f"{'network':28s} {'accuracy':>9s} {'drop (points)':>14s}")
    for name, acc in rows.items():
        print(f"{name:28s} {100 * acc:9.2f} {100 * (base - acc):14.2f}")
    summary = {"accuracy_before": base, "accuracy_8bit": rows.get("8-bit weights"),
               "drop_8bit_points": None if 8 not in args.bits else 100 * (base - rows["8-bit weights"]),
               "reimport_accuracy": rows["NIR export + re-import"], "reimport_equal": reimport_equal}
    harness.write_results(args, "quantize_snn", {"run": str(run_dir), "rule": run.config["rule"]["name"], "test_images": len(y), "accuracy": rows,
         "scales": scales, **summary})
    try:
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(6, 3))
        names = list(rows)
        ax.bar(range(len(names)), [100 * rows[n] for n in names], color="0.4")
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(min(100 * v for v in rows.values()) - 5, 100)
        ax.set_ylabel("test accuracy (%)")
        save_figure(fig, harness.results_path(args, "quantize_snn.png"), dpi=120)
    except Exception as exc:  # the figure is a by-product
        print(f"(no figure: {exc})")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
