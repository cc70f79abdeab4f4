"""neurolearn against snnTorch's own training loop and plain PyTorch: epoch time, CPU time, ratios.

Contestants, each in a fresh process, interleaved (``--repeats`` rounds, the order rotated
every round), all with one thread (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``):

- ``snntorch-bptt``: the peer script ``peer_snntorch_mnist.py`` run as it is (snnTorch's
  ``snn.Leaky`` loop, 784-500-10 LIF, β = 0.95, rate-coded input, T = 25, batch 128, Adam 5e-4);
- ``neurolearn snn-mnist`` with ``bp`` (BPTT), ``drtp`` and ``anp`` (the model's 16 draws):
  the same layer sizes, T, batch, input coding and β = exp(−1 ms / 20 ms) = 0.951, with the
  model file's leaky-integrator readout (decode mean) instead of the peer's spiking readout;
- ``torch-mlp``: the peer script ``peer_torch_mlp.py`` (784-500-500-10 ReLU, Adam 1e-3, batch 128);
- ``neurolearn mlp-mnist`` with ``bp`` (784-500-500-10 leaky ReLU, Adam 1e-3, batch 128).

What is timed: one epoch of training. The peers time their own loop (``train_s``); a
neurolearn worker times the trainer's epoch (:meth:`neurolearn.training.Trainer.train_epoch`,
the code ``neurolearn train`` runs), wall and CPU. Beside that each child's whole CPU time
(imports, data loading, training, test evaluation; ``getrusage`` of the children) is
recorded. ``--train-limit N`` trains on the first N training samples (the peers get a folder
of IDX files holding those samples, so their loop is unchanged); ``--quick``: 1280 samples
(10 steps of 128), 1000 test samples, one round.

    python experiments/bench_vs_snntorch.py                      # a full epoch each, 2 rounds
    python experiments/bench_vs_snntorch.py --train-limit 12800 --contestants snntorch-bptt,snn-bp,snn-drtp
    python experiments/bench_vs_snntorch.py --quick

Last stdout line: JSON {"snn_bptt_over_snntorch", "snn_drtp_over_snntorch", "snn_anp_over_snntorch",
"mlp_bp_over_torch"} (ratios of the median epoch wall times; < 1: neurolearn is faster), plus
the CPU-time ratios (``*_cpu``: whole child processes).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from neurolearn import harness

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"
#: contestant -> (kind, model, rule); peers are run as scripts
CONTESTANTS = {
    "snntorch-bptt": ("peer", "peer_snntorch_mnist.py", None),
    "snn-bp": ("neurolearn", "snn-mnist", "bp"),
    "snn-drtp": ("neurolearn", "snn-mnist", "drtp"),
    "snn-anp": ("neurolearn", "snn-mnist", "anp"),
    "torch-mlp": ("peer", "peer_torch_mlp.py", None),
    "mlp-bp": ("neurolearn", "mlp-mnist", "bp"),
}
RATIOS = {"snn_bptt_over_snntorch": ("snn-bp", "snntorch-bptt"), "snn_drtp_over_snntorch": ("snn-drtp", "snntorch-bptt"),
          "snn_anp_over_snntorch": ("snn-anp", "snntorch-bptt"), "mlp_bp_over_torch": ("mlp-bp", "torch-mlp")}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


def subset_idx(src: Path, dst: Path, train_limit: int | None, test_limit: int | None) -> None:
    """Write the first ``train_limit`` / ``test_limit`` samples of the MNIST IDX files in ``src`` to ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        limit = train_limit if name.startswith("train") else test_limit
        raw = gzip.open(src / name).read()
        nd = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
        n = dims[0] if limit is None else min(limit, dims[0])
        item = 1
        for d in dims[1:]:
            item *= d
        header = raw[:4] + n.to_bytes(4, "big") + raw[8:4 + 4 * nd]
        with gzip.open(dst / name, "wb", compresslevel=1) as f:
            f.write(header + raw[4 + 4 * nd:4 + 4 * nd + n * item])


