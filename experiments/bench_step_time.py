"""Time per training step of ANP (and NP, WP) against backprop on ``mlp-mnist`` (784-500-500-10
leaky ReLU, Adam), batch 128, same network, same batches, measured side by side in one run.

Each rule trains its own copy of the network; the steps are interleaved (BP, ANP, NP, WP,
ANP with Bernoulli noise, BP, ...) so that a change of machine load hits all of them alike; the median time per step is
reported. ANP runs a clean and a noisy
forward pass (one doubled batch) and one outer product per layer; BP runs one forward and a
backward pass.

    python experiments/bench_step_time.py [--quick] [--steps 300] [--threads 1] [--device cuda]

On CUDA every step ends with ``torch.cuda.synchronize()`` inside the timed region (kernels are
asynchronous); results go to ``bench_step_time_cuda.json`` so the CPU record is kept.

Wall-clock medians give ``anp_over_bp``; the thread CPU time of each step (``time.thread_time``,
one thread) is reported beside it (``anp_over_bp_cpu``), as it is less disturbed by other jobs on
a shared machine.

``bp_foreach`` and ``anp_foreach`` are BP and ANP with the multi-tensor Adam that
:func:`make_optimizer` built before it used torch's fused kernel (the absolute gain of either step).

``anp_bernoulli`` is ANP with ``noise = "bernoulli"`` (``±σ`` from packed random bits) instead of
the default Gaussian noise: a measured option, not the model's default (switching a model's
default needs an accuracy check of that model).

Every step uses :func:`neurolearn.build.make_optimizer`'s Adam (torch's fused kernel where it has
one, else foreach); ``optimizer_ms`` times one Adam step on the network's parameters with the
fused, foreach and per-parameter implementations (the same work in BP's and ANP's steps).

The control: ``bp_plain`` and ``anp_plain`` are the same two steps written directly in torch
(``F.linear``, ``leaky_relu``, cross-entropy, torch's fused Adam on the same weights; no framework
code), timed in the same loop. ``anp_plain_over_bp_plain`` is the floor of the ratio on this
machine; the framework's own overhead is the difference between the two ratios.

Then the work inside the steps, each piece timed alone (``breakdown_ms``): BP's and ANP's
matrix products (equal multiply-adds: ANP's doubled layer-2 drive replaces BP's layer-2
forward and input gradient) and ANP's Gaussian noise draws.

Last stdout line: {"anp_over_bp": ..., "np_over_bp": ..., "wp_over_bp": ..., "anp_over_bp_cpu": ...,
"anp_plain_over_bp_plain": ..., "anp_bernoulli_over_bp": ..., "anp_foreach_over_bp_foreach": ..., ...}.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from neurolearn import harness
from neurolearn.build import make_optimizer
from neurolearn.learning.noise import rademacher
from neurolearn.runs import build_run
from neurolearn.rules import make_rule
from neurolearn.plotting import pyplot, save_figure



def plain_steps(weights: list[torch.Tensor], biases: list[torch.Tensor], sigma: float = 1e-3):
    """BP and ANP steps on an MLP in plain torch (leaky ReLU hidden layers, linear readout, CE,
    Adam as :func:`make_optimizer` builds it), each on its own copy of ``weights``/``biases``; ANP as in neurolearn: the first
    layer's drive shared, a doubled batch [clean; noisy] after it, c = N, network-wide norm."""
    def copies():
        ps = [t.detach().clone().requires_grad_() for t in (*weights, *biases)]
        return ps[:len(weights)], ps[len(weights):], make_optimizer(ps, {"optimizer": "adam", "lr": 1e-4})

    bw, bb, bopt = copies()
    aw, ab, aopt = copies()
    last = len(weights) - 1  # the linear readout

    def bp(x: torch.Tensor, y: torch.Tensor) -> None:
        bopt.zero_grad(set_to_none=True)
        h = x
        for k, (w, b) in enumerate(zip(bw, bb)):
            h = F.linear(h, w, b)
            h = h if k == last else F.leaky_relu(h, 0.01)
        F.cross_entropy(h, y).backward()
        bopt.step()

    def anp(x: torch.Tensor, y: torch.Tensor) -> None:
        aopt.zero_grad(set_to_none=True)
        n = x.shape[0]
        with torch.no_grad():
            drive = F.linear(x, aw[0], ab[0])  # the first layer's drive is the same in both copies
            z = torch.cat([drive, drive + torch.randn_like(drive) * sigma])
            ins, diffs = [x], [z[n:] - z[:n]]
            for k in range(1, len(aw)):
                h = F.leaky_relu(z, 0.01)
                ins.append(h[:n])
                z = F.linear(h, aw[k], ab[k])
                z[n:] += torch.randn_like(z[n:]) * sigma
                diffs.append(z[n:] - z[:n])
            loss = F.cross_entropy(z, torch.cat([y, y]), reduction="none")
            norm = sum(d.square().sum(1) for d in diffs)
            coef = ((loss[n:] - loss[:n]) * sum(d.shape[1] for d in diffs) / norm / n)[:, None]
            for w, b, d, xin in zip(aw, ab, diffs, ins):
                g = d * coef
                w.grad, b.grad = g.t() @ xin, g.sum(0)
        aopt.step()

    return {"bp_plain": bp, "anp_plain": anp}


