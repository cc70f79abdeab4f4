"""Throughput in synaptic events per second: torch engine vs Brian2 (numpy and cython targets).

One LIF network, the same weights and the same Bernoulli input in all three engines:
784 inputs (rate-coded MNIST-sized random images, mean rate 0.1 per step) -> 500 LIF
(subtract reset) -> 10 LI readout, dt = 1 ms, T steps, B samples (Brian2: B copies of the
network in one simulation, as it has no batch dimension).

Synaptic events = pre-synaptic spikes x fan-out (input spikes x 500 + hidden spikes x 10),
counted from each engine's own spikes; events/s = events / wall-clock seconds of the run.

What is timed: the torch engine's ``Network.run`` (no recording, no_grad, float32, best of 3, one
thread by default like Brian2's targets);
Brian2's ``Network.run`` of T steps *after* a first warm-up run of T steps in the same network.
The warm-up run contains code generation and, for the cython target, the compilation of the
extensions (30-50 s on an empty cache, more on a loaded machine); it is reported separately and
excluded from the rates, i.e. the cython figure is "cython with a warm cache".

Note: the backend delivers synaptic input through ``(summed)`` variables evaluated every step
over all synapses (that is what makes the per-step schedule exact); event-driven ``on_pre``
propagation would do work proportional to the spikes only, but arrives one step later.

    python experiments/bench_throughput.py [--quick]

Last stdout line: {"torch_over_brian2_cython": ..., "torch_over_brian2_numpy": ...}
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch


from neurolearn import harness
from neurolearn import Dense, LIFParams, LIParams, Network
from neurolearn.backends.brian2 import build_brian2, codegen_target
from neurolearn.plotting import pyplot, save_figure



def make_net() -> Network:
    torch.manual_seed(0)
    return Network([Dense(784, 500, LIFParams(tau_mem=20e-3), init_gain=1.0),
                    Dense(500, 10, LIParams(tau=20e-3))])


def events(x: torch.Tensor, hidden_spikes: float) -> float:
    return float(x.sum()) * 500 + float(hidden_spikes) * 10


def bench_torch(net: Network, x: torch.Tensor, repeats: int = 3) -> dict:
    with torch.no_grad():
        rec = net.run(x)
        spikes = float(rec.layers[0].act.sum())
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            net.run(x, record=False)
            times.append(time.perf_counter() - start)
    sec = min(times)
    ev = events(x, spikes)
    return dict(engine="torch (float32, CPU)", seconds=sec, events=ev, events_per_s=ev / sec, hidden_spikes=spikes,
                warmup_s=0.0)


def bench_brian2(net: Network, x: torch.Tensor, target: str) -> dict:
    steps = x.shape[0]
    twice = torch.cat([x, x])  # warm-up run on the first half, timed run on the second
    with codegen_target(target) as b2:
        model = build_brian2(net.double(), twice.double(), record=False)
        start = time.perf_counter()
        model.net.run(steps * model.dt * b2.second, namespace=model.namespace)
        warm = time.perf_counter() - start
        before = int(model.layers[0].monitors["spikes"].num_spikes)
        start = time.perf_counter()
        model.net.run(steps * model.dt * b2.second, namespace=model.namespace)
        sec = time.perf_counter() - start
        spikes = int(model.layers[0].monitors["spikes"].num_spikes) - before
    net.float()
    ev = events(x, spikes)
    return dict(engine=f"Brian2 {target}", seconds=sec, events=ev, events_per_s=ev / sec, hidden_spikes=spikes,
                warmup_s=warm, synapses=model.synapses)


def main() -> None:
    ap = harness.parser(__doc__, quick="T = 20, B = 2")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: Brian2's numpy/cython targets run on one core)")
    args = harness.start(ap)
    torch.set_num_threads(args.threads)
    steps = args.steps or (20 if args.quick else 100)
    batch = args.batch or (2 if args.quick else 8)
    gen = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((steps, batch, 784), 0.1), generator=gen)
    net = make_net()
    rows = [bench_torch(net, x), bench_brian2(net, x, "numpy"), bench_brian2(net, x, "cython")]
    torch_rate = rows[0]["events_per_s"]
    print(f"LIF 784-500-10, T = {steps}, B = {batch}, input rate 0.1/step; torch threads {torch.get_num_threads()}")
    print(f"{'engine':22s} {'events':>12s} {'run s':>8s} {'events/s':>12s} {'torch/this':>10s} {'warm-up s':>9s}")
    for r in rows:
        r["torch_over_this"] = torch_rate / r["events_per_s"]
        print(f"{r['engine']:22s} {r['events']:12.3e} {r['seconds']:8.3f} {r['events_per_s']:12.3e} "
              f"{r['torch_over_this']:10.1f} {r['warmup_s']:9.1f}")
    result = dict(steps=steps, batch=batch, rows=rows, torch_over_brian2_numpy=rows[0]["events_per_s"] / rows[1]["events_per_s"],
                  torch_over_brian2_cython=rows[0]["events_per_s"] / rows[2]["events_per_s"],
                  note="Brian2 rates exclude the warm-up run (code generation; cython compilation on a cold cache)")
    harness.write_results(args, "bench_throughput", result)
    plot(rows, harness.results_path(args, "bench_throughput.png"))
    print(json.dumps({"torch_over_brian2_cython": round(result["torch_over_brian2_cython"], 2),
                      "torch_over_brian2_numpy": round(result["torch_over_brian2_numpy"], 2)}))


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar([r["engine"] for r in rows], [r["events_per_s"] for r in rows], color=["C0", "C1", "C2"])
    ax.set_yscale("log")
    ax.set_ylabel("synaptic events / s")
    ax.set_title("LIF 784-500-10 throughput")
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main()
