"""Data-parallel step time: 1 process x 1 and x 2 threads against 2 processes x 1 thread (gloo).

Modes, on a 784-256-256-10 rate MLP (mlp-mnist with 256-unit layers), random inputs, global
batch B (default 256), SGD:

- ``grads``: ANP (4 draws) through the update seam, one all-reduce of the gradients per step
  (``neurolearn.distributed.GradSync``); each process holds B/2 samples;
- ``wp_scalar``: weight perturbation with K = 16 keyed draws on the whole batch, shared out over
  the processes, only the K loss differences exchanged (``wp_scalar_estimate``, 8K bytes);
- ``decor``: ANP with every layer decorrelated (DANP): the gradients' all-reduce plus the
  all-gather of the layer inputs for the R update.

For each: median ms per step after 3 warm-up steps, scaling efficiency E = T(1x2)/(2·T(2x1))
against the fair baseline on 2 cores (one process using both), time inside collectives, and
bytes and collectives per step per process. The machine is shared with other jobs: the load
averages are recorded with the results (run_info); compare modes within one run only.

    python experiments/bench_distributed.py            # 30 timed steps, B = 256
    python experiments/bench_distributed.py --quick    # 6 timed steps, B = 64

The last stdout line is JSON with ``wp_scalar_bytes_per_step`` (<= 8 x draws + 64),
``grad_bytes_per_step``, ``draws`` and the efficiency of every mode.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

from neurolearn import harness
from neurolearn.build import build_network, make_optimizer
from neurolearn.config import TRAIN_KEYS, load_model_file
from neurolearn.decorrelation import add_decorrelation
from neurolearn.distributed import SINGLE, Context, GradSync, init_file_store, shard_range, wp_scalar_estimate
from neurolearn.learning.grads import layer_params
from neurolearn.objectives import Objective
from neurolearn.rules import make_rule
from neurolearn.updates import Updater

MODES = ("grads", "wp_scalar", "decor")
DRAWS = 16


def network(decor: bool):
    cfg = load_model_file("mlp-mnist")
    for layer in cfg["layers"][:-1]:
        layer["size"] = 256
    torch.manual_seed(0)
    net = build_network(cfg, (784,))
    if decor:
        add_decorrelation(net, lr=1e-3, kappa=0.0)
    return net


def time_mode(mode: str, ctx: Context, batch: int, steps: int, warmup: int = 3) -> dict:
    net = network(mode == "decor")
    obj = Objective("classification")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, batch, 784, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    opt = make_optimizer(net.parameters(), dict(TRAIN_KEYS, optimizer="sgd", lr=1e-3))
    sync = GradSync(ctx)
    comm = [0.0]
    timed_call = sync.__call__

    def synchronise(grads, stats):  # time inside the collective (includes waiting for the other rank)
        t0 = time.perf_counter()
        timed_call(grads, stats)
        comm[0] += time.perf_counter() - t0

    updater = Updater(net, opt, synchronise=synchronise)
    lo, hi = shard_range(batch, ctx.rank, ctx.world)
    sizes = [b - a for a, b in (shard_range(batch, r, ctx.world) for r in range(ctx.world))]
    if ctx.active:
        sync.weight = (hi - lo) / batch
        updater.gather_batch = lambda t, dim: sync.gather(t, dim, sizes)
    rule = make_rule("anp", draws=4)
    rule.setup(net, obj, torch.Generator().manual_seed(2))
    if ctx.active:
        rule.shard = (lo, hi, batch)
    params = [p for _, _, p in layer_params(net)]

    def step(i: int) -> None:
        if mode == "wp_scalar":
            with torch.no_grad():  # its one all-reduce (8K bytes) is counted, not timed apart
                wp_scalar_estimate(net, lambda: obj.loss(net.decode_output(net(x)), y).mean(), params, 1e-3, DRAWS,
                                   (0, i), ctx, sync.traffic)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return
        rule.train_step(net, x[:, lo:hi], y[lo:hi], obj, updater)

    times = []
    for i in range(warmup + steps):
        if i == warmup:
            comm[0] = 0.0
            sync.traffic.bytes = sync.traffic.collectives = 0
        ctx.barrier()
        t0 = time.perf_counter()
        step(i)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"ms": 1e3 * statistics.median(times), "comm_ms": None if mode == "wp_scalar" else 1e3 * comm[0] / steps,
            "bytes_per_step": sync.traffic.bytes / steps, "collectives_per_step": sync.traffic.collectives / steps}


def worker(rank: int, store: str, batch: int, steps: int, out: str) -> None:
    torch.set_num_threads(1)
    ctx = init_file_store(store, rank, 2)
    try:
        res = {m: time_mode(m, ctx, batch, steps) for m in MODES}
        if rank == 0:
            torch.save(res, out)
    finally:
        ctx.close()


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> None:
    p = harness.parser(__doc__, quick="6 timed steps, batch 64")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    args = harness.start(p)
    if args.quick:
        args.steps, args.batch_size = 6, 64
    res: dict[str, dict] = {m: {} for m in MODES}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for m in MODES:
            res[m][f"1x{threads}"] = time_mode(m, SINGLE, args.batch_size, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.pt")
        mp.spawn(worker, args=(str(Path(tmp) / "store"), args.batch_size, args.steps, out), nprocs=2, join=True)
        two = torch.load(out, weights_only=False)
    for m in MODES:
        res[m]["2x1"] = two[m]
        res[m]["efficiency_vs_1x2"] = res[m]["1x2"]["ms"] / (2 * two[m]["ms"])
        res[m]["efficiency_vs_1x1"] = res[m]["1x1"]["ms"] / (2 * two[m]["ms"])
    n_params = sum(p.numel() for p in network(False).parameters())
    lines = [f"{'mode':10s} {'1x1 ms':>8s} {'1x2 ms':>8s} {'2x1 ms':>8s} {'E(1x2)':>7s} {'comm ms':>8s} "
             f"{'bytes/step':>11s} {'coll/step':>9s}"]
    for m in MODES:
        r = res[m]
        lines.append(f"{m:10s} {r['1x1']['ms']:8.2f} {r['1x2']['ms']:8.2f} {r['2x1']['ms']:8.2f} "
                     f"{r['efficiency_vs_1x2']:7.2f} {_ms(r['2x1']['comm_ms']):>8s} {r['2x1']['bytes_per_step']:11.0f} "
                     f"{r['2x1']['collectives_per_step']:9.1f}")
    lines.append("(the machine is shared with other jobs: see the load averages in run_info; E < 1 means one process "
                 "with 2 threads is faster)")
    summary = {"wp_scalar_bytes_per_step": res["wp_scalar"]["2x1"]["bytes_per_step"],
               "grad_bytes_per_step": res["grads"]["2x1"]["bytes_per_step"], "draws": DRAWS, "params": n_params,
               "batch": args.batch_size, **{f"efficiency_{m}": round(res[m]["efficiency_vs_1x2"], 3) for m in MODES}}

    def figure(path: Path) -> None:
        from neurolearn.plotting import pyplot, save_figure

        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for j, key in enumerate(("1x1", "1x2", "2x1")):
            ax.bar([i + 0.27 * (j - 1) for i in range(len(MODES))], [res[m][key]["ms"] for m in MODES], 0.27,
                   label=f"{key[0]} proc x {key[2]} thr")
        ax.set_xticks(range(len(MODES)), MODES)
        ax.set(ylabel=f"ms per step (global batch {args.batch_size})", title="data parallel on 2 cores (shared)")
        ax.legend()
        save_figure(fig, path, dpi=100)

    harness.finish(args, "bench_distributed", summary, record={"modes": res, "summary": summary, "args": vars(args)},
                   table=lines, figure=figure)


if __name__ == "__main__":
    main()
