r"""Sweeps: one model and rule over a grid of ``--set`` values and seeds, on a process pool (or Ray).

``neurolearn sweep --model mlp-digits --rule bp --set train.lr=1e-3,3e-3 --seeds 0-2 --workers 2 --out S``
runs the ``2 × 3`` trials, each a normal run directory ``S/trials/<trial>/`` (metrics.json,
checkpoint.pt), on ``--workers`` processes (``ProcessPoolExecutor``, spawn, one torch thread
each). It is **restartable**: a trial whose metrics.json says ``finished`` is skipped, and a
killed one continues from its checkpoint. At the end it writes

- ``S/sweep.json``: every trial (setting, seed, final metrics) and, per setting, the mean and
  the spread (sample standard deviation, ``n − 1``) of each final metric over the seeds;
- ``S/table.md``: the same as a table; ``S/sweep.png``: mean ± spread per setting.

``--backend ray`` runs the trials as Ray tasks (``pip install 'neurolearn[ray]'``; a local
cluster unless ``RAY_ADDRESS`` names one): for sweeps across machines.
"""

from __future__ import annotations

import itertools
import math
import re
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

from neurolearn.errors import ConfigError
from neurolearn.io import read_json, write_json

BACKENDS = ("pool", "ray")
TRIALS_DIR = "trials"


