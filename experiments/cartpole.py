"""CartPole-v1 with a spiking policy and reward-driven rules: episodes to solve per rule over seeds.

Every rule trains the same network (models/snn-cartpole.toml: 8 current channels -> 32 recurrent
LIF -> 2 logits + 1 value, 5 network steps of 1 ms per environment step), the same encoder and
seeds (train.seed = 0..seeds-1: initial weights, start states, action samples, rule noise), for
the same budget of episodes. "Solved": the mean return over 100 consecutive episodes >= 475;
episodes to solve is the last episode of the first such window; a seed that does not solve counts
at the budget (the median over seeds is then a lower bound). A run stops once solved; its curve
is continued with its last 100-episode mean in the figure. A uniform random policy is the floor.

Rules: np-reward (reward-modulated node perturbation), eprop-reward (actor-critic e-prop),
rstdp-reward (R-STDP of the action readout), reinforce (REINFORCE by BPTT, the non-local
baseline). Table, JSON (experiments/results/cartpole[_quick].json) and the learning curves
(median and quartiles over seeds of the 20-episode running mean).
"""

from __future__ import annotations

import json
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from neurolearn import harness

RULES = ("np-reward", "eprop-reward", "rstdp-reward", "reinforce")


def one_run(rule: str, seed: int, episodes: int, overrides: list[str]) -> dict[str, Any]:
    """Train one rule with one seed; the metrics of :func:`neurolearn.rl.train.train_agent`."""
    import torch

    torch.set_num_threads(1)
    from neurolearn.rl.train import build_agent, train_agent

    cfg = harness.resolve("snn-cartpole", rule, overrides, seed=seed)
    return train_agent(build_agent(cfg), episodes)


def random_policy(seeds: int, episodes: int) -> list[list[float]]:
    """Returns of a uniform random policy (the floor), ``episodes`` per seed."""
    from neurolearn.rl.env import make_env

    out = []
    for seed in range(seeds):
        env = make_env("CartPole-v1")
        env.action_space.seed(seed)
        rets = []
        for k in range(episodes):
            env.reset(seed=seed if k == 0 else None)
            total, done = 0.0, False
            while not done:
                _, r, term, trunc, _ = env.step(env.action_space.sample())
                total += float(r)
                done = term or trunc
            rets.append(total)
        out.append(rets)
    return out


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], statistics.median(values), q[2]


