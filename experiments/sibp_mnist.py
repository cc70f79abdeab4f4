"""Semi-implicit backprop on MNIST 784-500-10 (ReLU), batch 100, 5 epochs, beside SGD and Adam.

1. Main run (same initial weights, same batch order for every method): SIBP (η = 1, λ = 1,
   5 CG iterations), SGD (lr 0.1) and Adam (lr 1e-3); the batch loss per iteration and the
   timed training seconds (evaluation excluded) are logged, the test accuracy per epoch.
2. Step-size sweep (reduced: the first ``--sweep-train`` training images, ``--sweep-epochs``
   epochs): SIBP over η and SGD over lr; the final training loss shows where each diverges.

    python experiments/sibp_mnist.py            # the full run (tens of minutes on a shared 2-core CPU)
    python experiments/sibp_mnist.py --quick    # 10 000 training images, 1 epoch, small sweep

Last stdout line: JSON {"sibp_test_acc", "sgd_test_acc", "adam_test_acc", "sibp_s_per_step", "sgd_s_per_step",
"sweep_sibp_max_stable_eta", "sweep_sgd_max_stable_lr"}.
"""

from __future__ import annotations

import json
import math
import time

import torch
import torch.nn.functional as F

from neurolearn import harness
from neurolearn.data import load_dataset
from neurolearn.runs import build_run
from neurolearn.plotting import pyplot, save_figure



def train(method: str, step: float, ds, x_train, y_train, epochs: int, seed: int, log_every: int = 1) -> dict:
    cfg = harness.resolve(model="mlp-mnist-sibp", rule="sibp" if method == "sibp" else "bp")
    cfg["train"]["seed"] = seed
    if method == "sibp":
        cfg["rule"]["params"]["eta"] = step
    run = build_run(cfg, ds)
    model, rule, objective = run.model, run.rule, run.objective
    opt = None
    if method == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=step)
    elif method == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=step)
    if opt is not None:
        rule.setup(model, objective, torch.Generator())
    n, bs = x_train.shape[0], 100
    losses, times, test_acc = [], [], []
    elapsed = 0.0
    diverged = False
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        for i in range(0, n - bs + 1, bs):
            idx = order[i:i + bs]
            x = model.encode(x_train[idx])
            t0 = time.perf_counter()
            out = rule.train_step(model, x, y_train[idx], objective, opt)
            elapsed += time.perf_counter() - t0
            loss = float(out.loss.mean())
            losses.append(loss)
            times.append(elapsed)
            if not math.isfinite(loss) or loss > 1e3:
                diverged = True
                break
        if diverged:
            break
        with torch.no_grad():
            test_acc.append(float((model.predict(ds.x_test).argmax(1) == ds.y_test).float().mean()))
    with torch.no_grad():
        logits = model.predict(x_train[:10000])
        train_loss = float(F.cross_entropy(logits, y_train[:10000]))
    return {"method": method, "step": step, "losses": losses, "times": times, "test_acc": test_acc,
            "final_train_loss": train_loss if math.isfinite(train_loss) else float("inf"),
            "diverged": diverged or not math.isfinite(train_loss), "train_s": elapsed,
            "s_per_step": elapsed / max(len(losses), 1)}


def smooth(v: list[float], k: int = 20) -> list[float]:
    out, acc = [], 0.0
    for i, x in enumerate(v):
        acc += x
        if i >= k:
            acc -= v[i - k]
        out.append(acc / min(i + 1, k))
    return out


