"""Time per training step of DBP vs BP at the same batch (the cost of decorrelation).

One step = forward, backward, optimizer step and (DBP) the decorrelation update, through
``Rule.train_step`` exactly as the trainer calls it. BP and DBP steps are interleaved and
the median of many steps is taken, so load from other processes hits both alike. Models:
``mlp-mnist`` (784-500-500-10) with every layer decorrelated and with the input layer only,
and ``cnn-mnist`` (R folded into the conv kernels, 3 % of the batch per update, as in ``dbp_conv.py``).

Prints a table, writes ``experiments/results/bench_decor_overhead.json`` and ``.png``, and
as its last line the JSON ``{"ratio_mlp", "ratio_mlp_input", "ratio_cnn"}`` (median DBP
step time / median BP step time).

    python experiments/bench_decor_overhead.py            # batch 128, 60 timed steps each
    python experiments/bench_decor_overhead.py --quick    # 15 timed steps
    python experiments/bench_decor_overhead.py --cnn-subsample 256   # the conv case with 256 rows per update
"""

from __future__ import annotations

import copy
import json
import statistics
import time

import torch


from neurolearn import harness
from neurolearn.build import build_network, make_optimizer
from neurolearn.config import TRAIN_KEYS, load_model_file
from neurolearn.decorrelation import add_decorrelation
from neurolearn.objectives import Objective
from neurolearn.rules import make_rule
from dbp_speedup import share_or_rows
from neurolearn.plotting import pyplot, save_figure


CASES = {
    "ratio_mlp": ("mlp-mnist", dict(layers="all", subsample=0.5)),
    "ratio_mlp_input": ("mlp-mnist", dict(layers=[0], subsample=0.5)),
    "ratio_cnn": ("cnn-mnist", dict(layers="all", subsample=0.03)),
}


def setup(model_name: str, decor: dict | None, batch: int):
    torch.manual_seed(0)
    net = build_network(load_model_file(model_name), (1, 28, 28))
    if decor is not None:
        add_decorrelation(net, lr=1e-3, kappa=0.5, **decor)
    rule = make_rule("bp")
    rule.setup(net, Objective("classification"), torch.Generator().manual_seed(0))
    opt = make_optimizer(net.parameters(), dict(TRAIN_KEYS, optimizer="sgd", lr=0.01))
    return net, rule, opt


def bench(model_name: str, decor: dict, batch: int, steps: int, warmup: int = 3) -> dict:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, batch, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    obj = Objective("classification")
    runs = {"bp": setup(model_name, None, batch), "dbp": setup(model_name, copy.deepcopy(decor), batch)}
    times: dict[str, list[float]] = {"bp": [], "dbp": []}
    for i in range(warmup + steps):
        for key, (net, rule, opt) in runs.items():
            t0 = time.perf_counter()
            rule.train_step(net, x, y, obj, opt)
            if i >= warmup:
                times[key].append(time.perf_counter() - t0)
    bp, dbp = statistics.median(times["bp"]), statistics.median(times["dbp"])
    return {"bp_ms": 1e3 * bp, "dbp_ms": 1e3 * dbp, "ratio": dbp / bp}


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cnn-subsample", type=share_or_rows, default=None,
                   help="decor.subsample of the cnn-mnist case: a share of the batch (default 0.03) or a row count")
    args = harness.start(p)
    cases = {k: (m, dict(d)) for k, (m, d) in CASES.items()}
    if args.cnn_subsample is not None:
        cases["ratio_cnn"][1]["subsample"] = args.cnn_subsample
    if args.quick:
        args.steps = 15
    torch.set_num_threads(args.threads)
    res = {k: bench(m, d, args.batch_size, args.steps) for k, (m, d) in cases.items()}
    print(f"{'case':16s} {'model':10s} {'BP ms':>8s} {'DBP ms':>8s} {'ratio':>6s}")
    for k, r in res.items():
        print(f"{k:16s} {cases[k][0]:10s} {r['bp_ms']:8.2f} {r['dbp_ms']:8.2f} {r['ratio']:6.2f}")
    harness.write_results(args, "bench_decor_overhead", dict(res, args=vars(args)))
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ks = list(res)
    ax.bar([i - 0.2 for i in range(len(ks))], [res[k]["bp_ms"] for k in ks], 0.4, label="BP")
    ax.bar([i + 0.2 for i in range(len(ks))], [res[k]["dbp_ms"] for k in ks], 0.4, label="DBP")
    ax.set_xticks(range(len(ks)), [k.replace("ratio_", "") for k in ks])
    ax.set(ylabel=f"ms per step (batch {args.batch_size})", title="decorrelation overhead")
    ax.legend()
    save_figure(fig, harness.results_path(args, "bench_decor_overhead.png"), dpi=100)
    print(json.dumps({k: round(r["ratio"], 3) for k, r in res.items()}))


if __name__ == "__main__":
    main()
