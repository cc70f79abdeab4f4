"""Target projection on MNIST, BP beside each (issue 5).

- MLP 784-500-500-10 (``models/mlp-mnist.toml``): BP, DFA, DRTP, tpSGD;
- small conv net (``models/cnn-mnist.toml``): BP, tpSGD;
- spiking LIF MLP (``models/snn-mnist.toml``): BP(TT) with surrogate gradients, DRTP without.

Every method trains the same network (same seed, same batches) with the model file's
defaults for that rule (its ``[rules.<name>]`` section), exactly like
``neurolearn train --model M --rule R``. Prints a table, writes
``experiments/results/tp_mnist.json`` and ``tp_mnist.png``, and as its last line a JSON
object with each accuracy and the gaps to BP (points).

``--quick``: 5 000 training / 2 000 test images, one epoch per run (minutes, not hours).
"""

from __future__ import annotations

import json
import time
from neurolearn import harness
from neurolearn.plotting import pyplot, save_figure


PLAN = [("mlp-mnist", ["bp", "dfa", "drtp", "tpsgd"]), ("cnn-mnist", ["bp", "tpsgd"]), ("snn-mnist", ["bp", "drtp"])]


def train_one(model: str, rule: str, quick: bool, extra: list[str] | None = None, epochs: int | None = None) -> dict:
    """Train ``model`` with ``rule`` (the model file's defaults); returns the final metrics."""
    from neurolearn.runs import build_run
    from neurolearn.training import Trainer

    overrides = list(extra or [])
    if quick:
        overrides += ["data.options.train_limit=5000", "data.options.test_limit=2000"]
        epochs = epochs or 1
    cfg = harness.resolve(model=model, rule=rule, overrides=overrides, epochs=epochs)
    t0 = time.perf_counter()
    metrics = Trainer(build_run(cfg), None, progress=False, log=lambda msg: None).fit()
    fin = metrics["final"]
    fin["seconds"] = time.perf_counter() - t0
    fin["epochs"] = cfg["train"]["epochs"]
    fin["curve"] = [e.get("test_accuracy") for e in metrics["epochs"]]
    return fin


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--only", default=None, help="comma-separated model names to run (default: all)")
    ap.add_argument("--tag", default="", help="suffix of the result files (tp_mnist<tag>.json)")
    args = harness.start(ap)
    results: dict[str, dict[str, dict]] = {}
    only = set(args.only.split(",")) if args.only else None
    for model, rules in PLAN:
        if only and model not in only:
            continue
        for rule in rules:
            res = train_one(model, rule, args.quick)
            results.setdefault(model, {})[rule] = res
            print(f"  {model:10s} {rule:6s} acc {res['test_accuracy']:.4f}  ({res['epochs']} ep, {res['seconds']:.0f} s)",
                  flush=True)
    print(f"\n{'model':10s} {'rule':6s} {'test acc':>9s} {'gap to BP (pts)':>16s} {'epochs':>7s} {'time s':>8s}")
    summary: dict[str, float] = {}
    for model, per_rule in results.items():
        bp = per_rule.get("bp", {}).get("test_accuracy")
        for rule, res in per_rule.items():
            acc = res["test_accuracy"]
            gap = None if bp is None else 100 * (bp - acc)
            summary[f"{model}/{rule}"] = round(acc, 4)
            if rule != "bp" and gap is not None:
                summary[f"{model}/{rule}_gap_pts"] = round(gap, 2)
            gap_s = "" if gap is None or rule == "bp" else f"{gap:.2f}"
            print(f"{model:10s} {rule:6s} {acc:9.4f} {gap_s:>16s} {res['epochs']:7d} {res['seconds']:8.0f}")
    harness.write_results(args, f"tp_mnist{args.tag}", {"quick": args.quick, "results": results, "summary": summary})
    try:
        plt = pyplot()

        fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.2), squeeze=False)
        for ax, (model, per_rule) in zip(axes[0], results.items()):
            for rule, res in per_rule.items():
                ax.plot(range(1, len(res["curve"]) + 1), res["curve"], marker="o", label=rule)
            ax.set_title(model)
            ax.set_xlabel("epoch")
            ax.set_ylabel("test accuracy")
            ax.legend()
        save_figure(fig, harness.results_path(args, f"tp_mnist{args.tag}.png"), dpi=120)
    except ImportError:
        pass
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
