"""Peak memory of a training step through time: time-domain ANP (online, nothing of the
past stored) against BPTT, on a tanh RNN (H = 512, batch 8, 6 inputs/outputs) at T = 100 and
T = 2000, in one run.

Each measurement runs in a fresh child process (so peaks do not mix). The child builds the
input and target sequences, then reads its resident set (``VmRSS``), resets the kernel's
peak counter (``/proc/self/clear_refs``), builds the network and the optimizer and runs one
training step; the figure is the peak resident set during that (``VmHWM``) minus the RSS
before it (after a warm-up step on a tiny network has loaded torch's kernels): the memory the
training step needs (network, optimizer state, activations, autograd graph), without the
interpreter and the data.

The children run with glibc's allocator made literal (``MALLOC_ARENA_MAX=1``,
``MALLOC_MMAP_THRESHOLD_=16384``, ``MALLOC_TRIM_THRESHOLD_=0``: blocks of 16 KiB and more are
mapped and unmapped, freed heap is returned). With the default allocator, freed blocks stay
resident by chance and ANP's peak at T = 2000 varied from 7.2 to 14 MiB over six identical
processes (T = 100: 6.3-8.4), so the ratio swung between 0.9 and 1.9; with these settings the
same six processes agree to within 0.2 MiB. They showed ANP growing by 1 MiB from T = 100 to
2000: the time-domain step concatenated the targets of all its copies, ``[T, (K+1)B, C]``, up
front (now per step). What still grows with T is the clean output the step returns (``[T, B,
C]``, for reporting), not learning state.

    python experiments/bench_memory_in_time.py [--quick] [--hidden 512]

Last stdout line: {"anp_ratio": peak(T=2000)/peak(T=100) of ANP, "bptt_ratio": the same for BPTT}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from neurolearn import harness
from neurolearn.plotting import pyplot, save_figure





def child(rule_name: str, steps: int, hidden: int, batch: int) -> dict:
    import torch

    from neurolearn.layers import Dense
    from neurolearn.network import Network
    from neurolearn.neurons import RateParams
    from neurolearn.objectives import Objective
    from neurolearn.rules import make_rule

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(steps, batch, 6, generator=g)
    y = torch.randn(steps, batch, 6, generator=g) * 0.3
    objective = Objective("sequence_regression")
    warm = Network([Dense(6, 8, RateParams("tanh"), recurrent=True), Dense(8, 6)], decode="all")
    make_rule(rule_name).train_step(warm, x[:3], y[:3], objective, torch.optim.Adam(warm.parameters()))  # load kernels
    before = harness.proc_status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    torch.manual_seed(0)
    model = Network([Dense(6, hidden, RateParams("tanh"), recurrent=True, init="xavier_normal",
                           recurrent_init="xavier_normal"),
                     Dense(hidden, 6, init="xavier_normal")], decode="all")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rule = make_rule(rule_name, **({"apply": "online"} if rule_name == "anp" else {}))
    rule.setup(warm, objective, torch.Generator().manual_seed(0))
    rule.setup(model, objective, torch.Generator().manual_seed(0))
    out = rule.train_step(model, x, y, objective, opt)
    peak = harness.proc_status_mib("VmHWM")
    return {"rule": rule_name, "T": steps, "peak_mb": peak - before, "loss": float(out.loss.mean())}


def main(argv: list[str] | None = None) -> dict:
    ap = harness.parser(__doc__, quick="T = 50 and 500 instead of 100 and 2000")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per cell (the smallest peak is kept)")
    ap.add_argument("--child", nargs=2, metavar=("RULE", "T"), help=argparse.SUPPRESS)
    args = harness.start(ap, argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.hidden, args.batch)))
        return {}
    lengths = (50, 500) if args.quick else (100, 2000)
    rows = []
    for rule in ("anp", "bp"):
        for steps in lengths:
            runs = []
            for _ in range(args.repeats):  # the smallest of a few fresh processes: allocator noise is one-sided
                res = subprocess.run([sys.executable, __file__, "--child", rule, str(steps), "--hidden",
                                      str(args.hidden), "--batch", str(args.batch)],
                                     capture_output=True, text=True, check=True,
                                     env={**os.environ, **harness.LITERAL_MALLOC})
                runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
            rows.append(min(runs, key=lambda r: r["peak_mb"]))
    peak = {(r["rule"], r["T"]): r["peak_mb"] for r in rows}
    short, long = lengths
    print(f"{'rule':8s} {'T':>6s} {'peak MiB of the step':>22s}")
    for r in rows:
        print(f"{'anp' if r['rule'] == 'anp' else 'bptt':8s} {r['T']:6d} {r['peak_mb']:22.1f}")
    result = {"anp_ratio": peak[("anp", long)] / peak[("anp", short)],
              "bptt_ratio": peak[("bp", long)] / peak[("bp", short)]}
    harness.write_results(args, "bench_memory_in_time", {"rows": rows, "hidden": args.hidden, "batch": args.batch, **result})
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4, 3))
    for rule, label in (("anp", "ANP (online)"), ("bp", "BPTT")):
        ax.plot(lengths, [peak[(rule, t)] for t in lengths], "o-", label=label)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("peak MiB of one training step")
    ax.legend()
    save_figure(fig, harness.results_path(args, "bench_memory_in_time.png"), dpi=120)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
