"""Peak training memory of tpSGD vs backprop on a deep MLP (issue 5).

Each method trains the same network (same seed, same batches) in a **fresh subprocess**, so
one method's peak cannot hide the other's. Measured per method:

- ``peak_mb``: the process's peak resident set (``ru_maxrss``) during training (on CUDA:
  ``torch.cuda.max_memory_allocated``);
- ``setup_mb``: the same just before the first training step (interpreter, torch, data,
  weights, optimizer state);
- ``training_mb = peak_mb - setup_mb``: what training itself added.

Backprop keeps every layer's activations and the autograd graph until the backward pass;
tpSGD (``layerwise=True``) updates each layer during the forward pass under ``no_grad``, so
only one layer's activity and update exist at a time.

Prints a table, writes ``experiments/results/bench_memory_depth.json`` and a PNG, and as
its last line ``{"tpsgd_over_bp": peak ratio, "training_tpsgd_over_bp": ...}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from neurolearn import harness
from neurolearn.plotting import pyplot, save_figure



def worker(method: str, depth: int, width: int, batch: int, steps: int, device: str) -> dict:
    import torch

    from neurolearn.layers import Dense
    from neurolearn.network import Network
    from neurolearn.neurons import RateParams
    from neurolearn.objectives import Objective
    from neurolearn.rules import make_rule

    torch.set_num_threads(1)
    dev = torch.device(device)
    torch.manual_seed(0)
    sizes = [784] + [width] * depth
    layers = [Dense(a, b, RateParams("leaky_relu")) for a, b in zip(sizes[:-1], sizes[1:])]
    net = Network([*layers, Dense(width, 10)]).to(dev)
    objective = Objective("classification")
    rule = make_rule(method)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    rule.setup(net, objective, torch.Generator(device=dev).manual_seed(1))
    g = torch.Generator(device=dev).manual_seed(2)
    x = torch.rand(1, batch, 784, generator=g, device=dev)
    y = torch.randint(0, 10, (batch,), generator=g, device=dev)
    # momentum buffers exist after the first step: allocate them before measuring
    for p in net.parameters():
        opt.state[p]["momentum_buffer"] = torch.zeros_like(p)

    def mem() -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated(dev) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    setup = mem()
    loss = 0.0
    for _ in range(steps):
        out = rule.train_step(net, x, y, objective, opt)
        loss = float(out.loss.mean())
    return {"method": method, "setup_mb": setup, "peak_mb": mem(), "training_mb": mem() - setup, "loss": loss}


def main() -> None:
    ap = harness.parser(__doc__, quick="depth 4, width 512, batch 1024")
    ap.add_argument("--depth", type=int, default=8, help="hidden layers")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = harness.start(ap)
    if args.quick:
        args.depth, args.width, args.batch = 4, 512, 1024
    if args.worker:
        print(json.dumps(worker(args.worker, args.depth, args.width, args.batch, args.steps, args.device)))
        return
    rows = []
    for method in ("bp", "tpsgd"):
        cmd = [sys.executable, __file__, "--worker", method, "--depth", str(args.depth), "--width", str(args.width),
               "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    bp, tp = rows
    ratio = tp["peak_mb"] / bp["peak_mb"]
    train_ratio = tp["training_mb"] / bp["training_mb"] if bp["training_mb"] > 0 else float("nan")
    what = "CUDA max_memory_allocated" if args.device.startswith("cuda") else "peak RSS (fresh process each)"
    print(f"deep MLP 784-{args.depth}x{args.width}-10, batch {args.batch}, {args.steps} SGD steps; {what}")
    print(f"{'method':8s} {'setup MB':>10s} {'peak MB':>10s} {'training MB':>12s}")
    for r in rows:
        print(f"{r['method']:8s} {r['setup_mb']:10.1f} {r['peak_mb']:10.1f} {r['training_mb']:12.1f}")
    print(f"tpSGD / BP: peak {ratio:.3f}, training part {train_ratio:.3f}")
    result = {"config": vars(args), "rows": rows, "tpsgd_over_bp": ratio, "training_tpsgd_over_bp": train_ratio}
    harness.write_results(args, "bench_memory_depth", result)
    try:
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        names = [r["method"] for r in rows]
        ax.bar(names, [r["setup_mb"] for r in rows], label="before training")
        ax.bar(names, [r["training_mb"] for r in rows], bottom=[r["setup_mb"] for r in rows], label="training")
        ax.set_ylabel("peak memory (MB)")
        ax.set_title(f"{args.depth} hidden layers x {args.width}, batch {args.batch}")
        ax.legend()
        save_figure(fig, harness.results_path(args, "bench_memory_depth.png"), dpi=120)
    except ImportError:
        pass
    print(json.dumps({"tpsgd_over_bp": round(ratio, 4), "training_tpsgd_over_bp": round(train_ratio, 4)}))


if __name__ == "__main__":
    main()