def summarise(rule: str, runs: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    solve = [r["final"]["episodes_to_solve"] or budget for r in runs]
    last = [r["final"]["mean_last"] for r in runs]
    q1, med, q3 = quartiles([float(v) for v in solve])
    return {
        "rule": rule, "seeds": len(runs), "solved": sum(r["final"]["solved"] for r in runs),
        "episodes_to_solve": [r["final"]["episodes_to_solve"] for r in runs],
        "episodes_to_solve_median": med, "episodes_to_solve_iqr": [q1, q3],
        "final_mean_100": last, "final_mean_100_median": statistics.median(last),
        "best_mean_100": [r["final"]["best_mean"] for r in runs],
        "env_steps": [r["env_steps"] for r in runs],
        "cpu_s": sum(r["final"]["cpu_s"] for r in runs), "wall_s": sum(r["final"]["wall_s"] for r in runs),
    }


def figure(curves: dict[str, list[list[float]]], budget: int, path: Path) -> None:
    import torch

    from neurolearn.plotting import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for rule, runs in curves.items():
        rows = []
        for rets in runs:
            t = torch.tensor(rets, dtype=torch.float64)
            c = torch.cumsum(torch.cat([torch.zeros(1, dtype=t.dtype), t]), 0)
            k = torch.arange(1, len(rets) + 1)
            lo = (k - 20).clamp_min(0)
            run_mean = ((c[k] - c[lo]) / (k - lo)).tolist()
            tail = sum(rets[-100:]) / len(rets[-100:])
            rows.append(run_mean + [tail] * (budget - len(rets)))  # solved and stopped: continue its last mean
        m = torch.tensor(rows)
        q = torch.quantile(m, torch.tensor([0.25, 0.5, 0.75], dtype=m.dtype), dim=0)
        x = range(1, budget + 1)
        ax.plot(x, q[1].tolist(), label=f"{rule} (median of {len(runs)})")
        ax.fill_between(x, q[0].tolist(), q[2].tolist(), alpha=0.2)
    ax.axhline(475, color="k", ls=":", lw=1, label="solved (475)")
    ax.set_xlabel("episode")
    ax.set_ylabel("return (20-episode running mean)")
    ax.set_title("CartPole-v1, spiking policy (snn-cartpole)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = harness.parser(__doc__, quick="1 seed, 20 episodes per rule (checks that everything runs)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per rule (default 5)")
    ap.add_argument("--episodes", type=int, default=None, help="budget of episodes per run (default 1000)")
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for every run (as neurolearn train --set)")
    args = harness.start(ap, argv)
    seeds = 1 if args.quick else args.seeds
    budget = args.episodes or (20 if args.quick else 1000)
    if seeds < 1 or budget < 1 or args.jobs < 1:
        ap.error("--seeds, --episodes and --jobs must be at least 1")
    jobs = [(rule, seed) for seed in range(seeds) for rule in args.rules]  # every rule's first seeds first
    stem = "cartpole" + ("_quick" if args.quick else "")
    log = harness.results_path(args, f"{stem}_runs.jsonl")  # one line per finished run (survives an interrupt)
    log.write_text("")
    results: dict[tuple[str, int], dict[str, Any]] = {}

    def done(job: tuple[str, int], res: dict[str, Any]) -> None:
        results[job] = res
        with open(log, "a") as fh:
            fh.write(json.dumps({"rule": job[0], "seed": job[1], "final": res["final"], "returns": res["returns"]})
                     + "\n")
        print(f"{job[0]} seed {job[1]}: {res['final']}", file=sys.stderr, flush=True)

    if args.jobs == 1:
        for job in jobs:
            done(job, one_run(*job, budget, args.set))
    else:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(one_run, *job, budget, args.set): job for job in jobs}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
    rows = {rule: summarise(rule, [results[rule, s] for s in range(seeds)], budget) for rule in args.rules}
    rand = random_policy(seeds, min(budget, 100))
    rand_mean = statistics.mean(sum(r) / len(r) for r in rand)
    table = [f"{'rule':14s} {'solved':>7s} {'ep. to solve (median, IQR)':>28s} {'final-100 mean':>15s} "
             f"{'CPU s':>8s} {'wall s':>8s}"]
    for r in rows.values():
        q1, q3 = r["episodes_to_solve_iqr"]
        table.append(f"{r['rule']:14s} {r['solved']:>3d}/{r['seeds']:<3d} {r['episodes_to_solve_median']:>12.0f} "
                     f"[{q1:.0f}, {q3:.0f}]{'':>6s} {r['final_mean_100_median']:>15.1f} {r['cpu_s']:>8.0f} "
                     f"{r['wall_s']:>8.0f}")
    table.append(f"{'random':14s} {'':>7s} {'':>28s} {rand_mean:>15.1f}")
    table.append(f"budget {budget} episodes; unsolved seeds counted at the budget; medians over {seeds} seeds")
    summary = {
        "budget": budget, "seeds": seeds, "random_mean": rand_mean,
        **{f"{r}_episodes_to_solve_median": rows[r]["episodes_to_solve_median"] for r in rows},
        **{f"{r}_solved": f"{rows[r]['solved']}/{seeds}" for r in rows},
        **{f"{r}_final_mean_100": rows[r]["final_mean_100_median"] for r in rows},
    }
    record = {"summary": summary, "rules": rows, "overrides": args.set,
              "returns": {f"{rule}/{seed}": results[rule, seed]["returns"] for rule, seed in jobs}}
    curves = {rule: [results[rule, s]["returns"] for s in range(seeds)] for rule in args.rules}
    return harness.finish(args, stem, summary, record=record, table=table,
                          figure=lambda p: figure(curves, budget, p))


if __name__ == "__main__":
    main()
