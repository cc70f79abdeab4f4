"""The one harness of the scripts in ``experiments/``: arguments, configs, data, results.

Every script builds its parser with :func:`parser` (``--quick``, ``--out`` and ``--data-dir``
come with it), starts with :func:`start`, resolves configs with :func:`resolve` (the same
code as ``neurolearn train``: model files, per-rule defaults, ``--set``), and ends with
:func:`finish`, which writes the results JSON atomically (with the run's CPU time, wall time
and the machine's load), prints the table and, as the last stdout line, the summary JSON::

    ap = harness.parser(__doc__, quick="10k images, 2 epochs")
    ap.add_argument("--epochs", type=int, default=10)
    args = harness.start(ap)
    cfg = harness.resolve(model="mlp-mnist", rule="anp", overrides=["train.lr=1e-3"])
    ...
    harness.finish(args, "np_mnist", summary, record=dict(summary, history=h), table=lines,
                   figure=lambda path: plot(h, path))

Data is found as the CLI finds it: ``--data-dir``, else ``$NEUROLEARN_DATA``, else
``~/.cache/neurolearn`` (:func:`neurolearn.data.load_dataset`); ``--data-dir`` is exported
as ``$NEUROLEARN_DATA`` so that loaders and child processes see the same folder.
Results go to ``--out`` (default ``experiments/results`` of the checkout).
"""

from __future__ import annotations

import argparse
import math
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from neurolearn.config import resolve_config

RESULTS = Path(__file__).resolve().parent.parent / "experiments" / "results"


def parser(doc: str, *, quick: str = "a short run (minutes) to check that the experiment works",
           raw: bool = False) -> argparse.ArgumentParser:
    """An argument parser described by the script's docstring, with ``--quick``, ``--out`` and
    ``--data-dir``; ``raw`` shows the whole docstring in ``--help``."""
    ap = argparse.ArgumentParser(description=doc if raw else doc.strip().splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=quick)
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"folder for the results JSON and figures (default {RESULTS})")
    ap.add_argument("--data-dir", default=None,
                    help="folder with the data files (default: $NEUROLEARN_DATA, else ~/.cache/neurolearn)")
    return ap


def positive(kind: type = int) -> Callable[[str], Any]:
    """An argparse ``type`` for a count or a duration that must be > 0 (``kind`` int or float): a
    wrong value is one ``error:`` line naming the argument, not a traceback later."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number > 0, got {text!r}")
        if not value > 0 or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return convert


class _Clock:
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    load0: tuple[float, ...] | None = None


def machine_load() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def start(ap: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the arguments, export ``--data-dir`` and start the clocks (wall, CPU, load)."""
    args = ap.parse_args(argv)
    if getattr(args, "data_dir", None):
        os.environ["NEUROLEARN_DATA"] = str(Path(args.data_dir).expanduser().resolve())
    _Clock.wall0, _Clock.cpu0 = time.perf_counter(), time.process_time()
    _Clock.load0 = tuple(machine_load() or ())
    return args


def resolve(model: str = "mlp-digits", rule: str | None = None, overrides: Iterable[str] | None = None,
            data: str | None = None, **train: Any) -> dict[str, Any]:
    """A run configuration exactly as ``neurolearn train`` resolves it (model file, its
    ``[rules.<rule>]`` defaults, ``train`` flags such as ``epochs=3``, ``--set``-style
    ``overrides``); the data folder is the one :func:`start` exported (``--data-dir``)."""
    return resolve_config(model=model, rule=rule, data=data, overrides=list(overrides or []), **train)


def run_info() -> dict[str, Any]:
    """Wall and CPU seconds since :func:`start`, the machine's load at start and now, and the host."""
    import torch

    return {
        "wall_s": round(time.perf_counter() - _Clock.wall0, 2),
        "cpu_s": round(time.process_time() - _Clock.cpu0, 2),
        "load_start": list(_Clock.load0) if _Clock.load0 else None,
        "load_end": machine_load(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "host": platform.node(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def results_path(args: argparse.Namespace, filename: str) -> Path:
    """``filename`` in the results folder (``--out``), which is created if missing."""
    out = Path(getattr(args, "out", None) or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    return out / filename


def write_results(args: argparse.Namespace, stem: str, record: dict[str, Any]) -> Path:
    """Write ``record`` plus ``run_info`` (CPU, wall, load) to ``<out>/<stem>.json`` atomically."""
    from neurolearn.io import write_json

    path = results_path(args, f"{stem}.json")
    info = run_info()
    write_json(path, {**record, "run_info": info})
    print(f"wrote {path}; wall {info['wall_s']:.1f} s, CPU {info['cpu_s']:.1f} s, load {info['load_start']} -> "
          f"{info['load_end']} on {info['cpus']} CPUs", file=sys.stderr)
    return path


def finish(args: argparse.Namespace, stem: str, summary: dict[str, Any], *, record: dict[str, Any] | None = None,
           table: Iterable[str] | str | None = None, figure: Callable[[Path], Any] | None = None) -> dict[str, Any]:
    """End an experiment: print ``table``, write ``record`` (default ``summary``) as ``<stem>.json``,
    draw ``figure(<out>/<stem>.png)``, print where they went and the machine's load, and print
    ``summary`` as JSON on the last stdout line (the line other tools read). Returns ``summary``."""
    if table is not None:
        print(table if isinstance(table, str) else "\n".join(table))
    write_results(args, stem, summary if record is None else record)
    if figure is not None:
        figure(results_path(args, f"{stem}.png"))
    sys.stdout.flush()
    print(json.dumps(summary), flush=True)
    return summary


# ------------------------------------------------------------------ memory measured in child processes
#: glibc set to hand freed memory back at once, so that a process's resident peak is its live peak
#: (otherwise freed blocks stay resident by chance and a peak swings from run to run); pass it in the
#: environment of the child process that measures
LITERAL_MALLOC = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "16384", "MALLOC_TRIM_THRESHOLD_": "0"}


def proc_status_mib(key: str) -> float:
    """A memory line of ``/proc/self/status`` in MiB (``VmRSS``: resident now, ``VmHWM``: resident peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {key} in /proc/self/status")
