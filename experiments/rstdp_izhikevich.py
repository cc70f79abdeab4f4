"""Izhikevich 2007's single rewarded synapse: dopamine-modulated STDP solves distal reward (PLASTICITY.md 5.1).

A recurrent network of Izhikevich neurons (80 % regular-spiking excitatory, 20 % fast-spiking
inhibitory; ``--synapses`` random targets per neuron, inhibitory ones onto excitatory neurons only;
1 ms delay; excitatory weights start at 1, inhibitory fixed at -1; random thalamic input
``13 (U(0,1) - 0.5)`` mV/ms per neuron) with DA-STDP on the excitatory synapses
(:class:`neurolearn.rules.rstdp.RSTDPParams`, ``form="izhikevich"``: nearest-spike traces 0.1 at a
spike, ×0.95 per ms; LTD/LTP 1.5; eligibility τ_c 1 s; dopamine τ_d 200 ms, +0.5 per reward;
tonic dopamine 0.002; ``s ∈ [0, 4]``). One excitatory synapse n1→n2 is set to 0; whenever n2 fires
within 20 ms after n1, a reward is scheduled 1–3 s later. Expected: that synapse climbs to the
cap, the bulk stays low.

Scale: the paper uses 1000 neurons, 100 synapses each, 1 hour, Izhikevich's weight-change rate
(his ``s += (0.002 + DA) sd`` every 10 ms is ``--lr 0.1`` per ms here). That is 3.6e6 steps;
a torch loop on 2 shared cores does ~1-3 ms per step, so the runs here are scaled down:

- ``--quick`` (the checked run): 100 neurons, 10 synapses each, 100 s, ``--lr 0.2`` (2x), reward
  delay 0.2-0.6 s (paper: 1-3 s; the eligibility trace still has to bridge 10-30 of its 20-ms STDP
  windows and hundreds of other spikes), thalamic amplitude 16 (paper 13; rates ~3.6 Hz instead of
  ~1 Hz, so that n1 -> n2 coincidences, the only source of reward, happen every few seconds
  instead of every minute);
- the default: 200 neurons, 20 synapses each, 1200 s, the paper's delay 1-3 s and drive 13,
  ``--lr 0.2`` (not run to completion here: about an hour on a shared machine).

    python experiments/rstdp_izhikevich.py --quick
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from neurolearn import harness
from neurolearn.neurons import IzhikevichParams
from neurolearn.plotting import pyplot, save_figure
from neurolearn.rules.rstdp import RSTDPParams

S_MAX = 4.0


def build(n: int, per_neuron: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Weights ``[post, pre]`` (exc 1, inh -1), the mask of plastic (excitatory) synapses, and ``n_exc``."""
    ne = int(0.8 * n)
    w = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        pool = torch.arange(n) if i < ne else torch.arange(ne)  # inhibitory only onto excitatory
        pool = pool[pool != i]
        targets = pool[torch.randperm(len(pool), generator=gen)[:per_neuron]]
        w[targets, i] = 1.0 if i < ne else -1.0
    mask = torch.zeros_like(w)
    mask[:, :ne] = (w[:, :ne] > 0).double()
    return w, mask, ne


def heaviside(u: torch.Tensor) -> torch.Tensor:
    """The spike without a surrogate (no training through time here)."""
    return (u > 0).to(u.dtype)


