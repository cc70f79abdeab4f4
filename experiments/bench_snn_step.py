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

bf16: every rule also runs with ``train.precision = "bf16"`` (bfloat16 autocast of the matrix
products, :func:`neurolearn.rules.base.precision_context`), interleaved with the fp32 steps; its
ratios are to fp32 BPTT. The accuracy cost: each rule trains ``--train-steps`` steps from the same
initial network in fp32 and in bf16 (same batches, same noise seed) and both are tested on the
first 2000 test images (fp32 evaluation); ``<rule>_bf16_acc_cost`` = fp32 accuracy − bf16 accuracy
(a short run: a check that bf16 does not break learning, not the final accuracy).

    python experiments/bench_snn_step.py [--quick] [--steps 20] [--rules bp,drtp,...] [--threads 1]

Last stdout line: {"anp_over_bptt": ..., "anp_mem_over_bptt": ..., "drtp_over_bptt": ...,
"drtp_bf16_over_bptt": ..., "<rule>_bf16_acc_cost": ..., ...} (ratios of CPU time per step and of
peak memory per step).
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



RULES = ("bp", "drtp", "dfa", "tpsgd", "anp", "np")


def setup(rules: list[str], limit: int, precisions: tuple[str, ...] = ("fp32",), lr: float | None = None):
    """The shared network and data, and per ``rule`` (fp32) or ``rule_bf16``: (rule with the model
    file's options and that precision, its optimizer, its copy of the network)."""
    run = build_run(harness.resolve(model="snn-mnist", rule="bp", overrides=[f"data.options.train_limit={limit}"]))
    states = {}
    for precision in precisions:
        for name in rules:
            cfg = harness.resolve(model="snn-mnist", rule=name, overrides=[f"data.options.train_limit={limit}"])
            net = copy.deepcopy(run.model)
            rule = make_rule(name, **cfg["rule"]["params"])
            rule.precision = precision
            rule.setup(net, run.objective, torch.Generator().manual_seed(0))
            opt = make_optimizer(net.parameters(), {"optimizer": "adam", "lr": lr or cfg["train"]["lr"]})
            states[name if precision == "fp32" else f"{name}_{precision}"] = (rule, opt, net)
    return run, states


@torch.no_grad()
def accuracy(run, net, n: int = 2000) -> float:
    x, y = run.dataset.x_test[:n], run.dataset.y_test[:n]
    torch.manual_seed(1)  # the same rate-coded spikes for every network
    pred = net.decode_output(net.run(net.encode(x), record=False).output)
    return float((pred.argmax(1) == y).float().mean())


def child(name: str, batch: int) -> dict:
    """Peak resident memory of one training step of rule ``name`` (MiB), in this fresh process."""
    torch.set_num_threads(1)
    run, states = setup([name], 2 * batch)
    rule, opt, net = states[name]
    x = run.model.encode(run.dataset.x_train[:batch])
    y = run.dataset.y_train[:batch]
    rule.train_step(net, x[:, :8], y[:8], run.objective, opt)  # warm-up: kernels, optimizer state
    before = harness.proc_status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    rule.train_step(net, x, y, run.objective, opt)
    return {"rule": name, "peak_mb": harness.proc_status_mib("VmHWM") - before}


