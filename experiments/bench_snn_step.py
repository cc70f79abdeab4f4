"""Time and memory of one training step of every local rule against BPTT on ``snn-mnist``
(784-500-10 LIF, rate-coded input, T = 25, batch 128, Adam), issue 19.

Time: the rules (BPTT, DRTP, DFA, tpSGD, ANP with the model file's draws and frozen noise, NP)
each train their own copy of the same network on the same batches; their steps are interleaved
(BPTT, DRTP, ..., BPTT, ...) in one process so that a change of machine load hits all of them
alike. Wall and thread-CPU medians per step are reported; the ratios to BPTT use the CPU medians
(``time.thread_time``, one thread: less disturbed by other jobs on a shared machine) and the wall
ratios are printed beside them. Each rule runs with the options of the model file's
``[rules.<rule>]`` table (``neurolearn train --model snn-mnist --rule <rule>``).

Memory: each rule's step runs in a fresh child process with glibc's allocator made literal
(as in ``bench_memory_in_time.py``); the figure is the peak resident set during one step
(``VmHWM`` after ``clear_refs``) minus the resident set before it, after a warm-up step of the
same rule on a small batch: what the step itself needs (activations, buffers, autograd graph).

``--precision bf16`` is not built yet (issue 19 item 3): the bf16 ratios are reported as null.

    python experiments/bench_snn_step.py [--quick] [--steps 20] [--rules bp,drtp,...] [--threads 1]

Last stdout line: {"anp_over_bptt": ..., "anp_mem_over_bptt": ..., "drtp_over_bptt": ...,
"drtp_bf16_over_bptt": null, ...} (ratios of CPU time per step and of peak memory per step).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from neurolearn import harness
from neurolearn.build import make_optimizer
from neurolearn.rules import make_rule
from neurolearn.runs import build_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory_in_time import LITERAL_MALLOC, _status  # noqa: E402  (the same memory probe)

RULES = ("bp", "drtp", "dfa", "tpsgd", "anp", "np")


def setup(rules: list[str], limit: int):
    """The shared network and data, and per rule: (rule with the model file's options, optimizer, copy)."""
    run = build_run(harness.resolve(model="snn-mnist", rule="bp", overrides=[f"data.options.train_limit={limit}"]))
    states = {}
    for name in rules:
        cfg = harness.resolve(model="snn-mnist", rule=name, overrides=[f"data.options.train_limit={limit}"])
        net = copy.deepcopy(run.model)
        rule = make_rule(name, **cfg["rule"]["params"])
        rule.setup(net, run.objective, torch.Generator().manual_seed(0))
        states[name] = (rule, make_optimizer(net.parameters(), {"optimizer": "adam", "lr": 1e-4}), net)
    return run, states


def child(name: str, batch: int) -> dict:
    """Peak resident memory of one training step of rule ``name`` (MiB), in this fresh process."""
    torch.set_num_threads(1)
    run, states = setup([name], 2 * batch)
    rule, opt, net = states[name]
    x = run.model.encode(run.dataset.x_train[:batch])
    y = run.dataset.y_train[:batch]
    rule.train_step(net, x[:, :8], y[:8], run.objective, opt)  # warm-up: kernels, optimizer state
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    rule.train_step(net, x, y, run.objective, opt)
    return {"rule": name, "peak_mb": _status("VmHWM") - before}


def main(argv: list[str] | None = None) -> dict:
    ap = harness.parser(__doc__, quick="5 timed steps, one memory probe per rule")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="fresh processes per memory probe (the smallest kept)")
    ap.add_argument("--rules", default=",".join(RULES))
    ap.add_argument("--child", metavar="RULE", help=argparse.SUPPRESS)
    args = harness.start(ap, argv)
    if args.child:
        print(json.dumps(child(args.child, args.batch)))
        return {}
    rules = args.rules.split(",")
    if "bp" not in rules:
        raise SystemExit("--rules must include bp (BPTT, the reference)")
    torch.set_num_threads(args.threads)
    steps = 5 if args.quick else args.steps
    run, states = setup(rules, 2000)
    xs, ys = run.dataset.x_train, run.dataset.y_train
    gen = torch.Generator().manual_seed(0)
    wall: dict[str, list[float]] = {n: [] for n in rules}
    cpu: dict[str, list[float]] = {n: [] for n in rules}
    for i in range(steps + 1):
        idx = torch.randint(0, xs.shape[0], (args.batch,), generator=gen)
        x, y = run.model.encode(xs[idx]), ys[idx]
        for name in rules:
            rule, opt, net = states[name]
            t0, c0 = time.perf_counter(), time.thread_time()
            rule.train_step(net, x, y, run.objective, opt)
            if i:  # the first round warms up
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.thread_time() - c0)
    med = {n: statistics.median(v) * 1e3 for n, v in wall.items()}
    med_cpu = {n: statistics.median(v) * 1e3 for n, v in cpu.items()}
    peak = {}
    for name in rules:
        probes = []
        for _ in range(1 if args.quick else args.repeats):
            res = subprocess.run([sys.executable, __file__, "--child", name, "--batch", str(args.batch)],
                                 capture_output=True, text=True, check=True, env={**os.environ, **LITERAL_MALLOC})
            probes.append(json.loads(res.stdout.strip().splitlines()[-1])["peak_mb"])
        peak[name] = min(probes)
    label = {"bp": "bptt"}
    table = [f"{'rule':7s} {'wall ms':>9s} {'cpu ms':>9s} {'cpu/bptt':>9s} {'wall/bptt':>10s} {'peak MiB':>9s} "
             f"{'mem/bptt':>9s}   (medians of {steps} interleaved steps; one thread; shared machine)"]
    for n in rules:
        table.append(f"{label.get(n, n):7s} {med[n]:9.1f} {med_cpu[n]:9.1f} {med_cpu[n] / med_cpu['bp']:9.2f} "
                     f"{med[n] / med['bp']:10.2f} {peak[n]:9.1f} {peak[n] / peak['bp']:9.2f}")
    summary: dict = {}
    for n in rules:
        if n != "bp":
            summary[f"{n}_over_bptt"] = round(med_cpu[n] / med_cpu["bp"], 3)
            summary[f"{n}_wall_over_bptt"] = round(med[n] / med["bp"], 3)
            summary[f"{n}_mem_over_bptt"] = round(peak[n] / peak["bp"], 3)
    summary["drtp_bf16_over_bptt"] = None  # not built yet (see the docstring)
    record = {"ms_per_step": med, "cpu_ms_per_step": med_cpu, "peak_mb_per_step": peak, "batch": args.batch,
              "steps": steps, "threads": args.threads, "precision": "fp32", **summary}
    return harness.finish(args, "bench_snn_step", summary, record=record, table=table)


if __name__ == "__main__":
    main()
