"""e-prop against BPTT on the e-prop paper's tasks (PLASTICITY.md §3): evidence accumulation and
pattern generation, plus e-prop's peak memory at sequence length 4T against T.

- **Evidence accumulation** (models/snn-evidence.toml, trained by the package's trainer exactly as
  ``neurolearn train --model snn-evidence --rule eprop|bp`` would): by default at CI scale
  (dataset ``evidence-ci``: 3 cues, delay 300 ms, T = 900 steps; 60 ALIF neurons, τ_a 600 ms,
  β_a = 1.7 (1 − ρ)/(1 − α) = 0.058; 512 training trials, batch 16, Adam 5e-3), ``--full`` for
  the full-size task (7 cues, T = 2250, 100 ALIF, batch 64: hours on 2 CPU cores). e-prop uses
  random feedback and rate regularisation; BPTT the neurons' atan surrogate.
- **Pattern generation** (models/snn-pattern.toml, e-prop with random feedback): at CI scale
  T = 500 steps and 2 sines (full: T = 1000, 4 sines); reported as final / initial loss.
- **Memory**: one e-prop training step on the CI evidence network in fresh child processes at
  T and 4T (glibc's allocator made literal, as experiments/bench_memory_in_time.py): the peak
  resident set of the step over the resident set before it; BPTT beside it.

    python experiments/eprop_tasks.py [--quick] [--full] [--epochs N]

Last stdout line: JSON with ``eprop_evidence_acc``, ``bptt_evidence_acc`` (final test accuracy),
``eprop_pattern_loss_ratio`` (final/initial), ``eprop_memory_T_ratio`` (peak at 4T / at T) and
``bptt_memory_T_ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from neurolearn import harness
from neurolearn.io import write_json
from neurolearn.plotting import pyplot, save_figure


#: the CI-scale evidence accumulation overrides of models/snn-evidence.toml (docs/results/eprop.md)
EVIDENCE_CI = ["data.name=evidence-ci", "data.options.n_train=512", "data.options.n_test=256",
               "model.layers.0.size=60", "model.layers.0.recurrent_gain=2.58",
               "model.layers.0.neuron.tau_adapt=0.6", "model.layers.0.neuron.adapt_scale=0.058",
               "train.batch_size=16"]
PATTERN_CI = ["data.options.steps=500", "data.options.n_sines=2"]


def train(model: str, rule: str, overrides: list[str], epochs: int, quiet: bool = False) -> dict:
    """Train like ``neurolearn train`` (no run directory); initial and per-epoch test metrics."""
    from neurolearn.config import resolve_config
    from neurolearn.runs import build_run
    from neurolearn.training import Trainer

    cfg = resolve_config(model, rule=rule, overrides=[*overrides, f"train.epochs={epochs}"])
    run = build_run(cfg)
    log = (lambda msg: None) if quiet else (lambda msg: print(f"  [{model} {rule}] {msg}", flush=True))
    trainer = Trainer(run, None, progress=False, log=log)
    initial = trainer.evaluate("test")
    t0 = time.perf_counter()
    metrics = trainer.fit()
    return {"initial": initial, "epochs": metrics["epochs"], "final": metrics["final"],
            "wall_s": time.perf_counter() - t0, "iterations_per_epoch": -(-run.dataset.x_train.shape[0]
                                                                          // max(1, cfg["train"]["batch_size"]))}




def gradient_check(overrides: list[str], slopes: tuple[float, ...] = (5.0, 15.0, 25.0, 50.0), batch: int = 16,
                   seed: int = 0) -> list[dict]:
    """BPTT's gradient on one batch of training trials against symmetric e-prop's (no regulariser), per
    surrogate slope of the recurrent layer (``fast_sigmoid``): norms and cosine per parameter.

    e-prop's gradient cuts the paths through the recurrent spikes, so it is not BPTT's, but a BPTT
    gradient that has exploded through the ``T`` steps has a norm orders of magnitude above it and a
    cosine near 0 (the reason ``models/snn-evidence.toml`` uses slope 25, not 5)."""
    import torch

    from neurolearn.config import resolve_config
    from neurolearn.runs import build_run

    def grads(rule: str, extra: list[str], data=None):
        cfg = resolve_config("snn-evidence", rule=rule, overrides=[*overrides, *extra, f"train.seed={seed}"])
        run = build_run(cfg, data)
        run.rule.setup(run.model, run.objective, torch.Generator().manual_seed(seed))
        run.model.zero_grad()
        x = run.dataset.x_train[:batch].transpose(0, 1)  # [T, B, 40]
        run.rule.estimate_gradients(run.model, x, run.dataset.y_train[:batch], run.objective)
        return run.dataset, {n: p.grad.detach().clone() for n, p in run.model.named_parameters() if p.grad is not None}

    data, ep = grads("eprop", ["rule.params.feedback=symmetric", "rule.params.c_reg=0"])
    rows = []
    for slope in slopes:
        _, bp = grads("bp", [f"model.layers.0.neuron.surrogate_slope={slope}"], data)
        row: dict = {"surrogate_slope": slope}
        for name, g in bp.items():
            short = {"layers.0.weight": "w_in", "layers.0.recurrent_weight": "w_rec", "layers.1.weight": "w_out"}.get(name, name)
            row[f"{short}_norm_bptt"] = float(g.norm())
            row[f"{short}_norm_eprop"] = float(ep[name].norm())
            row[f"{short}_cos"] = float(torch.nn.functional.cosine_similarity(g.flatten(), ep[name].flatten(), dim=0))
        rows.append(row)
    return rows


def memory_child(rule_name: str, steps: int) -> dict:
    """One training step of the CI evidence network on ``steps`` steps (batch 16); peak MiB of the step."""
    import torch

    from neurolearn.config import resolve_config
    from neurolearn.build import build_network
    from neurolearn.objectives import Objective
    from neurolearn.rules import make_rule

    torch.set_num_threads(1)
    cfg = resolve_config("snn-evidence", rule=rule_name, overrides=EVIDENCE_CI)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(steps, 16, 40, generator=g) < 0.02).float()
    y = torch.randint(0, 2, (16,), generator=g)
    objective = Objective("classification")
    warm = build_network(cfg["model"], (40,))
    rule = make_rule(rule_name, **cfg["rule"]["params"])
    rule.setup(warm, objective, torch.Generator().manual_seed(0))
    rule.train_step(warm, x[:160], y, objective, torch.optim.Adam(warm.parameters()))  # load kernels
    before = harness.proc_status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    torch.manual_seed(0)
    model = build_network(cfg["model"], (40,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rule = make_rule(rule_name, **cfg["rule"]["params"])
    rule.setup(model, objective, torch.Generator().manual_seed(0))
    out = rule.train_step(model, x, y, objective, opt)
    return {"rule": rule_name, "T": steps, "peak_mb": harness.proc_status_mib("VmHWM") - before, "loss": float(out.loss.mean())}


def memory(lengths: tuple[int, int], repeats: int) -> list[dict]:
    rows = []
    for rule in ("eprop", "bp"):
        for steps in lengths:
            runs = []
            for _ in range(repeats):  # the smallest of a few fresh processes: allocator noise is one-sided
                res = subprocess.run([sys.executable, __file__, "--child", rule, str(steps)], capture_output=True,
                                     text=True, check=True, env={**os.environ, **harness.LITERAL_MALLOC})
                runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
            rows.append(min(runs, key=lambda r: r["peak_mb"]))
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = harness.parser(__doc__, quick="fewer epochs and a shorter memory check (minutes)")
    ap.add_argument("--full", action="store_true", help="full-size evidence accumulation and pattern generation")
    ap.add_argument("--epochs", type=int, default=None, help="evidence epochs (default 4 CI, 1 quick, 30 full)")
    ap.add_argument("--pattern-epochs", type=int, default=None, help="pattern iterations (default 150, quick 50)")
    ap.add_argument("--grad-check", action="store_true", help="only the BPTT-gradient check per surrogate slope")
    ap.add_argument("--child", nargs=2, metavar=("RULE", "T"), help=argparse.SUPPRESS)
    args = harness.start(ap, argv)
    if args.child:
        print(json.dumps(memory_child(args.child[0], int(args.child[1]))))
        return {}
    import torch

    torch.set_num_threads(1)
    ev_over = [] if args.full else EVIDENCE_CI
    grad_rows = gradient_check(ev_over)
    print(f"BPTT vs symmetric e-prop gradient, one batch of 16 ({'full size' if args.full else 'CI scale'})")
    print(f"{'slope':>6s} {'|dW_in| bptt':>13s} {'eprop':>8s} {'cos':>6s} {'|dW_rec| bptt':>14s} {'eprop':>8s} {'cos':>6s}")
    for r in grad_rows:
        print(f"{r['surrogate_slope']:6g} {r['w_in_norm_bptt']:13.3g} {r['w_in_norm_eprop']:8.3g} {r['w_in_cos']:6.3f} "
              f"{r['w_rec_norm_bptt']:14.3g} {r['w_rec_norm_eprop']:8.3g} {r['w_rec_cos']:6.3f}", flush=True)
    if args.grad_check:
        print(json.dumps(grad_rows))
        return {"grad_check": grad_rows}
    ev_epochs = args.epochs or (30 if args.full else 1 if args.quick else 4)
    evidence = {rule: train("snn-evidence", rule, ev_over, ev_epochs) for rule in ("eprop", "bp")}
    pat_over = [] if args.full else PATTERN_CI
    pattern = train("snn-pattern", "eprop", pat_over, args.pattern_epochs or (50 if args.quick else 150), quiet=True)
    lengths = (150, 600) if args.quick else (225, 900)
    mem = memory(lengths, 1 if args.quick else 2)
    peak = {(r["rule"], r["T"]): r["peak_mb"] for r in mem}

    print(f"\nevidence accumulation ({'full size' if args.full else 'CI scale'}, {ev_epochs} epochs of "
          f"{evidence['eprop']['iterations_per_epoch']} iterations)")
    print(f"{'rule':6s} {'initial acc':>11s} {'final acc':>10s} {'best acc':>9s} {'wall s':>8s}")
    for rule, r in evidence.items():
        best = max(e["test_accuracy"] for e in r["epochs"])
        print(f"{'bptt' if rule == 'bp' else rule:6s} {r['initial']['accuracy']:11.3f} "
              f"{r['final']['test_accuracy']:10.3f} {best:9.3f} {r['wall_s']:8.0f}")
    ratio = pattern["final"]["test_loss"] / pattern["initial"]["loss"]
    print(f"\npattern generation (e-prop, random feedback): loss {pattern['initial']['loss']:.4g} -> "
          f"{pattern['final']['test_loss']:.4g} (ratio {ratio:.3f}) in {len(pattern['epochs'])} iterations, "
          f"{pattern['wall_s']:.0f} s")
    print("\npeak MiB of one training step (CI evidence network, batch 16)")
    for r in mem:
        print(f"{'bptt' if r['rule'] == 'bp' else 'eprop':6s} T = {r['T']:5d} {r['peak_mb']:8.1f}")
    short, long = lengths
    result = {
        "eprop_evidence_acc": evidence["eprop"]["final"]["test_accuracy"],
        "bptt_evidence_acc": evidence["bp"]["final"]["test_accuracy"],
        "eprop_pattern_loss_ratio": ratio,
        "eprop_memory_T_ratio": peak[("eprop", long)] / peak[("eprop", short)],
        "bptt_memory_T_ratio": peak[("bp", long)] / peak[("bp", short)],
        "evidence_scale": "full" if args.full else "ci",
        "evidence_epochs": ev_epochs,
    }
    write_json(args.out / "eprop_tasks.json", {"evidence": evidence, "pattern": pattern, "memory": mem,
                                               "bptt_gradient_check": grad_rows, **result})
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    for rule, r in evidence.items():
        acc = [r["initial"]["accuracy"]] + [e["test_accuracy"] for e in r["epochs"]]
        axes[0].plot(range(len(acc)), acc, "o-", label="BPTT" if rule == "bp" else "e-prop")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title("evidence accumulation")
    axes[0].legend()
    losses = [pattern["initial"]["loss"]] + [e["test_loss"] for e in pattern["epochs"]]
    axes[1].semilogy(losses)
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("loss")
    axes[1].set_title("pattern generation (e-prop)")
    for rule, label in (("eprop", "e-prop"), ("bp", "BPTT")):
        axes[2].plot(lengths, [peak[(rule, t)] for t in lengths], "o-", label=label)
    axes[2].set_xlabel("T (steps)")
    axes[2].set_ylabel("peak MiB of a step")
    axes[2].legend()
    fig.tight_layout()
    save_figure(fig, args.out / "eprop_tasks.png", dpi=110)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
