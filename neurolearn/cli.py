"""The ``neurolearn`` command: train, evaluate, plot, list models and rules.

Errors a user can cause are printed as one ``error: ...`` line (exit status 2), never as a
traceback; ``NEUROLEARN_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from neurolearn.errors import NeurolearnError

SET_HELP = """override any config entry by its dotted path, value parsed as TOML. Examples:
  train.lr=0.01  train.momentum=0.9  train.lr_decay=0.8 (lr * 0.8**(epoch-1))  train.beta1=0.9 (Adam)
  train.average=0.999 (evaluate and keep the moving average of the weights, decay per step)
  rule.params.sigma=1e-3  rule.params.draws=32 (np/anp: noisy copies per sample)
  rule.params.sigma=[0.1,0] (np/anp: one per layer)  rule.params.noise_tau=inf (np/anp: noise held over the trial)
  rule.params.conv_target="channel" (drtp/tpsgd)  model.layers.0.size=256
  decor.enabled=true  decor.lr=1e-3  decor.kappa=0.5  (input decorrelation of every layer;
  see neurolearn.decorrelation)  data.options.train_limit=10000
decor.* keys (with decor.enabled=true; BP -> DBP, anp -> DANP, ...): lr (eta_R, 1e-3),
  kappa (whitening weight in [0,1], 0.5; 0 = decorrelate only, 1 = unit variances only), centring (true: subtract a
  running mean), momentum (0.1), subsample (share of rows per update, 1.0, or a row count),
  lower_triangular (false), min_variance (1e-2 of the mean), max_gain (1e3: stop if |R|_F/sqrt(d) grows
  past it), layers ("all" or a list of layer indices)"""


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from neurolearn.config import resolve_config
    from neurolearn.runs import check_out_dir

    cfg = resolve_config(
        model=args.model, rule=args.rule, data=args.data, overrides=args.set,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        seed=args.seed, device=args.device, data_dir=args.data_dir,
    )
    if args.threads is not None:
        if args.threads < 1:
            raise NeurolearnError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg['model']['name']}-{cfg['rule']['name']}-s{cfg['train']['seed']}"
    # a run directory that cannot take the run is refused now, not after an epoch
    check_out_dir(out, resume=args.resume, create_parents=not args.out)
    if "env" in cfg["model"]:  # reinforcement learning: an environment loop, no dataset (neurolearn.rl)
        return _train_env(args, cfg, out)
    from neurolearn.distributed import init_from_env

    ctx = init_from_env(cfg["train"].get("device") or "cpu")  # torchrun: join the group (WORLD_SIZE > 1)
    try:
        code = _train(args, cfg, out, ctx)
        ctx.barrier()  # every rank done (rank 0's last writes too) before the group is torn down
        return code
    finally:
        ctx.close()


def _train(args: argparse.Namespace, cfg, out: Path, ctx) -> int:
    from neurolearn.config import describe
    from neurolearn.runs import build_run
    from neurolearn.training import Trainer

    run = build_run(cfg)  # refuses sizes whose memory cannot be allocated (neurolearn.build.check_memory)
    if not ctx.is_main:
        Trainer(run, out, progress=False, ctx=ctx).fit(resume=args.resume)
        return 0
    where = f", {ctx.world} processes ({ctx.backend})" if ctx.active else ""
    print(f"training {cfg['model']['name']} with {cfg['rule']['name']} on {cfg['data']['name']} "
          f"({cfg['train']['epochs']} epochs, {cfg['train']['optimizer']} lr {cfg['train']['lr']}{where}) -> {out}",
          file=sys.stderr)
    print(describe(cfg), file=sys.stderr)
    metrics = Trainer(run, out, progress=not args.no_progress, ctx=ctx).fit(resume=args.resume)
    print(json.dumps(metrics["final"], indent=2))
    return 0


def _train_env(args: argparse.Namespace, cfg, out: Path) -> int:
    from neurolearn.rl.train import train_env

    if args.resume:
        raise NeurolearnError("--resume: reinforcement-learning runs (models with an [env] table) keep no checkpoint")
    print(f"training {cfg['model']['name']} with {cfg['rule']['name']} on {cfg['model']['env'].get('name', 'CartPole-v1')}"
          f" -> {out}", file=sys.stderr)
    metrics = train_env(cfg, out, progress=not args.no_progress)
    print(json.dumps(metrics["final"], indent=2))
    return 0


def positive(option: str, value: int) -> int:
    """``value`` if it is at least 1, else a one-line error naming ``option``."""
    if value < 1:
        raise NeurolearnError(f"{option} must be at least 1, got {value}")
    return value


def cmd_sweep(args: argparse.Namespace) -> int:
    from neurolearn.sweep import parse_seeds, sweep

    extra = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("data_dir", args.data_dir))
             if v is not None}
    report = sweep(args.model, args.rule, args.set, parse_seeds(args.seeds), args.out, workers=args.workers,
                   backend=args.backend, extra=extra, log=lambda m: print(m, file=sys.stderr))
    print((Path(args.out) / "table.md").read_text(), end="")
    print(f"{len(report['trials'])} trials -> {Path(args.out) / 'sweep.json'}, table.md, sweep.png", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from neurolearn.runs import load_trained
    from neurolearn.training import Trainer

    run = load_trained(args.run_dir, device=args.device)
    result = Trainer(run, None, progress=False).evaluate(args.split)
    print(json.dumps(result, indent=2))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    import torch

    from neurolearn.io import read_json
    from neurolearn.plotting import encode_samples, layer_info, plot_activity, plot_curves
    from neurolearn.runs import METRICS_NAME, load_trained

    positive("--samples", args.samples)
    run_dir = Path(args.run_dir)
    written = []
    run = load_trained(run_dir)  # checks the run directory and its metrics.json first
    metrics_path = run_dir / METRICS_NAME
    if metrics_path.exists():
        plot_curves(read_json(metrics_path), run_dir / "curves.png")
        written.append(run_dir / "curves.png")
    x = run.dataset.x_test[: args.samples]
    with torch.no_grad():  # the same per-sample encoding as `simulate` (neurolearn.plotting.encode_samples)
        record = run.model.run(encode_samples(run.model, x))
    thresholds, units = layer_info(run.model)
    plot_activity(record, run_dir / "activity.png", dt=run.model.dt if run.model.spiking else None, backend="torch",
                  label=_label(run.dataset.y_test[0]), thresholds=thresholds, units=units)
    written.append(run_dir / "activity.png")
    for p in written:
        print(p)
    return 0


def _label(y) -> object:
    """A sample's label for a figure title (a class index; ``None`` for sequence targets)."""
    return int(y) if y.dim() == 0 else None


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run a trained network on test samples in the torch engine or in Brian2; raster + membrane plot."""
    import torch

    from neurolearn.plotting import encode_samples, layer_info, plot_activity
    from neurolearn.runs import load_trained

    positive("--samples", args.samples)
    run_dir = Path(args.run_dir)
    run = load_trained(run_dir)
    model = run.model.double() if args.backend == "brian2" else run.model
    x = run.dataset.x_test[: args.samples].to(next(model.parameters()).dtype)
    y = run.dataset.y_test[: args.samples]
    with torch.no_grad():
        xt = encode_samples(model, x)  # sample i's spikes do not depend on the batch size or dtype
        reference = model.run(xt)
    if args.backend == "brian2":
        from neurolearn.backends.brian2 import run_brian2

        record = run_brian2(model, xt, target=args.target)
    else:
        record = reference
    path = run_dir / f"raster-{args.backend}.png"
    thresholds, units = layer_info(model)
    plot_activity(record, path, dt=model.dt if model.spiking else None, backend=args.backend,
                  label=_label(y[0]), thresholds=thresholds, units=units)
    summary = {"backend": args.backend, "samples": int(x.shape[0]), "steps": int(xt.shape[0]), "figure": str(path)}
    if y.dim() == 1:
        pred = model.decode_output(record.output).argmax(-1)
        summary["accuracy"] = float((pred == y).double().mean())
    summary["spikes_per_layer"] = [int(lr.act.sum()) if lr.mem is not None and model.layers[k].spiking else None
                                   for k, lr in enumerate(record.layers)]
    if args.backend != "torch":
        err = (record.output - reference.output).abs().max() / reference.output.abs().max().clamp_min(1e-12)
        summary["max_rel_err_vs_torch"] = float(err)
        summary["spike_trains_identical"] = all(
            torch.equal(a.act, b.act) for a, b, layer in zip(record.layers, reference.layers, model.layers) if layer.spiking)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from neurolearn.config import available_models, load_model_file

    for name in available_models():
        cfg = load_model_file(name)
        print(f"{name:22s} {cfg.get('description', '')}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from neurolearn.export.nir import read, write
    from neurolearn.runs import load_trained

    # everything that can be checked is checked before the file is written
    positive("--check-samples", args.check_samples)
    nir_path = Path(args.nir)
    if nir_path.is_dir():
        raise NeurolearnError(f"--nir {nir_path} is a folder; name the file to write (e.g. {nir_path / 'model.nir'})")
    if args.dt is not None and not (math.isfinite(args.dt) and args.dt > 0):
        raise NeurolearnError(f"--dt must be a positive number of seconds, got {args.dt}")
    run = load_trained(args.run_dir)
    write(args.nir, run.model, dt=args.dt, reader=args.reader,
          subtract="as_value" if args.subtract_as_value else "refuse")
    # read it back and compare spike for spike on a few test samples
    back = read(args.nir)
    x = run.dataset.x_test[: args.check_samples]
    with torch.no_grad():
        xe = run.model.encode(x, torch.Generator().manual_seed(0))
        a, b = run.model.run(xe), back.run(xe)
    # (a reader's form may hold a dense layer as a whole-map conv: [N, 1, 1] where neurolearn has [N])
    equal = all(torch.equal(la.act, lb.act.reshape(la.act.shape))
                for la, lb, layer in zip(a.layers, b.layers, run.model.layers) if layer.spiking)
    print(json.dumps({"nir": str(args.nir), "check_samples": int(x.shape[0]), "reimport_spikes_equal": equal,
                      "reimport_max_output_diff": float((a.output - b.output.reshape(a.output.shape)).abs().max())},
                     indent=2))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Read a NIR file with its writer's conventions into a run directory (warnings as ``warning:`` lines)."""
    import warnings

    from neurolearn.export.importer import import_run

    if args.steps is not None:
        positive("--steps", args.steps)
    if args.dt is not None and not (math.isfinite(args.dt) and args.dt > 0):
        raise NeurolearnError(f"--dt must be a positive number of seconds, got {args.dt}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = import_run(args.file, args.out, writer=args.writer, data=args.data, dt=args.dt,
                             encoder=args.encoder, steps=args.steps, decode=args.decode)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from neurolearn.rules import RULES

    for name, rule in RULES.items():
        print(f"{name:10s} {rule.summary}")
        print(f"{'':10s}   needs: {rule.requires.describe()}")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``error: ...`` line (exit status 2), like every other error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="neurolearn", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model with a learning rule", formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="mlp-digits", help="model name (see `neurolearn models`) or path to a .toml file")
    p.add_argument("--rule", default=None, help="learning rule (see `neurolearn rules`); default: the model's, else bp")
    p.add_argument("--data", default=None, help="dataset name (default: the model's)")
    p.add_argument("--data-dir", default=None, help="folder with the data files (default: $NEUROLEARN_DATA)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="0 = the whole training set")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu or cuda")
    p.add_argument("--out", default=None, help="run directory (default runs/MODEL-RULE-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's); use 1 when several runs share a machine")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train a grid of settings x seeds on a process pool (or Ray); table + figure",
                       description="Each --set KEY=V1,V2 is one axis of the grid; every combination runs once per "
                                   "seed. Restartable: finished trials in --out are skipped. Data-parallel training "
                                   "of one run: torchrun --nproc-per-node=N -m neurolearn train ... (docs/results/distributed.md)")
    p.add_argument("--model", default="mlp-digits")
    p.add_argument("--rule", default=None)
    p.add_argument("--set", action="append", metavar="KEY=V1,V2,...", help="one grid axis (repeatable)")
    p.add_argument("--seeds", default="0", help="seeds: a range 0-2 or a list 0,3,7 (default 0)")
    p.add_argument("--workers", type=int, default=1, help="trials at once (one torch thread each)")
    p.add_argument("--backend", choices=["pool", "ray"], default="pool",
                   help="pool: local processes; ray: Ray tasks (pip install 'neurolearn[ray]')")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True, help="sweep directory (trials/, sweep.json, table.md, sweep.png)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("eval", help="evaluate a trained run on its test split")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plot", help="learning curves, spike raster and membrane traces of a run")
    p.add_argument("run_dir")
    p.add_argument("--samples", type=int, default=1, help="test samples to run")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("simulate", help="run a trained network in the torch engine or in Brian2; raster and membrane plot")
    p.add_argument("run_dir")
    p.add_argument("--backend", choices=["torch", "brian2"], default="brian2")
    p.add_argument("--samples", type=int, default=4, help="test samples to run")
    p.add_argument("--target", choices=["numpy", "cython"], default="numpy", help="Brian2 code-generation target")
    p.set_defaults(func=cmd_simulate)

    sub.add_parser("models", help="list the ready model definitions").set_defaults(func=cmd_models)
    sub.add_parser("rules", help="list the learning rules and what each needs").set_defaults(func=cmd_rules)

    p = sub.add_parser("export", help="export a trained spiking run to NIR (neuromorphic hardware); see docs/results/nir.md")
    p.add_argument("run_dir")
    p.add_argument("--nir", required=True, metavar="OUT.nir", help="the NIR (HDF5) file to write")
    p.add_argument("--dt", type=float, default=None,
                   help="step the graph is written for (default: the reader's, 1e-4 s; Norse 1e-3 s)")
    p.add_argument("--for", dest="reader", default="neurolearn",
                   choices=["neurolearn", "snntorch", "norse", "spikingjelly", "sinabs", "rockpool"],
                   help="the library that will read the file: written in its conventions (docs/results/nir.md)")
    p.add_argument("--subtract-as-value", action="store_true",
                   help="export reset-by-subtraction layers as reset-to-value (spikes will differ; warns)")
    p.add_argument("--check-samples", type=int, default=64, help="test samples compared after re-import")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="read a NIR file (from neurolearn, snnTorch, SpikingJelly, ...) into a run directory",
                       description="The run directory (a checkpoint with the imported weights) is accepted by "
                                   "`neurolearn eval`, `export`, `simulate` and `train --resume`; see docs/results/nir.md")
    p.add_argument("file", help="the NIR (HDF5) file to read")
    p.add_argument("--from", dest="writer", default="auto",
                   choices=["auto", "neurolearn", "snntorch", "norse", "spikingjelly", "sinabs", "rockpool"],
                   help="the library that wrote the file: read in its conventions (auto: neurolearn's metadata, "
                        "else snnTorch's dt = 1e-4 s, with a warning)")
    p.add_argument("--out", required=True, help="the run directory to create")
    p.add_argument("--data", default=None, help="dataset the run evaluates on (default: mnist for 784 inputs, "
                                                 "digits for 64)")
    p.add_argument("--dt", type=float, default=None, help="simulation step in seconds (default: the writer's)")
    p.add_argument("--encoder", choices=["direct", "rate", "poisson", "latency"], default=None,
                   help="input encoding (default: the file's neurolearn metadata, else direct)")
    p.add_argument("--steps", type=int, default=None, help="time steps per sample (with --encoder; default rate)")
    p.add_argument("--decode", choices=["last", "mean", "sum", "max"], default=None,
                   help="how the output is read (default: the file's metadata, else last)")
    p.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NeurolearnError as exc:
        if os.environ.get("NEUROLEARN_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file system refusal (permissions, full disk, ...) the checks above did not foresee
        if os.environ.get("NEUROLEARN_DEBUG"):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last finished epoch is in the checkpoint (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
