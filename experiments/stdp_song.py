"""Song, Miller & Abbott 2000: additive STDP makes the weights bimodal, multiplicative STDP unimodal
(PLASTICITY.md 4.3), in torch and in Brian2 on the same input spikes.

One LIF neuron (neurolearn's :class:`~neurolearn.neurons.LIFParams`: τ_m 10 ms, threshold 1,
reset by subtraction, dt 1 ms) driven by ``--inputs`` Poisson trains at ``--rate`` Hz through
plastic synapses, initial ``w ~ U(0, w_max)``; STDP of :mod:`neurolearn.rules.stdp` with τ± 20 ms,
all-to-all pairing, ``A+ = --a-plus · w_max``, ``A− = 1.05 A+`` (Song's ratio), bounds
``[0, w_max]``:

- additive (``μ = 0``, Song et al.): competition drives the weights to the bounds, a U-shaped
  histogram;
- multiplicative (``μ₊ = μ₋ = 1``, Gütig et al. 2003 / van Rossum et al. 2000): a unimodal histogram.

The same input spikes drive :meth:`neurolearn.rules.stdp.STDP.run_online` (weights change every
step) and the Brian2 synapses of :mod:`neurolearn.backends.brian2_stdp`; their final weights are
compared. Criteria (PLASTICITY.md 4.3, on ``w/w_max`` in 10 bins): **bimodal** if the bins
``[0, 0.1)`` and ``[0.9, 1]`` each hold more synapses than any middle bin and the middle 80 % of
the range holds < 30 %; **unimodal** if one interior bin is the peak, the counts do not rise again
away from it (by more than 1 % of the synapses) and each edge bin holds < 10 %.

The amplitudes are 10x Song's (A+ = 0.005 g_max) so the weights settle in tens of seconds
instead of hundreds (PLASTICITY.md's CI-scale advice).

    python experiments/stdp_song.py            # 1000 inputs, 60 s
    python experiments/stdp_song.py --quick    # 1000 inputs, 20 s
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from neurolearn import harness
from neurolearn import Dense, LIFParams, Network
from neurolearn.plotting import pyplot, save_figure
from neurolearn.rules.stdp import STDP

DT = 1e-3
BINS = np.linspace(0.0, 1.0, 11)


def histogram(w: np.ndarray, w_max: float) -> np.ndarray:
    return np.histogram(np.clip(w / w_max, 0.0, 1.0), bins=BINS)[0]


def bimodal(counts: np.ndarray) -> bool:
    middle = counts[1:-1]
    return bool(counts[0] > middle.max() and counts[-1] > middle.max() and middle.sum() < 0.3 * counts.sum())


def unimodal(counts: np.ndarray) -> bool:
    n, peak = counts.sum(), int(np.argmax(counts))
    tol = 0.01 * n
    if peak in (0, len(counts) - 1) or counts[0] >= 0.1 * n or counts[-1] >= 0.1 * n:
        return False
    rising = all(counts[k + 1] >= counts[k] - tol for k in range(peak))
    falling = all(counts[k + 1] <= counts[k] + tol for k in range(peak, len(counts) - 1))
    return bool(rising and falling)


def run_variant(name: str, mu: float, spikes: torch.Tensor, w0: torch.Tensor, w_max: float, a_plus: float,
                ltd_ratio: float, tau_syn: float, same_step: str, brian2: bool) -> dict:
    neuron = LIFParams(tau_mem=10e-3, dt=DT, tau_syn=tau_syn or None)
    layer = Dense(spikes.shape[1], 1, neuron, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(w0)
    net = Network([layer], dt=DT).double()
    rule = STDP(a_plus=a_plus * w_max, a_minus=ltd_ratio * a_plus * w_max, tau_plus=20e-3, tau_minus=20e-3,
                mu_plus=mu, mu_minus=mu, w_max=w_max, same_step=same_step)
    start = time.perf_counter()
    out = rule.run_online(net, spikes[:, None, :])
    torch_s = time.perf_counter() - start
    w_t = layer.weight.detach()[0].numpy().copy()
    seconds = spikes.shape[0] * DT
    res = {"variant": name, "mu": mu, "torch_w": w_t.tolist(), "torch_hist": histogram(w_t, w_max).tolist(),
           "torch_rate_hz": float(out.sum()) / seconds, "torch_s": torch_s,
           "torch_rate_last5s_hz": float(out[-5000:].sum()) / min(5.0, seconds)}
    if brian2:
        from neurolearn.backends.brian2_stdp import run_stdp_brian2

        b2 = run_stdp_brian2(neuron, w0, spikes, rule.params, DT)
        w_b = b2.weight[0].numpy()
        res.update(brian2_w=w_b.tolist(), brian2_hist=histogram(w_b, w_max).tolist(),
                   brian2_rate_hz=float(b2.spikes.sum()) / seconds, brian2_s=b2.seconds,
                   max_abs_diff_rel=float(np.abs(w_t - w_b).max() / w_max),
                   mean_abs_diff_rel=float(np.abs(w_t - w_b).mean() / w_max),
                   corr=float(np.corrcoef(w_t, w_b)[0, 1]) if w_t.std() > 0 and w_b.std() > 0 else 1.0,
                   spike_trains_identical=bool(torch.equal(out[:, 0, 0], b2.spikes[:, 0])),
                   first_spike_difference_s=_first_difference(out[:, 0, 0], b2.spikes[:, 0]))
    return res


def _first_difference(a: torch.Tensor, b: torch.Tensor) -> float | None:
    diff = torch.nonzero(a != b)
    return None if len(diff) == 0 else float(diff[0, 0]) * DT


def plot(rows: list[dict], w_max: float, path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 3.4))
    centres = 0.5 * (BINS[:-1] + BINS[1:])
    for ax, r in zip(np.atleast_1d(axes), rows):
        ax.bar(centres - 0.02, r["torch_hist"], width=0.04, label="torch")
        if "brian2_hist" in r:
            ax.bar(centres + 0.02, r["brian2_hist"], width=0.04, label="Brian2")
        ax.set_xlabel("w / w_max")
        ax.set_ylabel("synapses")
        ax.set_title(f"{r['variant']} STDP (μ = {r['mu']:g})")
        ax.legend(fontsize=8)
    save_figure(fig, path)


def main() -> None:
    ap = harness.parser(__doc__, quick="20 s of simulated time instead of 60 s")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=15.0, help="input rate (Hz)")
    ap.add_argument("--w-max", type=float, default=0.015)
    ap.add_argument("--a-plus", type=float, default=0.05, help="A+ in units of w_max (Song: 0.005)")
    ap.add_argument("--ltd-ratio", type=float, default=1.2, help="A-/A+ (Song: 1.05)")
    ap.add_argument("--tau-syn", type=float, default=0.0, help="synaptic current time constant (s; 0: plain LIF)")
    ap.add_argument("--same-step", choices=["none", "ltp"], default="ltp",
                    help="a pre and a post spike in one step: no pair, or pre-before-post (Brian2's STDP.py)")
    ap.add_argument("--no-brian2", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="results file name (default stdp_song[_quick])")
    args = harness.start(ap)
    seconds = args.seconds or (20.0 if args.quick else 60.0)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    T = int(round(seconds / DT))
    spikes = (torch.rand(T, args.inputs, generator=gen, dtype=torch.float64) < args.rate * DT).double()
    w0 = torch.rand(1, args.inputs, generator=gen, dtype=torch.float64) * args.w_max
    rows = [run_variant("additive", 0.0, spikes, w0, args.w_max, args.a_plus, args.ltd_ratio,
                        args.tau_syn, args.same_step, not args.no_brian2),
            run_variant("multiplicative", 1.0, spikes, w0, args.w_max, args.a_plus, args.ltd_ratio,
                        args.tau_syn, args.same_step, not args.no_brian2)]
    add, mult = rows
    summary = {"seconds": seconds, "inputs": args.inputs, "rate_hz": args.rate, "w_max": args.w_max,
               "a_plus_rel": args.a_plus, "ltd_ratio": args.ltd_ratio, "tau_syn": args.tau_syn, "same_step": args.same_step,
               "additive_bimodal": bimodal(np.array(add["torch_hist"])),
               "multiplicative_unimodal": unimodal(np.array(mult["torch_hist"])),
               "additive_hist": add["torch_hist"], "multiplicative_hist": mult["torch_hist"],
               "post_rate_hz": {r["variant"]: round(r["torch_rate_last5s_hz"], 2) for r in rows}}
    if not args.no_brian2:
        summary["brian2_additive_bimodal"] = bimodal(np.array(add["brian2_hist"]))
        summary["brian2_multiplicative_unimodal"] = unimodal(np.array(mult["brian2_hist"]))
        summary["torch_brian2_max_abs_diff_rel"] = {r["variant"]: r["max_abs_diff_rel"] for r in rows}
        summary["torch_brian2_weight_corr"] = {r["variant"]: round(r["corr"], 6) for r in rows}
        summary["torch_brian2_spikes_identical"] = {r["variant"]: r["spike_trains_identical"] for r in rows}
    name = args.name or "stdp_song" + ("_quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    harness.write_results(args, name, {"summary": summary, "rows": rows})
    plot(rows, args.w_max, args.out / f"{name}.png")
    print(f"{'variant':>15} {'hist of w/w_max (10 bins, torch)':>45} {'rate Hz':>8} {'torch s':>8} "
          f"{'b2 s':>7} {'max|dw|/wmax':>13}")
    for r in rows:
        print(f"{r['variant']:>15} {str(r['torch_hist']):>45} {r['torch_rate_last5s_hz']:>8.1f} {r['torch_s']:>8.1f} "
              f"{r.get('brian2_s', float('nan')):>7.1f} {r.get('max_abs_diff_rel', float('nan')):>13.2e}")
    print(f"additive_bimodal: {str(summary['additive_bimodal']).lower()}")
    print(f"multiplicative_unimodal: {str(summary['multiplicative_unimodal']).lower()}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
