"""DANP vs ANP: activity-based node perturbation with and without input decorrelation.

Same seed, same network, same rule settings (the model file's ``[rules.anp]`` defaults);
DANP only adds ``decor.enabled = true``, so the decorrelation settings are the model file's
``[rules.anp.decor]``, exactly what ``neurolearn train --model M --rule anp --set
decor.enabled=true`` runs (mlp-digits: κ = 0, η_R = 1e-3, ALGORITHMS.md §5a; mlp-mnist: κ = 1,
min_variance 0.2, η_R = 1e-3); ``--kappa`` / ``--decor-lr`` override both. Runs sklearn digits
(mlp-digits) and MNIST (mlp-mnist; the full run is two 20-epoch runs with 32 draws, ~40 min
on one core). Prints a table, writes ``experiments/results/danp.json`` and ``danp.png`` (``danp_digits.*`` with
``--skip-mnist``), and
as its last line the JSON ``{"digits_anp", "digits_danp", "mnist_anp", "mnist_danp",
"mnist_gain"}`` (final test accuracies; gain = DANP − ANP on MNIST).

    python experiments/danp.py                   # digits (model default epochs) + full MNIST
    python experiments/danp.py --quick           # digits 20 epochs + MNIST 10k, 3 epochs
    python experiments/danp.py --mnist-epochs 5 --mnist-train-limit 20000
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


from neurolearn import harness
from neurolearn.runs import build_run
from neurolearn.training import Trainer
from neurolearn.plotting import pyplot, save_figure



def train(model: str, decor: bool, args, epochs: int | None, train_limit: int, dataset=None):
    sets = [f"data.options.train_limit={train_limit}"] if train_limit else []
    if decor:
        sets += ["decor.enabled=true"]
        sets += [f"decor.lr={args.decor_lr}"] if args.decor_lr is not None else []
        sets += [f"decor.kappa={args.kappa}"] if args.kappa is not None else []
    cfg = harness.resolve(model=model, rule="anp", overrides=sets, epochs=epochs, seed=args.seed)
    run = build_run(cfg, dataset)
    tag = ("DANP " if decor else "ANP  ") + model
    hist = Trainer(run, None, progress=False, log=lambda m: print(f"{tag}: {m}", flush=True)).fit()["epochs"]
    return run, hist


def main() -> None:
    p = harness.parser(__doc__, quick="digits 20 epochs, MNIST 10k images for 3 epochs")
    p.add_argument("--digits-epochs", type=int, default=None, help="default: mlp-digits' [rules.anp] epochs")
    p.add_argument("--mnist-epochs", type=int, default=None, help="default: mlp-mnist's [rules.anp] epochs")
    p.add_argument("--mnist-train-limit", type=int, default=0, help="0 = all 60k")
    p.add_argument("--decor-lr", type=float, default=None, help="default: the model file's [rules.anp.decor]")
    p.add_argument("--kappa", type=float, default=None, help="default: the model file's [rules.anp.decor]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-mnist", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    args = harness.start(p)
    if args.quick:
        args.digits_epochs, args.mnist_epochs, args.mnist_train_limit = 20, 3, 10000
    torch.set_num_threads(args.threads)

    hist: dict[str, list[dict]] = {}
    run, hist["digits_anp"] = train("mlp-digits", False, args, args.digits_epochs, 0)
    _, hist["digits_danp"] = train("mlp-digits", True, args, args.digits_epochs, 0, run.dataset)
    if not args.skip_mnist:
        run, hist["mnist_anp"] = train("mlp-mnist", False, args, args.mnist_epochs, args.mnist_train_limit)
        _, hist["mnist_danp"] = train("mlp-mnist", True, args, args.mnist_epochs, args.mnist_train_limit, run.dataset)

    result = {k: v[-1]["test_accuracy"] for k, v in hist.items()}
    if "mnist_anp" in result:
        result["mnist_gain"] = result["mnist_danp"] - result["mnist_anp"]
    print(f"\n{'run':12s} {'epochs':>6s} {'train loss':>10s} {'test acc':>8s} {'wall s':>7s}")
    for k, v in hist.items():
        print(f"{k:12s} {len(v):6d} {v[-1]['train_loss']:10.4f} {v[-1]['test_accuracy']:8.4f} {v[-1]['wall_time_s']:7.1f}")
    name = "danp" + ("_quick" if args.quick else "") + ("_digits" if args.skip_mnist else "")
    harness.write_results(args, f"{name}", dict(result, args=vars(args), history=hist))
    plot(hist, harness.results_path(args, f"{name}.png"))
    print(json.dumps(result))


def plot(hist: dict[str, list[dict]], path: Path) -> None:
    plt = pyplot()

    panels = [(p, t) for p, t in (("digits", "digits (mlp-digits)"), ("mnist", "MNIST (mlp-mnist)"))
              if any(k.startswith(p) for k in hist)]
    fig, ax = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    ax = ax[0]
    for k, v in hist.items():
        a = ax[[p for p, _ in panels].index(k.split("_")[0])]
        a.plot([e["epoch"] for e in v], [e["test_accuracy"] for e in v], "o-", label=k.split("_")[1].upper())
    for a, (_, t) in zip(ax, panels):
        a.set(xlabel="epoch", ylabel="test accuracy", title=t)
        a.legend()
    save_figure(fig, path, dpi=100)


if __name__ == "__main__":
    main()