def op_breakdown(weights: list[torch.Tensor], batch: int, sync, repeats: int = 200) -> dict[str, float]:
    """Median ms of each piece of work the two steps do, timed in isolation (a 784-500-500-10 MLP):
    BP's forward, weight gradients and layer-2 input gradient against ANP's shared layer-1 drive,
    doubled layer-2 drive and outer products, plus ANP's noise draws (Gaussian, and Bernoulli
    from packed bits) and the doubled read-out's drive in its two forms (``x̃ Wᵀ``, ``W x̃ᵀ``)."""
    w1, w2 = weights[0], weights[1]
    x = torch.rand(batch, w1.shape[1], device=w1.device)
    h = torch.randn(batch, w2.shape[1], device=w1.device)
    h2 = torch.cat([h, h])
    g1 = torch.randn(batch, w1.shape[0], device=w1.device)
    g2 = torch.randn(batch, w2.shape[0], device=w1.device)
    noise = torch.empty(batch, w1.shape[0] + w2.shape[0] + weights[2].shape[0], device=w1.device)
    w3 = weights[2]
    gen = torch.Generator(device=w1.device).manual_seed(0)
    ops = {
        "layer1_drive": lambda: F.linear(x, w1),
        "layer2_drive": lambda: F.linear(h, w2),
        "layer2_drive_doubled": lambda: F.linear(h2, w2),
        "layer1_weight_grad": lambda: g1.t() @ x,
        "layer2_weight_grad": lambda: g2.t() @ h,
        "layer2_input_grad": lambda: g2 @ w2,
        "noise_draws": lambda: noise.normal_(generator=gen),
        "noise_draws_bernoulli": lambda: rademacher(tuple(noise.shape), 1.0, gen, noise),
        "readout_drive_doubled": lambda: F.linear(h2, w3),
        "readout_drive_doubled_wxt": lambda: torch.mm(w3, h2.t()),
    }
    out = {}
    for name, op in ops.items():
        for _ in range(10):
            op()
        times = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            op()
            sync()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times) * 1e3
    out["bp_matmuls"] = (out["layer1_drive"] + out["layer2_drive"] + out["layer1_weight_grad"]
                         + out["layer2_weight_grad"] + out["layer2_input_grad"])
    out["anp_matmuls"] = (out["layer1_drive"] + out["layer2_drive_doubled"] + out["layer1_weight_grad"]
                          + out["layer2_weight_grad"])
    return out


