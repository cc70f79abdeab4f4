"""Time to accuracy: wall and CPU seconds for every rule to reach a fixed test accuracy, beside BP/BPTT.

Each rule trains its model with the model file's defaults for that rule (``[rules.<rule>]``:
lr, epochs, draws, ...) through the normal trainer (:class:`neurolearn.training.Trainer`),
which evaluates the test set after every epoch. The run stops at the first epoch whose
test accuracy reaches the target (``mlp-mnist`` 0.96, ``snn-mnist`` 0.95); a run that does
not reach it within its budget (the rule's configured epochs, or ``--epochs``, and
``--budget-s`` seconds of wall time) says so, with the best accuracy it reached.

Times: the trainer's cumulative ``wall_time_s`` (training plus the per-epoch test
evaluation, as a user would see it) and the process CPU seconds over the same epochs
(``time.process_time``; less sensitive to a shared machine's load). Rules run one after the
other in one process, BP/BPTT first on each model; ratios to BP/BPTT are taken inside the run.
One torch thread by default.

    python experiments/time_to_accuracy.py                    # mlp-mnist and snn-mnist, every rule (hours)
    python experiments/time_to_accuracy.py --models mlp-mnist --rules bp,drtp
    python experiments/time_to_accuracy.py --quick            # 3000 training / 1000 test samples, 2 epochs (minutes)

After every rule the rows so far are written to ``time_to_accuracy_partial.json`` (atomically), so a
run stopped part-way keeps what it measured.

``--quick`` trains on the first 3000 training samples (1000 test samples) for at most 2
epochs per rule against lower targets (mlp-mnist 0.85, snn-mnist 0.75): a check that every
rule runs and the table is produced, not a measurement.

Last stdout line: JSON {"<model>/<rule>": {"reached", "epochs", "wall_s", "cpu_s", "best_acc",
"wall_over_bp"}}.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from neurolearn import harness
from neurolearn.data import load_dataset
from neurolearn.runs import build_run
from neurolearn.training import Trainer

TARGETS = {"mlp-mnist": 0.96, "snn-mnist": 0.95}
QUICK_TARGETS = {"mlp-mnist": 0.85, "snn-mnist": 0.75}
#: the rules trained on each model (BP/BPTT first: the reference of the ratios)
RULES = {"mlp-mnist": ["bp", "drtp", "dfa", "tpsgd", "wp", "np", "anp"],
         "snn-mnist": ["bp", "drtp", "dfa", "tpsgd", "np", "anp"]}
QUICK_LIMITS = {"train_limit": 3000, "test_limit": 1000}


class _Reached(Exception):
    """Raised from the trainer's log callback to stop a run at the target (or its budget)."""


def time_rule(model: str, rule: str, target: float, dataset, args) -> dict[str, Any]:
    """Train ``rule`` on ``model`` until the test accuracy reaches ``target``; times and the curve."""
    cfg = harness.resolve(model=model, rule=rule)
    if args.epochs is not None:
        cfg["train"]["epochs"] = args.epochs
    if args.quick:
        cfg["train"]["epochs"] = min(int(cfg["train"]["epochs"]), 2)
        cfg["data"]["options"] = {**cfg["data"].get("options", {}), **QUICK_LIMITS}
    cfg["train"]["seed"] = args.seed
    run = build_run(cfg, dataset)
    curve: list[dict[str, float]] = []
    clock = {"cpu0": time.process_time()}
    state: dict[str, Any] = {"reached": None, "stopped": None}
    trainer: Trainer

    def log(_msg: str) -> None:
        entry = trainer.history[-1]
        acc = float(entry.get("test_accuracy", float("nan")))
        point = {"epoch": int(entry["epoch"]), "test_accuracy": acc, "wall_s": float(entry["wall_time_s"]),
                 "cpu_s": time.process_time() - clock["cpu0"]}
        curve.append(point)
        print(f"  {model}/{rule}: epoch {point['epoch']}  acc {acc:.4f}  wall {point['wall_s']:.1f} s  "
              f"CPU {point['cpu_s']:.1f} s", flush=True)
        if acc >= target:
            state["reached"] = point
            raise _Reached
        if args.budget_s is not None and point["wall_s"] >= args.budget_s:
            state["stopped"] = f"wall budget {args.budget_s:g} s"
            raise _Reached

    trainer = Trainer(run, None, progress=False, log=log)
    clock["cpu0"] = time.process_time()
    try:
        trainer.fit()
    except _Reached:
        pass
    best = max((p["test_accuracy"] for p in curve), default=float("nan"))
    last = curve[-1] if curve else {"epoch": 0, "wall_s": 0.0, "cpu_s": 0.0}
    hit = state["reached"]
    return {"model": model, "rule": rule, "target": target, "reached": hit is not None,
            "epochs": (hit or last)["epoch"], "wall_s": (hit or last)["wall_s"], "cpu_s": (hit or last)["cpu_s"],
            "best_acc": best, "budget_epochs": int(cfg["train"]["epochs"]),
            "stopped": state["stopped"] or ("target" if hit else "epochs"),
            "lr": cfg["train"]["lr"], "batch_size": cfg["train"]["batch_size"], "curve": curve}