def main() -> None:
    ap = harness.parser(__doc__, raw=True)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--sweep-train", type=int, default=10000)
    ap.add_argument("--sweep-epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = harness.start(ap)
    torch.set_num_threads(args.threads)
    ds = load_dataset("mnist")
    n_main = 10000 if args.quick else ds.x_train.shape[0]
    epochs = 1 if args.quick else args.epochs
    xs, ys = ds.x_train[:n_main], ds.y_train[:n_main]
    print(f"MNIST 784-500-10 ReLU, batch 100, {epochs} epochs on {n_main} images; threads {args.threads}", flush=True)
    main_runs = {}
    for method, step in (("sibp", 1.0), ("sgd", 0.1), ("adam", 1e-3)):
        r = train(method, step, ds, xs, ys, epochs, args.seed)
        main_runs[method] = r
        print(f"  {method:5s} step {step:g}: test acc per epoch {[round(a, 4) for a in r['test_acc']]}, "
              f"{r['train_s']:.1f} s training ({1e3 * r['s_per_step']:.1f} ms/step)", flush=True)

    sweep_eta = [0.1, 1.0, 10.0] if args.quick else [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
    sweep_lr = [0.1, 1.0, 10.0] if args.quick else [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
    xw, yw = ds.x_train[:args.sweep_train], ds.y_train[:args.sweep_train]
    sweep = {"sibp": [], "sgd": []}
    for method, steps in (("sibp", sweep_eta), ("sgd", sweep_lr)):
        for s in steps:
            r = train(method, s, ds, xw, yw, args.sweep_epochs, args.seed)
            sweep[method].append({k: r[k] for k in ("step", "final_train_loss", "test_acc", "diverged")})
            print(f"  sweep {method} {s:g}: train loss {r['final_train_loss']:.4g}  "
                  f"test acc {r['test_acc'][-1] if r['test_acc'] else float('nan'):.4f}  diverged {r['diverged']}",
                  flush=True)

    def max_stable(rows, tol=1.0):
        ok = [r["step"] for r in rows if not r["diverged"] and r["final_train_loss"] < tol]
        return max(ok) if ok else None

    print()
    print("| method | step | test acc (final) | train s | ms/step | batch loss, last 100 steps |")
    print("|---|---|---|---|---|---|")
    for m, r in main_runs.items():
        print(f"| {m} | {r['step']:g} | {r['test_acc'][-1]:.4f} | {r['train_s']:.1f} | {1e3 * r['s_per_step']:.1f} | "
              f"{sum(r['losses'][-100:]) / len(r['losses'][-100:]):.4f} |")
    print()
    print("| sweep | " + " | ".join(f"{r['step']:g}" for r in sweep["sibp"]) + " |")
    print("|---|" + "---|" * len(sweep["sibp"]))
    for m in ("sibp", "sgd"):
        print(f"| {m} train CE | " + " | ".join("div." if r["diverged"] else f"{r['final_train_loss']:.3g}"
                                             for r in sweep[m]) + " |")

    stem = "sibp_mnist" + ("_quick" if args.quick else "")
    summary = {"sibp_test_acc": main_runs["sibp"]["test_acc"][-1], "sgd_test_acc": main_runs["sgd"]["test_acc"][-1],
               "adam_test_acc": main_runs["adam"]["test_acc"][-1], "sibp_s_per_step": main_runs["sibp"]["s_per_step"],
               "sgd_s_per_step": main_runs["sgd"]["s_per_step"],
               "sweep_sibp_max_stable_eta": max_stable(sweep["sibp"]), "sweep_sgd_max_stable_lr": max_stable(sweep["sgd"])}
    harness.write_results(args, f"{stem}", {"summary": summary, "main": main_runs, "sweep": sweep,
                                                      "n_train": n_main, "epochs": epochs})
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for m, r in main_runs.items():
        axes[0].plot(smooth(r["losses"]), label=f"{m} ({r['step']:g})")
        axes[1].plot(r["times"], smooth(r["losses"]), label=m)
    axes[0].set(xlabel="iteration", ylabel="batch CE (moving mean of 20)", yscale="log", title="loss per iteration")
    axes[1].set(xlabel="training seconds", yscale="log", title="loss per second")
    for m, mk in (("sibp", "o"), ("sgd", "s")):
        st = [r["step"] for r in sweep[m]]
        lv = [min(r["final_train_loss"], 1e2) if not r["diverged"] else 1e2 for r in sweep[m]]
        axes[2].plot(st, lv, marker=mk, label=f"{m} ({'η' if m == 'sibp' else 'lr'})")
    axes[2].set(xscale="log", yscale="log", xlabel="step size (SIBP η / SGD lr)", ylabel="train CE after sweep (100 = diverged)",
                title=f"step-size sweep ({args.sweep_train} images, {args.sweep_epochs} epoch)")
    for ax in axes:
        ax.legend(fontsize=8)
    save_figure(fig, harness.results_path(args, f"{stem}.png"), dpi=120)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