def optimizer_times(model: torch.nn.Module, sync, repeats: int = 100) -> dict[str, float]:
    """Median ms of one Adam step on ``model``'s parameters (fresh copies, random gradients):
    torch's fused kernel, the multi-tensor (foreach) one and the per-parameter loop."""
    out = {}
    for mode in ("fused", "foreach", "loop"):
        ps = [p.detach().clone().requires_grad_() for p in model.parameters()]
        for p in ps:
            p.grad = torch.randn_like(p)
        try:
            opt = torch.optim.Adam(ps, lr=1e-4, **({"fused": True} if mode == "fused" else {"foreach": mode == "foreach"}))
        except RuntimeError:  # no fused kernel on this device
            continue
        times = []
        for i in range(repeats + 5):
            sync()
            t0 = time.perf_counter()
            opt.step()
            sync()
            if i >= 5:
                times.append(time.perf_counter() - t0)
        out[mode] = statistics.median(times) * 1e3
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = harness.parser(__doc__, quick="fewer steps")
    ap.add_argument("--steps", type=harness.positive(int), default=300)  # 60 left run-to-run swings of 0.05 in the ratio
    ap.add_argument("--batch", type=harness.positive(int), default=128)
    ap.add_argument("--threads", type=harness.positive(int), default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = harness.start(ap, argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible to torch here")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    steps = 15 if args.quick else args.steps
    torch.set_num_threads(args.threads)
    cfg = harness.resolve(model="mlp-mnist", rule="anp", overrides=["data.options.train_limit=2000"],
                         device=args.device)
    run = build_run(cfg)
    model, objective = run.model, run.objective
    rules = ["bp", "anp", "np", "wp", "anp_bernoulli", "bp_foreach", "anp_foreach"]
    states = {}
    for name in rules:  # each rule trains its own copy of the same network
        net = copy.deepcopy(model)
        rule = make_rule("anp", noise="bernoulli") if name == "anp_bernoulli" else make_rule(name.split("_")[0])
        rule.setup(net, objective, torch.Generator(device=device).manual_seed(0))
        opt = (torch.optim.Adam(net.parameters(), lr=1e-4, foreach=True) if name.endswith("_foreach")
               else make_optimizer(net.parameters(), {"optimizer": "adam", "lr": 1e-4}))
        states[name] = (rule, opt, net)
    xs = run.dataset.x_train.to(device)
    ys = run.dataset.y_train.to(device)
    gen = torch.Generator().manual_seed(0)
    plain = plain_steps([layer.weight for layer in model.layers], [layer.bias for layer in model.layers])
    names = rules + list(plain)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}  # thread CPU time: robust to other jobs
    for i in range(steps + 3):
        idx = torch.randint(0, xs.shape[0], (args.batch,), generator=gen).to(device)
        x = model.encode(xs[idx])
        y = ys[idx]
        flat = x[0].flatten(1)  # the plain steps' input [B, 784]
        for name in names:
            sync()
            if name in plain:
                t0, c0 = time.perf_counter(), time.thread_time()
                plain[name](flat, y)
            else:
                rule, opt, net = states[name]
                t0, c0 = time.perf_counter(), time.thread_time()
                rule.train_step(net, x, y, objective, opt)
            sync()
            dt, dc = time.perf_counter() - t0, time.thread_time() - c0
            if i >= 3:  # warm-up
                times[name].append(dt)
                cpu[name].append(dc)
    med = {n: statistics.median(t) * 1e3 for n, t in times.items()}
    med_cpu = {n: statistics.median(t) * 1e3 for n, t in cpu.items()}
    print(f"{'rule':9s} {'wall ms':>10s} {'ratio to bp':>12s} {'cpu ms':>12s} {'ratio to bp':>12s}  (medians per step; *_plain vs bp_plain, *_foreach vs bp_foreach)")
    for n in names:
        ref = "bp_plain" if n in plain else "bp_foreach" if n.endswith("_foreach") else "bp"
        print(f"{n:9s} {med[n]:10.2f} {med[n] / med[ref]:12.2f} {med_cpu[n]:12.2f} {med_cpu[n] / med_cpu[ref]:12.2f}")
    parts = op_breakdown([layer.weight.detach() for layer in model.layers], args.batch, sync)
    print("\nwork of one step, timed in isolation (median ms):")
    for name, ms in parts.items():
        print(f"  {name:26s} {ms:7.3f}")
    optimizer_ms = optimizer_times(model, sync)
    print("\none Adam step on the network's parameters (median ms): "
          + ", ".join(f"{k} {v:.3f}" for k, v in optimizer_ms.items()))
    result = {"anp_over_bp": med["anp"] / med["bp"], "np_over_bp": med["np"] / med["bp"],
              "wp_over_bp": med["wp"] / med["bp"], "anp_over_bp_cpu": med_cpu["anp"] / med_cpu["bp"],
              "anp_plain_over_bp_plain": med["anp_plain"] / med["bp_plain"],
              "anp_bernoulli_over_bp": med["anp_bernoulli"] / med["bp"],
              "anp_bernoulli_over_bp_cpu": med_cpu["anp_bernoulli"] / med_cpu["bp"],
              "anp_foreach_over_bp_foreach": med["anp_foreach"] / med["bp_foreach"],
              "bp_fused_over_bp_foreach_cpu": med_cpu["bp"] / med_cpu["bp_foreach"],
              "anp_fused_over_anp_foreach_cpu": med_cpu["anp"] / med_cpu["anp_foreach"]}
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    harness.write_results(args, f"bench_step_time{suffix}", {"device": str(device), "ms_per_step": med, "cpu_ms_per_step": med_cpu, "breakdown_ms": parts,
                "optimizer_ms": optimizer_ms, "optimizer": type(states["bp"][1]).__name__
                + (" fused" if states["bp"][1].defaults.get("fused") else " foreach"),
                "batch": args.batch, "steps": steps, "threads": args.threads, **result})
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(names, [med[n] for n in names], color=["grey", "C0", "C1", "C2", "C4", "dimgrey", "C5", "silver", "C9"])
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylabel("ms per training step")
    ax.set_title(f"mlp-mnist, batch {args.batch}")
    save_figure(fig, harness.results_path(args, f"bench_step_time{suffix}.png"), dpi=120)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