def main() -> None:
    ap = harness.parser(__doc__, quick="3000/1000 samples, at most 2 epochs per rule, lower targets (minutes)",
                        raw=True)
    ap.add_argument("--models", default="mlp-mnist,snn-mnist", help="comma-separated: mlp-mnist, snn-mnist")
    ap.add_argument("--rules", default=None, help="comma-separated subset of the rules (bp always runs first)")
    ap.add_argument("--epochs", type=harness.positive(int), default=None, help="epoch budget for every rule (default: the rule's own)")
    ap.add_argument("--budget-s", type=harness.positive(float), default=None, help="wall-time budget per rule (checked after each epoch)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=harness.positive(int), default=1, help="torch threads (1 on a shared 2-core box)")
    args = harness.start(ap)
    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in RULES]
    if unknown:
        ap.error(f"unknown model {unknown[0]!r}; choose from {', '.join(RULES)}")
    wanted = None if args.rules is None else {r.strip() for r in args.rules.split(",") if r.strip()} | {"bp"}
    targets = QUICK_TARGETS if args.quick else TARGETS

    stem = "time_to_accuracy" + ("_quick" if args.quick else "")
    rows: list[dict[str, Any]] = []
    for model in models:
        dataset = load_dataset("mnist", **(QUICK_LIMITS if args.quick else {}))
        for rule in RULES[model]:
            if wanted is not None and rule not in wanted:
                continue
            rows.append(time_rule(model, rule, targets[model], dataset, args))
            # a long run killed part-way keeps the rules it finished (rewritten atomically after each)
            harness.write_results(args, f"{stem}_partial", {"complete": False, "rows": rows})

    summary: dict[str, Any] = {}
    table = ["| model | rule | target | reached | epochs | wall s | CPU s | wall / BP | CPU / BP | best acc |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bp = next(b for b in rows if b["model"] == r["model"] and b["rule"] == "bp")
        ratio = r["wall_s"] / bp["wall_s"] if bp["reached"] and r["reached"] and bp["wall_s"] > 0 else None
        cpu_ratio = r["cpu_s"] / bp["cpu_s"] if bp["reached"] and r["reached"] and bp["cpu_s"] > 0 else None
        r["wall_over_bp"], r["cpu_over_bp"] = ratio, cpu_ratio
        name = "BPTT" if r["rule"] == "bp" and r["model"].startswith("snn") else r["rule"]
        reached = "yes" if r["reached"] else f"no ({r['stopped']})"
        table.append(f"| {r['model']} | {name} | {r['target']:.2f} | {reached} | {r['epochs']}/{r['budget_epochs']} | "
                     f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} | {'-' if ratio is None else f'{ratio:.2f}'} | "
                     f"{'-' if cpu_ratio is None else f'{cpu_ratio:.2f}'} | {r['best_acc']:.4f} |")
        summary[f"{r['model']}/{r['rule']}"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                                               if k in ("reached", "epochs", "wall_s", "cpu_s", "best_acc",
                                                        "wall_over_bp")}
    record = {"quick": args.quick, "targets": targets, "threads": args.threads, "seed": args.seed,
              "limits": QUICK_LIMITS if args.quick else None, "rows": rows,
              "note": "wall_s: the trainer's cumulative wall time (training + per-epoch test evaluation); cpu_s: "
                      "process CPU time over the same epochs"}
    harness.finish(args, stem, summary, record=record, table=table)


if __name__ == "__main__":
    main()
