"""Tuning runs for target projection / DFA on an MNIST subset, BP beside them (issue 5).

Each variant is ``name rule KEY=VALUE ...`` (``--set`` overrides on top of the model file's
``[rules.<rule>]`` defaults, exactly like ``neurolearn train --model M --rule R --set ...``);
all variants train the same network from the same seed on the same subset. Prints a table,
writes ``experiments/results/tp_tune_<tag>.json`` and ``.png``, and as its last line a JSON
object ``{variant: final test accuracy, ..., "<variant>_gap_pts": ...}`` (gap to the first
``bp`` variant, in points).

Presets (``--preset``): ``dfa`` (lr decay / lr / tanh), ``drtp`` (the published setup: tanh
hidden units, optimizer, lr; vs the ``margin`` variant), ``tpsgd`` (lr, projection scale,
tanh), ``full`` (the candidates on the whole training set: ``--train-limit 60000``) and
``cnn`` (with ``--model cnn-mnist``). ``--quick``: 5 000 images, 2 epochs.
"""

from __future__ import annotations

import json

from tp_mnist import train_one
from neurolearn import harness
from neurolearn.plotting import pyplot, save_figure

TANH = ["model.layers.0.neuron=\"tanh\"", "model.layers.1.neuron=\"tanh\""]

PRESETS: dict[str, list[tuple[str, str, list[str]]]] = {
    "dfa": [
        ("bp", "bp", []),
        ("dfa", "dfa", []),
        ("dfa_decay0.8", "dfa", ["train.lr_decay=0.8"]),
        ("dfa_lr3e-4", "dfa", ["train.lr=3e-4"]),
        ("bp_decay0.8", "bp", ["train.lr_decay=0.8"]),
        ("dfa_tanh", "dfa", TANH),
        ("dfa_lr2e-3", "dfa", ["train.lr=2e-3"]),
        ("dfa_tanh_decay0.9", "dfa", TANH + ["train.lr_decay=0.9"]),
    ],
    "drtp": [
        ("bp", "bp", []),
        ("drtp_margin1", "drtp", ["rule.params.margin=1.0"]),
        ("drtp_tanh", "drtp", TANH + ["rule.params.margin=0"]),
        ("drtp_tanh_lr1.5e-4", "drtp", TANH + ["rule.params.margin=0", "train.lr=1.5e-4"]),
        ("drtp_tanh_sgdm", "drtp", TANH + ["rule.params.margin=0", "train.optimizer=\"sgd\"",
                                           "train.momentum=0.9", "train.lr=1e-2"]),
        ("drtp_margin1_decay0.8", "drtp", ["rule.params.margin=1.0", "train.lr_decay=0.8"]),
    ],
    "full": [  # the candidates of the subset runs, on the full training set (--train-limit 60000)
        ("bp", "bp", []),
        ("dfa_tanh", "dfa", TANH),
        ("dfa_decay0.85", "dfa", ["train.lr_decay=0.85"]),
        ("tpsgd_scale2", "tpsgd", ["rule.params.scale=2.0"]),
        ("drtp_tanh", "drtp", TANH + ["rule.params.margin=0"]),
        ("bp_decay0.85", "bp", ["train.lr_decay=0.85"]),
        ("tpsgd_decay0.85", "tpsgd", ["train.lr_decay=0.85"]),
        ("tpsgd_scale2_decay0.85", "tpsgd", ["rule.params.scale=2.0", "train.lr_decay=0.85"]),
        ("drtp_tanh_decay0.85", "drtp", TANH + ["rule.params.margin=0", "train.lr_decay=0.85"]),
        ("tpsgd_scale4_decay0.85", "tpsgd", ["rule.params.scale=4.0", "train.lr_decay=0.85"]),
        ("tpsgd_scale4", "tpsgd", ["rule.params.scale=4.0"]),
        ("tpsgd_scale2_lr2e-3_decay0.8", "tpsgd", ["rule.params.scale=2.0", "train.lr=2e-3", "train.lr_decay=0.8"]),
    ],
    "cnn": [  # with --model cnn-mnist
        ("bp", "bp", []),
        ("tpsgd", "tpsgd", []),
        ("tpsgd_scale0.3", "tpsgd", ["rule.params.scale=0.3"]),
        ("tpsgd_lr3e-3", "tpsgd", ["train.lr=3e-3"]),
    ],
    "tpsgd": [
        ("bp", "bp", []),
        ("tpsgd", "tpsgd", []),
        ("tpsgd_lr2e-3", "tpsgd", ["train.lr=2e-3"]),
        ("tpsgd_scale2", "tpsgd", ["rule.params.scale=2.0"]),
        ("tpsgd_decay0.8", "tpsgd", ["train.lr_decay=0.8"]),
        ("tpsgd_tanh_s0.5", "tpsgd", TANH + ["rule.params.projection=\"uniform\"", "rule.params.scale=0.5"]),
    ],
}


def main() -> None:
    ap = harness.parser(__doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), required=True)
    ap.add_argument("--only", default=None, help="comma-separated variant names (default: all of the preset)")
    ap.add_argument("--model", default="mlp-mnist")
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--test-limit", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--tag", default="", help="suffix of the result files (keeps earlier runs of a preset)")
    args = harness.start(ap)
    if args.quick:
        args.train_limit, args.test_limit, args.epochs = 5000, 2000, 2
    only = set(args.only.split(",")) if args.only else None
    data = [f"data.options.train_limit={args.train_limit}", f"data.options.test_limit={args.test_limit}"]
    results: dict[str, dict] = {}
    for name, rule, sets in PRESETS[args.preset]:
        if only and name not in only:
            continue
        res = train_one(args.model, rule, False, sets + data, args.epochs)
        results[name] = res
        print(f"  {name:24s} final {res['test_accuracy']:.4f} best {max(res['curve']):.4f}  ({res['seconds']:.0f} s)"
              f"  curve {' '.join(f'{a:.4f}' for a in res['curve'])}", flush=True)
    bp = next((r["test_accuracy"] for n, r in results.items() if n == "bp"), None)
    print(f"\n{'variant':24s} {'final':>7s} {'best':>7s} {'gap to bp (pts)':>16s}")
    summary: dict[str, float] = {}
    for name, res in results.items():
        acc = res["test_accuracy"]
        summary[name] = round(acc, 4)
        gap = "" if bp is None or name == "bp" else f"{100 * (bp - acc):.2f}"
        if gap:
            summary[f"{name}_gap_pts"] = round(100 * (bp - acc), 2)
        print(f"{name:24s} {acc:7.4f} {max(res['curve']):7.4f} {gap:>16s}")
    tag = f"tp_tune_{args.preset}" + ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")
    harness.write_results(args, f"{tag}", {"args": vars(args), "results": results, "summary": summary})
    try:
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(5, 3.4))
        for name, res in results.items():
            ax.plot(range(1, len(res["curve"]) + 1), res["curve"], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{args.model}, {args.train_limit} train images")
        ax.legend(fontsize=7)
        save_figure(fig, harness.results_path(args, f"{tag}.png"), dpi=120)
    except ImportError:
        pass
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