@torch.no_grad()
def run(n: int, per_neuron: int, seconds: float, lr: float, seed: int, delay: tuple[int, int] = (1000, 3000),
        drive: float = 13.0, log_every_ms: int = 1000) -> dict:
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    w, mask, ne = build(n, per_neuron, gen)
    # the rewarded synapse: an existing excitatory -> excitatory synapse n1 -> n2, set to 0
    exc_pairs = torch.nonzero(mask[:ne, :ne] > 0)
    n2, n1 = (int(v) for v in exc_pairs[int(torch.randint(len(exc_pairs), (1,), generator=gen))])
    w[n2, n1] = 0.0
    dt = 1e-3
    rule = RSTDPParams(form="izhikevich", a_plus=0.1, a_minus=0.15, tau_plus=20e-3, tau_minus=20e-3,
                       pairing="nearest", tau_c=1.0, tau_d=0.2, tonic=0.002, lr=lr, w_max=S_MAX)
    exc = IzhikevichParams(regime="RS", dt=0.5e-3)
    inh = IzhikevichParams(regime="FS", dt=0.5e-3)
    se, si = exc.init_state((ne,), dtype=torch.float64), inh.init_state((n - ne,), dtype=torch.float64)
    state = rule.init_state((n,), (n,), (n, n), dtype=torch.float64)
    fired = torch.zeros(n, dtype=torch.float64)
    last_n1 = -10**9
    rewards: list[int] = []
    log = {"t_s": [], "s": [], "c": [], "mean_exc": [], "rate_hz": []}
    steps = int(round(seconds * 1000))
    spikes_window = 0.0
    start = time.perf_counter()
    thal = torch.empty(n, dtype=torch.float64)
    for t in range(steps):
        current = drive * (torch.rand(n, generator=gen, out=thal, dtype=torch.float64) - 0.5) + w @ fired
        x = 0.5 * current  # one half-step of 0.5 ms adds h*I, h = dt/tau = 0.5
        ze1, se = exc.step(x[:ne], se, heaviside)
        zi1, si = inh.step(x[ne:], si, heaviside)
        ze2, se = exc.step(x[:ne], se, heaviside)
        zi2, si = inh.step(x[ne:], si, heaviside)
        fired = torch.cat([torch.maximum(ze1, ze2), torch.maximum(zi1, zi2)])
        if fired[n1] > 0:
            last_n1 = t
        if fired[n2] > 0 and 0 < t - last_n1 < 20:
            rewards.append(t + int(rng.integers(delay[0] + 1, delay[1] + 1)))
        reward = 0.5 * sum(1 for r in rewards if r == t)
        if reward:
            rewards = [r for r in rewards if r > t]
        w, state = rule.step(fired, fired, reward, state, w, dt, mask)
        spikes_window += float(fired.sum())
        if (t + 1) % log_every_ms == 0:
            others = w[mask > 0]
            log["t_s"].append((t + 1) / 1000)
            log["s"].append(float(w[n2, n1]))
            log["c"].append(float(state.elig[n2, n1]))
            log["mean_exc"].append(float((others.sum() - w[n2, n1]) / (others.numel() - 1)))
            log["rate_hz"].append(spikes_window / n / (log_every_ms / 1000))
            spikes_window = 0.0
    others = w[mask > 0]
    mean_others = float((others.sum() - w[n2, n1]) / (others.numel() - 1))
    return {"neurons": n, "synapses_per_neuron": per_neuron, "seconds": seconds, "lr": lr, "seed": seed,
            "reward_delay_ms": list(delay), "drive": drive,
            "synapse": [n1, n2], "rewarded_final_rel": float(w[n2, n1]) / S_MAX,
            "others_mean_rel": mean_others / S_MAX, "mean_rate_hz": float(np.mean(log["rate_hz"])),
            "wall_s": time.perf_counter() - start, "log": log}


def plot(res: dict, path: Path) -> None:
    plt = pyplot()
    log = res["log"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(6.5, 5), sharex=True)
    a1.plot(log["t_s"], np.array(log["s"]) / S_MAX, label="rewarded synapse n1→n2")
    a1.plot(log["t_s"], np.array(log["mean_exc"]) / S_MAX, label="mean of the other excitatory synapses")
    a1.set_ylabel("weight / cap")
    a1.set_ylim(-0.02, 1.05)
    a1.legend(fontsize=8)
    a1.set_title(f"DA-STDP, {res['neurons']} Izhikevich neurons, lr {res['lr']:g}")
    a2.plot(log["t_s"], log["c"], lw=0.8)
    a2.set_ylabel("eligibility c (n1→n2)")
    a2.set_xlabel("time (s)")
    save_figure(fig, path)


def main() -> None:
    ap = harness.parser(__doc__, quick="100 neurons, 100 s, delay 0.2-0.6 s, drive 16")
    ap.add_argument("--neurons", type=int, default=None)
    ap.add_argument("--synapses", type=int, default=None, help="outgoing synapses per neuron")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--lr", type=float, default=0.2, help="weight-change rate per ms (Izhikevich: 0.1)")
    ap.add_argument("--delay", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                    help="reward delay range in seconds (paper: 1 3)")
    ap.add_argument("--drive", type=float, default=None, help="thalamic input amplitude (paper: 13)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="results file name (default rstdp_izhikevich[_quick])")
    args = harness.start(ap)
    n = args.neurons or (100 if args.quick else 200)
    m = args.synapses or max(1, n // 10)
    seconds = args.seconds or (100.0 if args.quick else 1200.0)
    torch.set_num_threads(1)
    delay = args.delay or ((0.2, 0.6) if args.quick else (1.0, 3.0))
    drive = args.drive or (16.0 if args.quick else 13.0)
    res = run(n, m, seconds, args.lr, args.seed, (int(delay[0] * 1000), int(delay[1] * 1000)), drive)
    name = args.name or "rstdp_izhikevich" + ("_quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    harness.write_results(args, name, res)
    plot(res, args.out / f"{name}.png")
    print(f"{'neurons':>8} {'seconds':>8} {'lr':>6} {'rewarded/cap':>13} {'others/cap':>11} {'rate Hz':>8} {'wall s':>7}")
    print(f"{n:>8} {seconds:>8g} {args.lr:>6g} {res['rewarded_final_rel']:>13.3f} {res['others_mean_rel']:>11.3f} "
          f"{res['mean_rate_hz']:>8.2f} {res['wall_s']:>7.1f}")
    summary = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items() if k != "log"}
    summary["rewarded_ge_0.9"] = res["rewarded_final_rel"] >= 0.9
    summary["others_le_0.3"] = res["others_mean_rel"] <= 0.3
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
