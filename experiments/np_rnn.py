"""Time-domain perturbation rules vs BPTT on recurrent nets (ALGORITHMS.md §5b, §6.6; issue #3).

Two tasks, each with the same seed and the same network for every rule:

- copy task (``rnn-copy``: tanh RNN H=64, one fixed 25-step sequence, 150 output bits):
  BPTT (``bp``) vs time-domain ANP, NP and WP; error bits per epoch, the first epoch with
  0 bits and the final count. Issue target: ANP reaches 0 error bits.
- Mackey-Glass (``rnn-mackey-glass``: tanh RNN H=100, predict 15 samples ahead): BPTT vs
  ANP; test NMSE. Issue target: ANP's NMSE within 2x of BPTT's.

Each rule runs with its model file's defaults (``[train]`` for BPTT, ``[rules.<name>]`` for
the perturbation rules: optimizer, lr, epochs, scale, norm); ``--quick`` shortens the runs.
Prints a table, writes ``experiments/results/np_rnn.json`` and ``.png``; the last stdout line
is the JSON ``{"copy_bits": {rule: final bits}, "mg_nmse": {rule: final NMSE},
"mg_anp_over_bptt": ...}``.

    python experiments/np_rnn.py                          # model-default epochs (long)
    python experiments/np_rnn.py --quick                  # copy 1000 / BPTT 100 epochs, MG 10 epochs
    python experiments/np_rnn.py --tasks copy --rules bp,anp
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch


from neurolearn import harness
from neurolearn.runs import build_run
from neurolearn.training import Trainer
from neurolearn.plotting import pyplot, save_figure

TASKS = {"copy": ("rnn-copy", "test_error_bits", ("bp", "anp", "np", "wp")),
         "mg": ("rnn-mackey-glass", "test_nmse", ("bp", "anp"))}


def train(model: str, rule: str, epochs: int | None, seed: int, verbose: bool, dataset=None):
    cfg = harness.resolve(model=model, rule=rule, epochs=epochs, seed=seed)
    run = build_run(cfg, dataset)
    tag = f"{model} {rule}"
    log = (lambda m: print(f"{tag}: {m}", flush=True)) if verbose else (lambda m: None)
    t0 = time.process_time()
    hist = Trainer(run, None, progress=False, log=log).fit()["epochs"]
    return run, hist, time.process_time() - t0, cfg["train"]


def main() -> None:
    p = harness.parser(__doc__, quick="copy 1000 epochs (BPTT 100), Mackey-Glass 10 epochs")
    p.add_argument("--tasks", default="copy,mg")
    p.add_argument("--rules", default="", help="comma-separated subset (default: copy bp,anp,np,wp; mg bp,anp)")
    p.add_argument("--copy-epochs", type=int, default=None, help="perturbation rules on copy (default: model file)")
    p.add_argument("--bptt-copy-epochs", type=int, default=None)
    p.add_argument("--mg-epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--tag", default="", help="suffix of the result files (e.g. one task per run)")
    args = harness.start(p)
    if args.quick:
        args.copy_epochs = args.copy_epochs or 1000
        args.bptt_copy_epochs = args.bptt_copy_epochs or 100
        args.mg_epochs = args.mg_epochs or 10
    torch.set_num_threads(args.threads)

    rows, hist = [], {}
    for task in args.tasks.split(","):
        model, metric, default_rules = TASKS[task]
        rules = [r for r in (args.rules.split(",") if args.rules else default_rules) if r in default_rules]
        dataset = None
        for rule in rules:
            epochs = (args.mg_epochs if task == "mg" else
                      args.bptt_copy_epochs if rule == "bp" else args.copy_epochs)
            run, h, cpu, tr = train(model, rule, epochs, args.seed, args.verbose, dataset)
            dataset = run.dataset
            vals = [e[metric] for e in h]
            first0 = next((e["epoch"] for e in h if e[metric] == 0), None) if task == "copy" else None
            row = {"task": task, "rule": rule, "optimizer": tr["optimizer"], "lr": tr["lr"], "epochs": len(h),
                   "final": vals[-1], "best": min(vals), "first_zero": first0, "cpu_s": cpu}
            rows.append(row)
            hist[f"{task}_{rule}"] = [{"epoch": e["epoch"], metric: e[metric], "train_loss": e["train_loss"]}
                                      for e in h]
            print(f"{task} {rule}: final {metric} {vals[-1]:.4g}, best {min(vals):.4g}, first 0 at {first0}, "
                  f"cpu {cpu:.0f} s", flush=True)

    print(f"\n{'task':5s} {'rule':5s} {'opt':5s} {'lr':>7s} {'epochs':>6s} {'final':>8s} {'best':>8s} "
          f"{'first 0':>7s} {'cpu s':>6s}   (copy: error bits; mg: test NMSE)")
    for r in rows:
        print(f"{r['task']:5s} {r['rule']:5s} {r['optimizer']:5s} {r['lr']:7.0e} {r['epochs']:6d} {r['final']:8.4g} "
              f"{r['best']:8.4g} {str(r['first_zero'] or '-'):>7s} {r['cpu_s']:6.0f}")
    result: dict = {"copy_bits": {r["rule"]: r["final"] for r in rows if r["task"] == "copy"},
                    "mg_nmse": {r["rule"]: r["final"] for r in rows if r["task"] == "mg"}}
    mg = result["mg_nmse"]
    if "bp" in mg and "anp" in mg:
        result["mg_anp_over_bptt"] = mg["anp"] / mg["bp"]
    name = "np_rnn" + ("_quick" if args.quick else "") + args.tag
    harness.write_results(args, f"{name}", dict(result, rows=rows, args=vars(args), history=hist))
    plot(hist, harness.results_path(args, f"{name}.png"))
    print(json.dumps(result))


def plot(hist: dict[str, list[dict]], path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for k, v in hist.items():
        task, rule = k.split("_", 1)
        metric = "test_error_bits" if task == "copy" else "test_nmse"
        a = ax[0] if task == "copy" else ax[1]
        a.plot([e["epoch"] for e in v], [e[metric] for e in v], label="BPTT" if rule == "bp" else rule.upper())
    ax[0].set(xlabel="epoch", ylabel="test error bits", title="copy task (rnn-copy)", xscale="log")
    ax[1].set(xlabel="epoch", ylabel="test NMSE", title="Mackey-Glass (rnn-mackey-glass)", yscale="log")
    for a in ax:
        if a.get_lines():
            a.legend()
    save_figure(fig, path, dpi=100)


if __name__ == "__main__":
    main()
