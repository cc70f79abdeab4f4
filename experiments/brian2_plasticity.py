"""A task learned inside Brian2 by on-synapse plasticity, beside the torch engine with the same rule.

Task: scikit-learn's digits (1437 train / 360 test, 64 inputs in [0, 1], 10 classes), a rate
MLP 64-32-10 (tanh hidden, linear readout), online SGD (one update per sample, as Brian2 has no
batch dimension), the same initial weights, the same sample order and learning rate in both
engines. Rules: activity-based node perturbation (ANP, the headline: broadcast loss
difference) and DRTP (projected label as per-neuron third factor); the anti-Hebbian
decorrelation plasticity is checked against its matrix formula.

The torch references below are written here, in plain torch, from the same equations
(see neurolearn/backends/brian2_plasticity.py). ANP's node noise is drawn by Brian2's own
random generator inside the simulation and by a torch generator in the reference, so the two
runs see different noise: their accuracies differ by the rule's noise-induced spread only.
Test accuracy of the Brian2-trained weights is measured by running them in Brian2
(run_brian2 on the whole test set) and, as a cross-check, in the torch engine.

    python experiments/brian2_plasticity.py            # 8 epochs ANP + DRTP, numpy target (a few minutes)
    python experiments/brian2_plasticity.py --quick    # 2 epochs

Last stdout line: {"brian2_acc": ..., "torch_acc": ...} (ANP test accuracies).
"""

from __future__ import annotations

import json
import time
from pathlib import Path


import numpy as np
import torch


from neurolearn import harness
from neurolearn import Dense, Network, RateParams
from neurolearn.backends.brian2 import run_brian2
from neurolearn.backends.brian2_plasticity import (
    anp_in_brian2,
    decorrelation_in_brian2,
    decorrelation_loss,
    drtp_feedback,
    drtp_in_brian2,
    epoch_orders,
)
from neurolearn.data import load_dataset
from neurolearn.plotting import pyplot, save_figure



def make_net(seed: int, hidden: int) -> Network:
    torch.manual_seed(seed)
    return Network([Dense(64, hidden, RateParams("tanh")), Dense(hidden, 10, None)]).double()


def forward(net: Network, x: torch.Tensor, noise: list[torch.Tensor] | None = None):
    """Pre-activations and activities of a static feed-forward net for one sample ``x`` [d]."""
    zs, acts, a = [], [x], x
    for k, layer in enumerate(net.layers):
        z = layer.weight @ a + layer.bias
        if noise is not None:
            z = z + noise[k]
        a = z if layer.neuron is None else torch.tanh(z)
        zs.append(z)
        acts.append(a)
    return zs, acts


def ce(z: torch.Tensor, label: int) -> float:
    return float(torch.logsumexp(z, 0) - z[label])


@torch.no_grad()
def anp_reference(net, x, y, *, epochs, lr, sigma, seed):
    """ANP in torch, online: g = N dL / sum ||dz||^2, W -= lr g dz a_clean^T, b -= lr g dz."""
    gen = torch.Generator().manual_seed(seed)
    units = sum(layer.units for layer in net.layers)
    for order in epoch_orders(len(x), epochs, seed):
        for n in order:
            zc, ac = forward(net, x[n])
            eps = [sigma * torch.randn(layer.units, generator=gen, dtype=x.dtype) for layer in net.layers]
            zn, _ = forward(net, x[n], eps)
            dz = [a - b for a, b in zip(zn, zc)]
            d_loss = ce(zn[-1], int(y[n])) - ce(zc[-1], int(y[n]))
            g = units * d_loss / sum(float((d**2).sum()) for d in dz)
            for k, layer in enumerate(net.layers):
                layer.weight -= lr * g * torch.outer(dz[k], ac[k])
                layer.bias -= lr * g * dz[k]


@torch.no_grad()
def drtp_reference(net, x, y, feedback, *, epochs, lr, seed):
    """DRTP in torch, online: hidden delta = (B^T y*) f'(z), readout delta = sigmoid(z) - y*."""
    for order in epoch_orders(len(x), epochs, seed):
        for n in order:
            zs, acts = forward(net, x[n])
            onehot = torch.zeros(10, dtype=x.dtype)
            onehot[int(y[n])] = 1.0
            deltas = [torch.as_tensor(feedback[k].T, dtype=x.dtype) @ onehot * (1 - torch.tanh(zs[k]) ** 2)
                      for k in range(len(net.layers) - 1)]
            deltas.append(torch.sigmoid(zs[-1]) - onehot)
            for k, layer in enumerate(net.layers):
                layer.weight -= lr * torch.outer(deltas[k], acts[k])
                layer.bias -= lr * deltas[k]


