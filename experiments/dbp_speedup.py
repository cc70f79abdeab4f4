"""DBP vs BP with plain SGD on an MNIST MLP: epochs and wall time to reach BP's final training loss.

Both runs share the seed (same initial weights, same batch order), the script and the
model's bp settings (SGD lr 0.1, batch 128, lr decay 0.8 per epoch); DBP is BP with every
layer's input run through the decorrelation rule (``decor.enabled = true``, centring on;
ALGORITHMS.md §3, §6.4). The default is the rule's whitening end, κ = 1: the variance term
alone, so ``R`` stays diagonal and learns to centre and scale every input of every layer
to unit variance (inputs below ``min_variance = 0.2`` of the layer's mean variance are left
alone). On this MLP that is what speeds SGD up and generalises; adding the off-diagonal
term (κ = 0.9, 0.5) reaches BP's loss about as fast but tests 1-2 points lower
(docs/results/decorrelation.md). BP trains ``--epochs`` epochs; DBP trains the same
number and we read off the first epoch at which its (running) training loss is at or
below BP's final one, and the wall time it took to get there (the trainer's clock, test
evaluation included on both sides).

Prints a table per epoch, writes ``experiments/results/dbp_speedup.json`` and ``.png`` (loss
curves and layer 0's input correlation before/after), and as its last line the JSON
``{"epochs_ratio", "wall_ratio", "dbp_acc", "bp_acc"}`` (dbp_acc: DBP's test accuracy at the
end of training, like bp_acc).

    python experiments/dbp_speedup.py            # the full run (MNIST 60k, 784-500-500-10)
    python experiments/dbp_speedup.py --quick    # 10k training images, 4 epochs
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch


from neurolearn import harness
from neurolearn.decorrelation import input_correlation
from neurolearn.runs import build_run
from neurolearn.training import Trainer
from neurolearn.plotting import pyplot, save_figure



def share_or_rows(text: str) -> float | int:
    """``decor.subsample`` from the command line: a share (``0.25``) or a count of rows (``256``)."""
    value = float(text)
    return int(value) if value > 1 and value.is_integer() else value


def train(args, decor: bool, dataset=None):
    sets = [f"data.options.train_limit={args.train_limit}"] if args.train_limit else []
    sets += [f"model.layers.{i}.size={s}" for i, s in enumerate(args.hidden)]
    if decor:
        sets += ["decor.enabled=true", f"decor.lr={args.decor_lr}", f"decor.kappa={args.kappa}",
                 f"decor.subsample={args.subsample}", f"decor.layers={args.layers}"]
        sets += [f"decor.{kv}" for kv in args.decor]
    cfg = harness.resolve(model=args.model, rule="bp", overrides=sets, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, optimizer="sgd", seed=args.seed)
    run = build_run(cfg, dataset)
    trainer = Trainer(run, None, progress=False, log=lambda m: print(("DBP " if decor else "BP  ") + m, flush=True))
    corr_before = None
    probe = run.dataset.x_test[:1000]
    if decor:
        corr_before = input_correlation(run.model, run.model.encode(probe), 0, max_features=None)
    metrics = trainer.fit()
    corr_after = input_correlation(run.model, run.model.encode(probe), 0) if decor else None
    return run, metrics["epochs"], (corr_before, corr_after)


def first_epoch_reaching(history, target: float) -> int | None:
    for i, e in enumerate(history):
        if e["train_loss"] <= target:
            return i
    return None


def interpolated(history, target: float, key: str) -> float:
    """Fractional epoch (or wall time) at which the loss crosses ``target`` (linear in log-loss)."""
    i = first_epoch_reaching(history, target)
    if i is None:
        return math.inf
    if i == 0:
        prev_v, prev_l = 0.0, math.log(2.3026)  # chance-level cross-entropy before training
    else:
        prev_v, prev_l = history[i - 1][key] if key != "epoch" else history[i - 1]["epoch"], math.log(history[i - 1]["train_loss"])
    cur_v = history[i][key]
    cur_l = math.log(history[i]["train_loss"])
    frac = 1.0 if cur_l == prev_l else (prev_l - math.log(target)) / (prev_l - cur_l)
    return prev_v + min(max(frac, 0.0), 1.0) * (cur_v - prev_v)


def main(name: str = "dbp_speedup", doc: str = __doc__, **defaults) -> None:
    p = harness.parser(doc, quick="10k training images, 4 epochs")
    p.add_argument("--model", default="mlp-mnist")
    p.add_argument("--hidden", type=int, nargs="*", default=[500, 500])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-limit", type=int, default=0, help="0 = all 60k training images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--decor-lr", type=float, default=1e-2)
    p.add_argument("--kappa", type=float, default=1.0)
    p.add_argument("--subsample", type=share_or_rows, default=0.25,
                   help="rows per decorrelation update: a share of the batch (<= 1) or a number of rows (integer > 1)")
    p.add_argument("--layers", default='"all"', help='decorrelated layers: "all" or a TOML list, e.g. [0]')
    p.add_argument("--decor", nargs="*", default=["min_variance=0.2"], metavar="KEY=VALUE",
                   help="more decor.* settings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    p.set_defaults(**defaults)
    args = harness.start(p)
    if args.quick:
        args.train_limit, args.epochs = 10000, 4
    torch.set_num_threads(args.threads)

    bp_run, bp, _ = train(args, decor=False)
    dbp_run, dbp, (corr0, corr1) = train(args, decor=True, dataset=bp_run.dataset)

    target = bp[-1]["train_loss"]
    i = first_epoch_reaching(dbp, target)
    epochs_ratio = (dbp[i]["epoch"] / bp[-1]["epoch"]) if i is not None else math.inf
    wall_ratio = (dbp[i]["wall_time_s"] / bp[-1]["wall_time_s"]) if i is not None else math.inf
    step_ratio = (dbp[-1]["wall_time_s"] / len(dbp)) / (bp[-1]["wall_time_s"] / len(bp))

    print(f"\n{'epoch':>5} | {'BP loss':>8} {'BP acc':>7} {'BP s':>7} | {'DBP loss':>8} {'DBP acc':>7} {'DBP s':>7}")
    for a, b in zip(bp, dbp):
        print(f"{a['epoch']:5d} | {a['train_loss']:8.4f} {a['test_accuracy']:7.4f} {a['wall_time_s']:7.1f} | "
              f"{b['train_loss']:8.4f} {b['test_accuracy']:7.4f} {b['wall_time_s']:7.1f}")
    reached = f"epoch {dbp[i]['epoch']}" if i is not None else "never"
    print(f"BP final train loss {target:.4f}; DBP reaches it at {reached} "
          f"(interpolated {interpolated(dbp, target, 'epoch'):.2f} epochs); "
          f"time per epoch DBP/BP {step_ratio:.2f}")

    result = {
        "epochs_ratio": epochs_ratio,
        "wall_ratio": wall_ratio,
        "dbp_acc": dbp[-1]["test_accuracy"],
        "bp_acc": bp[-1]["test_accuracy"],
    }
    full = dict(result, args=vars(args), bp=bp, dbp=dbp, dbp_acc_at_match=dbp[i]["test_accuracy"] if i is not None else None,
                epoch_time_ratio=step_ratio, interpolated_epochs_ratio=interpolated(dbp, target, "epoch") / bp[-1]["epoch"])
    name = name + ("_quick" if args.quick else "")
    harness.write_results(args, f"{name}", full)
    plot(bp, dbp, corr0, corr1, harness.results_path(args, f"{name}.png"))
    print(json.dumps(result))


def plot(bp, dbp, corr0, corr1, path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(1, 4, figsize=(18, 4))
    for h, lab in ((bp, "BP"), (dbp, "DBP")):
        ax[0].semilogy([e["epoch"] for e in h], [e["train_loss"] for e in h], "o-", label=lab)
        ax[1].semilogy([e["wall_time_s"] for e in h], [e["train_loss"] for e in h], "o-", label=lab)
    ax[0].axhline(bp[-1]["train_loss"], color="gray", ls=":")
    ax[1].axhline(bp[-1]["train_loss"], color="gray", ls=":")
    ax[0].set(xlabel="epoch", ylabel="train loss (SGD)", title=path.stem)
    ax[1].set(xlabel="wall time (s)", ylabel="train loss")
    ax[0].legend()
    for a, c, t in ((ax[2], corr0, "layer-0 input correlation, before"), (ax[3], corr1, "after DBP training (x̃)")):
        if c is not None:
            im = a.imshow(c.numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
            a.set_title(t)
            fig.colorbar(im, ax=a, fraction=0.046)
    save_figure(fig, path, dpi=100)


if __name__ == "__main__":
    main()