def breakdown(run, batch: int, repeats: int) -> dict[str, float]:
    """Thread-CPU ms of the pieces the performance page names, for one training step of ``batch``
    images: the first layer's drive over the T steps as the dense product and from the input's events
    (``learning.workspace.event_drive``), and ANP's node noise for its 16 noisy copies, Gaussian and
    Bernoulli (packed bits)."""
    from neurolearn.learning.noise import draw_noise
    from neurolearn.learning.workspace import dense_drive, event_drive

    layer = run.model.layers[0]
    x = run.model.encode(run.dataset.x_train[:batch]).flatten(2)  # [T, B, 784] spikes
    weight_t = layer.weight.detach().t().contiguous()
    buf = torch.empty(16 * batch, layer.out_shape[0])
    gen = torch.Generator().manual_seed(0)
    pieces = {
        "first_layer_drive_dense": lambda: [dense_drive(layer, xt) for xt in x],
        "first_layer_drive_events": lambda: [event_drive(xt, weight_t, layer.bias) for xt in x],
        "noise_gaussian_16_copies": lambda: draw_noise(tuple(buf.shape), 0.1, "gaussian", gen, buf, out=buf),
        "noise_bernoulli_16_copies": lambda: draw_noise(tuple(buf.shape), 0.1, "bernoulli", gen, buf, out=buf),
    }
    out = {}
    with torch.no_grad():
        for name, fn in pieces.items():
            fn()
            times = []
            for _ in range(repeats):
                c0 = time.thread_time()
                fn()
                times.append((time.thread_time() - c0) * 1e3)
            out[name] = round(statistics.median(times), 3)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = harness.parser(__doc__, quick="5 timed steps, one memory probe per rule")
    ap.add_argument("--steps", type=harness.positive(int), default=20)
    ap.add_argument("--batch", type=harness.positive(int), default=128)
    ap.add_argument("--threads", type=harness.positive(int), default=1)
    ap.add_argument("--repeats", type=harness.positive(int), default=2, help="fresh processes per memory probe (the smallest kept)")
    ap.add_argument("--rules", default=",".join(RULES))
    ap.add_argument("--train-steps", type=harness.positive(int), default=60, help="steps of the fp32/bf16 accuracy comparison")
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
    run, states = setup(rules, 2000, ("fp32", "bf16"), lr=1e-4)
    xs, ys = run.dataset.x_train, run.dataset.y_train
    gen = torch.Generator().manual_seed(0)
    names = list(states)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for i in range(steps + 1):
        idx = torch.randint(0, xs.shape[0], (args.batch,), generator=gen)
        x, y = run.model.encode(xs[idx]), ys[idx]
        for name in names:
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
                                 capture_output=True, text=True, check=True, env={**os.environ, **harness.LITERAL_MALLOC})
            probes.append(json.loads(res.stdout.strip().splitlines()[-1])["peak_mb"])
        peak[name] = min(probes)
    # the accuracy cost of bf16: the same short training in both precisions, with the model file's lr
    acc = {}
    train_steps = 8 if args.quick else args.train_steps
    _, trained = setup(rules, 2000, ("fp32", "bf16"))
    order = torch.randperm(xs.shape[0], generator=torch.Generator().manual_seed(1))
    for name, (rule, opt, net) in trained.items():
        torch.manual_seed(2)  # the same encoded spikes for both precisions
        for i in range(train_steps):
            idx = order[(i * args.batch) % xs.shape[0]:][:args.batch]
            rule.train_step(net, net.encode(xs[idx]), ys[idx], run.objective, opt)
        acc[name] = accuracy(run, net)
    label = {"bp": "bptt", "bp_bf16": "bptt_bf16"}
    table = [f"{'rule':10s} {'wall ms':>9s} {'cpu ms':>9s} {'cpu/bptt':>9s} {'wall/bptt':>10s} {'peak MiB':>9s} "
             f"{'mem/bptt':>9s} {'acc':>9s}   (medians of {steps} interleaved steps, one thread, shared "
             f"machine; acc: test accuracy after {train_steps} training steps)"]
    for n in names:
        mem = f"{peak[n]:9.1f} {peak[n] / peak['bp']:9.2f}" if n in peak else f"{'':9s} {'':9s}"
        table.append(f"{label.get(n, n):10s} {med[n]:9.1f} {med_cpu[n]:9.1f} {med_cpu[n] / med_cpu['bp']:9.2f} "
                     f"{med[n] / med['bp']:10.2f} {mem} {acc[n]:9.3f}")
    summary: dict = {}
    for n in names:
        if n != "bp":
            summary[f"{n}_over_bptt"] = round(med_cpu[n] / med_cpu["bp"], 3)
            summary[f"{n}_wall_over_bptt"] = round(med[n] / med["bp"], 3)
        if n in peak and n != "bp":
            summary[f"{n}_mem_over_bptt"] = round(peak[n] / peak["bp"], 3)
    for n in rules:
        summary[f"{n}_bf16_acc_cost"] = round(acc[n] - acc[f"{n}_bf16"], 4)
    parts = breakdown(run, args.batch, 3 if args.quick else 10)
    table.append("pieces of a step, summed over its T steps (median ms): "
                 + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    record = {"ms_per_step": med, "cpu_ms_per_step": med_cpu, "peak_mb_per_step": peak, "batch": args.batch,
              "steps": steps, "threads": args.threads, "accuracy_after_train_steps": acc,
              "train_steps": train_steps, "breakdown_ms": parts, **summary}
    return harness.finish(args, "bench_snn_step", summary, record=record, table=table)


if __name__ == "__main__":
    main()