@torch.no_grad()
def torch_accuracy(net: Network, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((net.run(x.unsqueeze(0)).output[-1].argmax(1) == y).double().mean())


def brian2_accuracy(net: Network, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((run_brian2(net, x.unsqueeze(0)).output[-1].argmax(1) == y).double().mean())


def main() -> None:
    ap = harness.parser(__doc__, quick="2 epochs instead of 8")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", choices=["numpy", "cython"], default="numpy")
    ap.add_argument("--anp-lr", type=float, default=0.002)
    ap.add_argument("--drtp-lr", type=float, default=0.01)
    ap.add_argument("--sigma", type=float, default=1e-3)
    args = harness.start(ap)
    epochs = args.epochs or (2 if args.quick else 8)
    data = load_dataset("digits")
    xtr, ytr = data.x_train.double(), data.y_train
    xte, yte = data.x_test.double(), data.y_test
    rows = []

    # --- ANP ------------------------------------------------------------------------
    net_b = make_net(args.seed, args.hidden)
    net_t = make_net(args.seed, args.hidden)
    start = time.perf_counter()
    log = anp_in_brian2(net_b, xtr, ytr, epochs=epochs, lr=args.anp_lr, sigma=args.sigma, seed=args.seed,
                        target=args.target, evaluate=lambda n: torch_accuracy(n, xte, yte))
    anp_b2_s = time.perf_counter() - start
    start = time.perf_counter()
    anp_reference(net_t, xtr, ytr, epochs=epochs, lr=args.anp_lr, sigma=args.sigma, seed=args.seed)
    anp_t_s = time.perf_counter() - start
    anp_b2_acc = brian2_accuracy(net_b, xte, yte)
    rows.append(dict(rule="anp", brian2_acc=anp_b2_acc, brian2_acc_torch_engine=torch_accuracy(net_b, xte, yte),
                     torch_acc=torch_accuracy(net_t, xte, yte), brian2_s=anp_b2_s, torch_s=anp_t_s,
                     brian2_epoch_test_acc=log.epoch_eval, brian2_epoch_train_acc=log.epoch_train_acc))

    # --- DRTP -----------------------------------------------------------------------
    net_b = make_net(args.seed, args.hidden)
    net_t = make_net(args.seed, args.hidden)
    fb = drtp_feedback(net_b, 10, seed=args.seed)
    start = time.perf_counter()
    log = drtp_in_brian2(net_b, xtr, ytr, fb, epochs=epochs, lr=args.drtp_lr, seed=args.seed, target=args.target,
                         evaluate=lambda n: torch_accuracy(n, xte, yte))
    drtp_b2_s = time.perf_counter() - start
    start = time.perf_counter()
    drtp_reference(net_t, xtr, ytr, fb, epochs=epochs, lr=args.drtp_lr, seed=args.seed)
    drtp_t_s = time.perf_counter() - start
    w_diff = max(float((a.weight - b.weight).detach().abs().max()) for a, b in zip(net_b.layers, net_t.layers))
    rows.append(dict(rule="drtp", brian2_acc=brian2_accuracy(net_b, xte, yte),
                     brian2_acc_torch_engine=torch_accuracy(net_b, xte, yte), torch_acc=torch_accuracy(net_t, xte, yte),
                     brian2_s=drtp_b2_s, torch_s=drtp_t_s, max_weight_diff=w_diff,
                     brian2_epoch_test_acc=log.epoch_eval, brian2_epoch_train_acc=log.epoch_train_acc))

    # --- decorrelation (anti-Hebbian lateral plasticity) vs the matrix formula -------
    xd = (xtr[:300] - xtr[:300].mean(0)).numpy()
    xd = xd[:, xd.std(0) > 0.05][:, :16]
    R, losses = decorrelation_in_brian2(xd, lr=0.05, epochs=2, seed=args.seed, target=args.target)
    Rm = np.eye(xd.shape[1])
    for order in epoch_orders(len(xd), 2, args.seed):
        for n in order:
            xt = Rm @ xd[n]
            c = np.outer(xt, xt)
            Rm = Rm - 0.05 * (c - np.diag(np.diag(c))) @ Rm
    decor = dict(loss_before=decorrelation_loss(xd), loss_after=losses[-1],
                 max_abs_diff_to_matrix_rule=float(np.abs(R - Rm).max()))

    print(f"digits 64-{args.hidden}-10 tanh, online SGD, {epochs} epochs, Brian2 target {args.target}")
    print(f"{'rule':6s} {'brian2 acc':>10s} {'(torch eng.)':>12s} {'torch acc':>9s} {'brian2 s':>9s} {'torch s':>8s}")
    for r in rows:
        print(f"{r['rule']:6s} {r['brian2_acc']:10.4f} {r['brian2_acc_torch_engine']:12.4f} {r['torch_acc']:9.4f} "
              f"{r['brian2_s']:9.1f} {r['torch_s']:8.1f}")
    print(f"DRTP max |W_brian2 - W_torch| after training: {rows[1]['max_weight_diff']:.2e}")
    print(f"decorrelation: off-diagonal loss {decor['loss_before']:.3e} -> {decor['loss_after']:.3e}; "
          f"max |R_brian2 - R_matrix_rule| = {decor['max_abs_diff_to_matrix_rule']:.2e}")

    result = dict(task="digits", hidden=args.hidden, epochs=epochs, target=args.target, seed=args.seed,
                  anp_lr=args.anp_lr, drtp_lr=args.drtp_lr, sigma=args.sigma, rules=rows, decorrelation=decor,
                  brian2_acc=rows[0]["brian2_acc"], torch_acc=rows[0]["torch_acc"])
    harness.write_results(args, "brian2_plasticity", result)
    plot(rows, harness.results_path(args, "brian2_plasticity.png"))
    print(json.dumps({"brian2_acc": round(rows[0]["brian2_acc"], 4), "torch_acc": round(rows[0]["torch_acc"], 4)}))


def plot(rows, path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for r in rows:
        e = np.arange(1, len(r["brian2_epoch_test_acc"]) + 1)
        ax.plot(e, r["brian2_epoch_test_acc"], marker="o", label=f"{r['rule']} in Brian2")
        ax.axhline(r["torch_acc"], ls="--", c=ax.lines[-1].get_color(), label=f"{r['rule']} torch (final)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title("digits, on-synapse plasticity in Brian2")
    ax.legend(fontsize=7)
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main()