@dataclass(frozen=True)
class Trial:
    """One run of the sweep: ``sets`` (``key=value`` overrides, the grid point) and ``seed``."""

    sets: tuple[str, ...]
    seed: int

    @property
    def setting(self) -> str:
        return " ".join(self.sets) or "(defaults)"

    @property
    def name(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", ",".join(self.sets)) or "defaults"
        return f"{slug},seed={self.seed}"


def split_values(text: str) -> list[str]:
    """``a,b,[c,d]`` -> ``["a", "b", "[c,d]"]`` (commas inside brackets or quotes stay)."""
    out, depth, quote, cur = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += ch
    out.append(cur.strip())
    if any(not v for v in out):
        raise ConfigError(f"--set: empty value in {text!r} (give KEY=V1,V2,...)")
    return out


def parse_grid(sets: list[str] | None) -> list[tuple[str, ...]]:
    """``["train.lr=1e-3,3e-3", "train.batch_size=32"]`` -> every combination as override lists."""
    axes = []
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set needs KEY=V1,V2,..., got {item!r}")
        key, values = item.split("=", 1)
        axes.append([f"{key.strip()}={v}" for v in split_values(values)])
    return [tuple(c) for c in itertools.product(*axes)] if axes else [()]


def parse_seeds(text: str) -> list[int]:
    """``"0-2"`` -> ``[0, 1, 2]``; ``"0,3,7"`` -> ``[0, 3, 7]``; ranges and lists combine."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if re.fullmatch(r"\d+-\d+", part):
                a, b = (int(v) for v in part.split("-"))
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise ConfigError(f"--seeds takes a range or a list (0-2, 0,3,7), got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds lists a seed twice: {text!r}")
    return seeds


def trial_config(model: str, rule: str | None, trial: Trial, extra: dict[str, Any]) -> dict[str, Any]:
    from neurolearn.config import resolve_config

    return resolve_config(model=model, rule=rule, overrides=list(trial.sets), seed=trial.seed, **extra)


def run_trial(model: str, rule: str | None, trial: Trial, extra: dict[str, Any], out: str,
              threads: int = 1) -> dict[str, Any]:
    """Train one trial into ``out`` (continuing from its checkpoint if it was killed); its final metrics."""
    import torch

    from neurolearn.runs import build_run
    from neurolearn.training import Trainer

    torch.set_num_threads(threads)
    run = build_run(trial_config(model, rule, trial, extra))
    return Trainer(run, out, progress=False, log=lambda m: None).fit(resume=True)["final"]


def finished(path: Path) -> dict[str, Any] | None:
    """The final metrics of a finished run directory, else ``None``."""
    metrics = path / "metrics.json"
    if not metrics.exists():
        return None
    data = read_json(metrics)
    return data.get("final") if data.get("status") == "finished" else None


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting: mean and spread (sample std) over the seeds of every numeric final metric."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["setting"], []).append(r)
    rows = []
    for setting, trials in groups.items():
        row: dict[str, Any] = {"setting": setting, "seeds": sorted(t["seed"] for t in trials)}
        keys = sorted({k for t in trials for k, v in t["final"].items() if isinstance(v, (int, float))})
        for k in keys:
            vals = [float(t["final"][k]) for t in trials if isinstance(t["final"].get(k), (int, float))]
            mean = sum(vals) / len(vals)
            spread = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
            row[k] = {"mean": mean, "spread": spread}
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], metrics: tuple[str, ...] = ("test_accuracy", "test_loss", "train_loss")) -> str:
    shown = [m for m in metrics if any(m in r for r in rows)]
    lines = ["| setting | seeds | " + " | ".join(shown) + " |", "|---|---|" + "---|" * len(shown)]
    for r in rows:
        cells = [f"{r[m]['mean']:.4g} ± {r[m]['spread']:.2g}" if m in r else "" for m in shown]
        lines.append(f"| {r['setting']} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "test_accuracy" if any("test_accuracy" in r for r in rows) else "test_loss"
    rows = [r for r in rows if metric in r]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(rows) + 2), 3.2))
    xs = range(len(rows))
    ax.errorbar(list(xs), [r[metric]["mean"] for r in rows], yerr=[r[metric]["spread"] for r in rows],
                fmt="o", capsize=4)
    ax.set_xticks(list(xs), [r["setting"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (mean ± sd over seeds)")
    ax.set_title(f"sweep: {len(rows)} settings")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep(model: str, rule: str | None, sets: list[str] | None, seeds: list[int], out: str | Path, *,
          workers: int = 1, backend: str = "pool", extra: dict[str, Any] | None = None,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the grid × seeds (finished trials skipped); write sweep.json, table.md, sweep.png."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers!r}")
    extra = dict(extra or {})
    out = Path(out)
    trials = [Trial(s, seed) for s in parse_grid(sets) for seed in seeds]
    for t in trials:  # every configuration checked here, one clear error before any process starts
        trial_config(model, rule, t, extra)
    results: dict[Trial, dict[str, Any]] = {}
    todo = []
    for t in trials:
        done = finished(out / TRIALS_DIR / t.name)
        if done is not None:
            results[t] = done
        else:
            todo.append(t)
    log(f"sweep: {len(trials)} trials, {len(trials) - len(todo)} already finished, {len(todo)} to run "
        f"on {workers} {'Ray task slots' if backend == 'ray' else 'processes'}")
    out.mkdir(parents=True, exist_ok=True)
    if todo:
        runner = _run_ray if backend == "ray" else _run_pool
        for t, final in runner(model, rule, todo, extra, out, workers):
            results[t] = final
            log(f"  done {t.name}: " + ", ".join(f"{k} {v:.4g}" for k, v in final.items()
                                               if k.startswith("test_") and isinstance(v, float)))
    listed = [{"setting": t.setting, "sets": list(t.sets), "seed": t.seed, "dir": str(out / TRIALS_DIR / t.name),
               "final": results[t]} for t in trials]
    rows = summarise(listed)
    report = {"model": model, "rule": rule, "backend": backend, "trials": listed, "summary": rows}
    write_json(out / "sweep.json", report)
    (out / "table.md").write_text(table(rows))
    plot(rows, out / "sweep.png")
    return report


def _run_pool(model, rule, todo, extra, out: Path, workers: int):
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(run_trial, model, rule, t, extra, str(out / TRIALS_DIR / t.name)): t for t in todo}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def _run_ray(model, rule, todo, extra, out: Path, workers: int):
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'neurolearn[ray]' (or use the default "
                          "--backend pool)") from None
    if not ray.is_initialized():
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(run_trial)
    refs = {remote.remote(model, rule, t, extra, str(out / TRIALS_DIR / t.name)): t for t in todo}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        yield refs[ready[0]], ray.get(ready[0])


__all__ = ["sweep", "Trial", "parse_grid", "parse_seeds", "split_values", "summarise", "table", "run_trial",
           "BACKENDS"]