def worker(model: str, rule: str, train_limit: int | None, test_limit: int | None) -> None:
    """One neurolearn epoch through the trainer; prints one JSON line."""
    import torch

    from neurolearn.runs import build_run
    from neurolearn.training import Trainer

    torch.set_num_threads(1)
    cfg = harness.resolve(model=model, rule=rule)
    limits = {k: v for k, v in (("train_limit", train_limit), ("test_limit", test_limit)) if v is not None}
    cfg["data"]["options"] = {**cfg["data"].get("options", {}), **limits}
    cfg["train"]["epochs"] = 1
    run = build_run(cfg)
    trainer = Trainer(run, None, progress=False, log=lambda msg: None)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train_epoch(1, 1)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    acc = trainer.evaluate("test").get("accuracy")
    print(json.dumps({"train_s": train_s, "train_cpu_s": train_cpu_s, "test_acc": acc,
                      "steps": -(-run.dataset.x_train.shape[0] // int(cfg["train"]["batch_size"]))}))


def run_contestant(name: str, args, data_dir: Path) -> dict[str, Any]:
    """Run one contestant in a fresh process; its own epoch time, the child's CPU and wall time."""
    kind, what, rule = CONTESTANTS[name]
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    if kind == "peer":
        cmd = [sys.executable, str(Path(args.peers) / what), str(data_dir), "1"]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", f"{what}:{rule}"]
        if args.train_limit is not None:
            cmd += ["--train-limit", str(args.train_limit)]
        if args.test_limit is not None:
            cmd += ["--test-limit", str(args.test_limit)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if kind == "peer":
        epoch = last["epochs"][0]
        out = {"train_s": float(epoch["train_s"]), "test_acc": float(epoch["test_acc"]), "train_cpu_s": None}
    else:
        out = last
    return {"name": name, **out, "process_cpu_s": cpu, "process_wall_s": wall}


def main() -> None:
    ap = harness.parser(__doc__, quick="1280 training / 1000 test samples, one round (about a minute per contestant)",
                        raw=True)
    ap.add_argument("--contestants", default=",".join(CONTESTANTS), help=f"comma-separated, from {', '.join(CONTESTANTS)}")
    ap.add_argument("--repeats", type=harness.positive(int), default=None, help="interleaved rounds (default 2; --quick 1)")
    ap.add_argument("--train-limit", type=harness.positive(int), default=None, help="train on the first N samples (default: all)")
    ap.add_argument("--test-limit", type=harness.positive(int), default=None, help="test on the first N samples (default: all)")
    ap.add_argument("--peers", default=str(PEERS), help="folder of the peer scripts")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one neurolearn contestant
    args = harness.start(ap)
    if args.worker:
        model, rule = args.worker.split(":")
        worker(model, rule, args.train_limit, args.test_limit)
        return
    if args.quick:
        args.train_limit = args.train_limit or 1280
        args.test_limit = args.test_limit or 1000
    repeats = args.repeats or (1 if args.quick else 2)
    names = [c.strip() for c in args.contestants.split(",") if c.strip()]
    for n in names:
        if n not in CONTESTANTS:
            ap.error(f"unknown contestant {n!r}; choose from {', '.join(CONTESTANTS)}")
    from neurolearn.data.vision import data_root

    src = data_root() / "mnist"
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = src
        if args.train_limit is not None or args.test_limit is not None:
            data_dir = Path(tmp) / "mnist"
            subset_idx(src, data_dir, args.train_limit, args.test_limit)
        for r in range(repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                res = run_contestant(n, args, data_dir)
                results[n].append(res)
                cpu = "-" if res["train_cpu_s"] is None else f"{res['train_cpu_s']:.1f}"
                print(f"  round {r + 1}: {n:14s} epoch {res['train_s']:7.1f} s (CPU {cpu})  process CPU "
                      f"{res['process_cpu_s']:6.1f} s  acc {res['test_acc']:.4f}", flush=True)

    med = {n: statistics.median(x["train_s"] for x in rs) for n, rs in results.items()}
    med_cpu = {n: statistics.median(x["process_cpu_s"] for x in rs) for n, rs in results.items()}
    table = ["| contestant | epoch wall s (median) | epoch CPU s | process CPU s | test acc | vs peer (wall) |",
             "|---|---|---|---|---|---|"]
    peer_of = {a: b for a, b in RATIOS.values()}
    summary: dict[str, Any] = {}
    for n in names:
        cpus = [x["train_cpu_s"] for x in results[n] if x["train_cpu_s"] is not None]
        peer = peer_of.get(n)
        ratio = med[n] / med[peer] if peer in med else None
        cpu = f"{statistics.median(cpus):.2f}" if cpus else "-"
        acc = statistics.median(x["test_acc"] for x in results[n])
        table.append(f"| {n} | {med[n]:.2f} | {cpu} | {med_cpu[n]:.1f} | {acc:.4f} | "
                     f"{'-' if ratio is None else f'{ratio:.2f}'} |")
    for key, (a, b) in RATIOS.items():
        if a in med and b in med:
            summary[key] = round(med[a] / med[b], 3)
            summary[key + "_cpu"] = round(med_cpu[a] / med_cpu[b], 3)
    stem = "bench_vs_snntorch" + ("_quick" if args.quick else "")
    record = {"train_limit": args.train_limit, "test_limit": args.test_limit, "repeats": repeats, "results": results,
              "median_epoch_s": med, "median_process_cpu_s": med_cpu, "ratios": summary,
              "note": "epoch wall: each contestant's own timer around one training epoch; process CPU: the whole "
                      "child (imports, data, training, evaluation)"}
    harness.finish(args, stem, summary, record=record, table=table)


if __name__ == "__main__":
    main()
