"""Time per training step of ANP (and NP, WP) against backprop on ``mlp-mnist`` (784-500-500-10
leaky ReLU, Adam), batch 128, same network, same batches, measured side by side in one run.

Steps of the rules are interleaved (BP, ANP, NP, WP, BP, ...) so that a change of machine load
hits all of them alike; the median time per step is reported. ANP runs a clean and a noisy
forward pass (one doubled batch) and one outer product per layer; BP runs one forward and a
backward pass.

    python experiments/bench_step_time.py [--quick] [--steps 60] [--threads 1]

Wall-clock medians give ``anp_over_bp``; the thread CPU time of each step (``time.thread_time``,
one thread) is reported beside it (``anp_over_bp_cpu``), as it is less disturbed by other jobs on
a shared machine.

Last stdout line: {"anp_over_bp": ..., "np_over_bp": ..., "wp_over_bp": ..., "anp_over_bp_cpu": ...}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from neurolearn.build import make_optimizer
from neurolearn.config import resolve_config
from neurolearn.runs import build_run
from neurolearn.rules import make_rule
from neurolearn.io import write_json
from neurolearn.plotting import pyplot, save_figure

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    steps = 15 if args.quick else args.steps
    torch.set_num_threads(args.threads)
    cfg = resolve_config(model="mlp-mnist", rule="anp", overrides=["data.options.train_limit=2000"])
    run = build_run(cfg)
    model, objective = run.model, run.objective
    init = {k: v.clone() for k, v in model.state_dict().items()}
    rules = ["bp", "anp", "np", "wp"]
    states = {}
    for name in rules:
        rule = make_rule(name)
        rule.setup(model, objective, torch.Generator().manual_seed(0))
        model.load_state_dict(init)
        states[name] = (rule, make_optimizer(model.parameters(), {"optimizer": "adam", "lr": 1e-4}),
                        {k: v.clone() for k, v in init.items()})
    xs = run.dataset.x_train
    ys = run.dataset.y_train
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {n: [] for n in rules}
    cpu: dict[str, list[float]] = {n: [] for n in rules}  # thread CPU time: robust to other jobs
    for i in range(steps + 3):
        idx = torch.randint(0, xs.shape[0], (args.batch,), generator=gen)
        x = model.encode(xs[idx])
        y = ys[idx]
        for name in rules:
            rule, opt, weights = states[name]
            model.load_state_dict(weights)  # each rule trains its own copy of the same network
            t0, c0 = time.perf_counter(), time.thread_time()
            rule.train_step(model, x, y, objective, opt)
            dt, dc = time.perf_counter() - t0, time.thread_time() - c0
            states[name] = (rule, opt, {k: v.clone() for k, v in model.state_dict().items()})
            if i >= 3:  # warm-up
                times[name].append(dt)
                cpu[name].append(dc)
    med = {n: statistics.median(t) * 1e3 for n, t in times.items()}
    med_cpu = {n: statistics.median(t) * 1e3 for n, t in cpu.items()}
    print(f"{'rule':6s} {'wall ms/step':>13s} {'ratio to bp':>12s} {'cpu ms/step':>12s} {'ratio to bp':>12s}  (medians)")
    for n in rules:
        print(f"{n:6s} {med[n]:13.2f} {med[n] / med['bp']:12.2f} {med_cpu[n]:12.2f} {med_cpu[n] / med_cpu['bp']:12.2f}")
    result = {"anp_over_bp": med["anp"] / med["bp"], "np_over_bp": med["np"] / med["bp"],
              "wp_over_bp": med["wp"] / med["bp"], "anp_over_bp_cpu": med_cpu["anp"] / med_cpu["bp"]}
    write_json(RESULTS / "bench_step_time.json", {"ms_per_step": med, "cpu_ms_per_step": med_cpu, "batch": args.batch, "steps": steps,
         "threads": args.threads, **result})
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(rules, [med[n] for n in rules], color=["grey", "C0", "C1", "C2"])
    ax.set_ylabel("ms per training step")
    ax.set_title(f"mlp-mnist, batch {args.batch}")
    save_figure(fig, RESULTS / "bench_step_time.png", dpi=120)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
