"""tpSGD beside BPTT on row-sequential MNIST (issue 5).

``models/rnn-seqmnist.toml``: a tanh RNN (128 units) reads MNIST row by row (28 steps of 28
pixels); the class is read out at the last step. BPTT trains it through time; tpSGD gives
the recurrent layer the projected label as a target **at every time step** (its recurrent
weights learn from ``δ[t] h[t−1]^T``, no backpropagation through time) and the readout its
true error. Same network, seed and batches. Prints a table, writes
``experiments/results/tp_rnn.json`` and ``tp_rnn.png``, last line JSON
``{"bptt": acc, "tpsgd": acc, "gap_pts": ...}``.

``--quick``: 5 000 training / 2 000 test sequences, one epoch.
"""

from __future__ import annotations

import json

from tp_mnist import train_one
from neurolearn import harness
from neurolearn.plotting import pyplot, save_figure


def main() -> None:
    ap = harness.parser(__doc__)
    args = harness.start(ap)
    res = {name: train_one("rnn-seqmnist", rule, args.quick) for name, rule in (("bptt", "bp"), ("tpsgd", "tpsgd"))}
    print(f"{'rule':6s} {'test acc':>9s} {'epochs':>7s} {'time s':>8s}")
    for name, r in res.items():
        print(f"{name:6s} {r['test_accuracy']:9.4f} {r['epochs']:7d} {r['seconds']:8.0f}")
    gap = 100 * (res["bptt"]["test_accuracy"] - res["tpsgd"]["test_accuracy"])
    harness.write_results(args, "tp_rnn", {"quick": args.quick, "results": res})
    try:
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        for name, r in res.items():
            ax.plot(range(1, len(r["curve"]) + 1), r["curve"], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy")
        ax.set_title("row-sequential MNIST, tanh RNN 128")
        ax.legend()
        save_figure(fig, harness.results_path(args, "tp_rnn.png"), dpi=120)
    except ImportError:
        pass
    print(json.dumps({"bptt": round(res["bptt"]["test_accuracy"], 4), "tpsgd": round(res["tpsgd"]["test_accuracy"], 4),
                      "gap_pts": round(gap, 2)}))


if __name__ == "__main__":
    main()
