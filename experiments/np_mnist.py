"""BP vs ANP vs NP vs WP on the MNIST MLP (``mlp-mnist``: 784-500-500-10 leaky ReLU; issue #3).

Every rule trains the same network from the same seed with the settings its section of
``models/mlp-mnist.toml`` gives it, i.e. exactly what ``neurolearn train --model mlp-mnist
--rule <rule>`` runs:

- ``bp``: Adam 1e-3 decaying by 0.8 per epoch, batch 128, 10 epochs;
- ``anp``: 32 noisy copies per sample beside the clean one (``draws = 32``), Adam 3e-4
  decaying by 0.9, batch 128, 20 epochs, He init;
- ``np``: the same settings as ``anp`` (noise ``ε/σ²`` in place of ``δz/‖δz‖²``);
- ``wp``: one weight-noise draw per mini-batch, Adam 1e-3 decaying by 0.9, batch 32,
  30 epochs, He init.

Issue target: ANP >= 0.965 test accuracy, NP and WP beside it. Prints a table, writes
``experiments/results/np_mnist.json`` and ``.png``; the last stdout line is the JSON of the
final test accuracies ``{"bp", "anp", "np", "wp"}``.

    python experiments/np_mnist.py                  # all four (~40 min on one core)
    python experiments/np_mnist.py --rules bp,np    # a subset
    python experiments/np_mnist.py --quick          # 10k training images, 2 epochs each
"""

from __future__ import annotations

import json
import time

import torch


from neurolearn import harness
from np_digits import plot  # same figure: accuracy and loss per epoch
from neurolearn.runs import build_run
from neurolearn.training import Trainer

RULES = ("bp", "anp", "np", "wp")


def train(rule: str, args, dataset=None):
    sets = [f"data.options.train_limit={args.train_limit}"] if args.train_limit else []
    cfg = harness.resolve(model="mlp-mnist", rule=rule, overrides=sets, epochs=args.epochs, seed=args.seed)
    run = build_run(cfg, dataset)
    t0 = time.process_time()
    log = lambda m: print(f"{rule:4s}: {m}", flush=True)  # noqa: E731
    hist = Trainer(run, None, progress=False, log=log).fit()["epochs"]
    tr = cfg["train"]
    settings = {"epochs": len(hist), "batch": tr["batch_size"], "lr": tr["lr"], "lr_decay": tr.get("lr_decay", 1.0),
                **{k: v for k, v in cfg["rule"]["params"].items()}}
    return run, hist, time.process_time() - t0, settings


def main() -> None:
    p = harness.parser(__doc__, quick="10k training images, 2 epochs")
    p.add_argument("--rules", default=",".join(RULES), help="comma-separated subset of bp,anp,np,wp")
    p.add_argument("--epochs", type=int, default=None, help="override every rule's epochs")
    p.add_argument("--train-limit", type=int, default=0, help="0 = all 60k training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="", help="suffix of the result files")
    args = harness.start(p)
    if args.quick:
        args.train_limit, args.epochs = 10000, 2
    torch.set_num_threads(args.threads)

    hists, cpu, settings, dataset = {}, {}, {}, None
    for rule in args.rules.split(","):
        run, hists[rule], cpu[rule], settings[rule] = train(rule, args, dataset)
        dataset = run.dataset
    result = {k: h[-1]["test_accuracy"] for k, h in hists.items()}
    print(f"\nmlp-mnist, seed {args.seed}: final test accuracy with each rule's model-file settings")
    print(f"{'rule':5s} {'epochs':>6s} {'batch':>5s} {'lr':>7s} {'decay':>5s} {'draws':>5s} {'train loss':>10s} "
          f"{'test acc':>8s} {'best':>6s} {'cpu s':>7s}")
    for k, h in hists.items():
        s = settings[k]
        print(f"{k:5s} {s['epochs']:6d} {s['batch']:5d} {s['lr']:7.0e} {s['lr_decay']:5.2f} {s.get('draws', 1):5d} "
              f"{h[-1]['train_loss']:10.4f} {result[k]:8.4f} {max(e['test_accuracy'] for e in h):6.4f} {cpu[k]:7.0f}")
    name = "np_mnist" + ("_quick" if args.quick else "") + args.tag
    harness.write_results(args, f"{name}", dict(result, settings=settings, cpu_s=cpu, args=vars(args), history=hists))
    plot(hists, harness.results_path(args, f"{name}.png"), title="MNIST 784-500-500-10", ylim=(0.8, 1.0))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
