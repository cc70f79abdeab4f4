"""Song, Miller & Abbott 2000: additive STDP makes the weights bimodal, multiplicative STDP unimodal
(PLASTICITY.md 4.3), in torch and in Brian2 on the same input spikes.

One LIF neuron (neurolearn's :class:`~neurolearn.neurons.LIFParams`: τ_m 10 ms as Brian2's STDP.py,
threshold 1, reset by subtraction, dt 1 ms) driven by ``--inputs`` Poisson trains at ``--rate`` Hz
through plastic synapses (a spike adds ``w`` to the membrane), initial ``w ~ U(0, w_max)``; STDP of
:mod:`neurolearn.rules.stdp` with τ± 20 ms, all-to-all pairing, ``A+ = --a-plus · w_max``, bounds
``[0, w_max]``, ``same_step="ltp"`` (an input spike counts as before the spike it causes in its
step, as in Brian2's STDP.py), and Song's balance of the *window areas* ``A−τ−/A+τ+ = 1.05``
(``--ltd-ratio``). In discrete time that balance is :meth:`STDPParams.window_integrals`'s ratio:
with the Δ = 0 bin the LTP window has area ``A+ τ`` and the LTD window ``A− (τ − dt)``, so
``A−/A+ = 1.05 · 20/19 = 1.105``. (``A−/A+ = 1.05`` itself makes uncorrelated activity potentiate:
the weights run to ``w_max`` and the neuron to 80 Hz.)

- additive (``μ = 0``, Song et al.): competition drives the weights to the bounds, a U-shaped
  histogram;
- multiplicative (``μ₊ = μ₋ = 1``, Gütig et al. 2003 / van Rossum et al. 2000): a unimodal histogram.

The same input spikes drive :meth:`neurolearn.rules.stdp.STDP.run_online` (weights change every
step) and the Brian2 synapses of :mod:`neurolearn.backends.brian2_stdp`; their final weights are
compared. Criteria (PLASTICITY.md 4.3, on ``w/w_max`` in 10 bins): **bimodal** if the bins
``[0, 0.1)`` and ``[0.9, 1]`` each hold more synapses than any middle bin and the middle 80 % of
the range holds < 30 %; **unimodal** if one interior bin is the peak, the counts do not rise again
away from it (by more than 1 % of the synapses) and each edge bin holds < 10 %. Also printed: the
fraction within 10 % of a bound.

How sharp the U gets is set by ``A+``: the drift that splits the weights grows with ``A+``, their
random walk with ``A+²``, so a smaller ``A+`` gives a sharper split but needs a longer run
(``A+ = 0.02 w_max``, 100-300 s: 38 % of the weights within 10 % of a bound; ``0.01``, 400 s: 53 %;
Song's ``0.005``, 600 s: 64.5 %, middle 35.5 %; 1800 s: 78.8 %, middle 21.2 %). The default is Song's
amplitude for 1800 s of simulated time, with Brian2 run on the first 100 s of the same spikes and its
weights compared with torch's at 100 s (``--brian2-seconds``; Brian2 holds its input as float64, 14 GB
for 1800 s); ``--quick`` uses 4x Song's amplitude for 100 s in both engines (the U shows; the 30 %
criterion is not met).

    python experiments/stdp_song.py            # 1000 inputs, A+ = 0.005 w_max, 1800 s; Brian2 on the first 100 s
    python experiments/stdp_song.py --quick    # 1000 inputs, A+ = 0.02 w_max, 100 s
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
from neurolearn.rules.stdp import STDP, STDPParams

DT = 1e-3
TAU = 20e-3  # τ+ = τ− (Song et al. 2000)
BINS = np.linspace(0.0, 1.0, 11)


def ltd_amplitude(a_plus: float, ratio: float, same_step: str) -> float:
    """``A−`` whose LTD window has ``ratio`` times the LTP window's area at step ``DT``
    (:meth:`~neurolearn.rules.stdp.STDPParams.window_integrals`): Song's ``A−τ−/A+τ+ = 1.05`` in discrete
    time. With ``same_step = "ltp"`` the LTP window has the extra Δ = 0 bin, so ``A−/A+ = 1.05 · 20/19``."""
    i_plus, _ = STDPParams(a_plus=a_plus, a_minus=0.0, tau_plus=TAU, tau_minus=TAU, same_step=same_step).window_integrals(DT)
    _, i_minus_unit = STDPParams(a_plus=0.0, a_minus=1.0, tau_plus=TAU, tau_minus=TAU).window_integrals(DT)
    return ratio * i_plus / i_minus_unit


def edge_fraction(counts: np.ndarray) -> float:
    """The fraction of synapses within 10 % of a bound (``w/w_max`` in ``[0, 0.1)`` or ``[0.9, 1]``)."""
    return float((counts[0] + counts[-1]) / counts.sum())


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
                ltd_ratio: float, tau_syn: float, same_step: str, brian2: bool, tau_mem: float = 10e-3) -> dict:
    neuron = LIFParams(tau_mem=tau_mem, dt=DT, tau_syn=tau_syn or None)
    layer = Dense(spikes.shape[1], 1, neuron, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(w0)
    net = Network([layer], dt=DT).double()
    rule = STDP(a_plus=a_plus * w_max, a_minus=ltd_amplitude(a_plus * w_max, ltd_ratio, same_step), tau_plus=TAU,
                tau_minus=TAU, mu_plus=mu, mu_minus=mu, w_max=w_max, same_step=same_step)
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
    ap = harness.parser(__doc__, quick="100 s of simulated time at A+ = 0.02 w_max instead of 1800 s at 0.005")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--inputs", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=15.0, help="input rate (Hz)")
    ap.add_argument("--w-max", type=float, default=0.015)
    ap.add_argument("--a-plus", type=float, default=None,
                    help="A+ in units of w_max (default Song's 0.005; --quick 0.02)")
    ap.add_argument("--ltd-ratio", type=float, default=1.05,
                    help="LTD/LTP window areas A-τ-/A+τ+ at the step dt (Song: 1.05; A-/A+ follows)")
    ap.add_argument("--tau-mem", type=float, default=10e-3, help="membrane time constant (s)")
    ap.add_argument("--tau-syn", type=float, default=0.0, help="synaptic current time constant (s; 0: plain LIF)")
    ap.add_argument("--same-step", choices=["none", "ltp"], default="ltp",
                    help="a pre and a post spike in one step: no pair, or pre-before-post (Brian2's STDP.py)")
    ap.add_argument("--no-brian2", action="store_true")
    ap.add_argument("--brian2-seconds", type=float, default=None,
                    help="Brian2 runs the first this many seconds of the same spikes and its weights are compared "
                         "with torch's at that time (default: 100 s; --quick: the whole run). Brian2 holds its input "
                         "as float64: 1800 s would take 14 GB")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="results file name (default stdp_song[_quick])")
    args = harness.start(ap)
    seconds = args.seconds or (100.0 if args.quick else 1800.0)
    if not seconds > 0:
        raise SystemExit(f"error: --seconds must be > 0, got {seconds}")
    if args.a_plus is None:
        args.a_plus = 0.02 if args.quick else 0.005
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    T = int(round(seconds / DT))
    spikes = torch.empty(T, args.inputs, dtype=torch.uint8)  # 1 byte a spike: 400 s x 1000 inputs = 0.4 GB
    for t0 in range(0, T, 10_000):
        chunk = torch.rand(min(10_000, T - t0), args.inputs, generator=gen, dtype=torch.float64)
        spikes[t0:t0 + len(chunk)] = chunk < args.rate * DT
    w0 = torch.rand(1, args.inputs, generator=gen, dtype=torch.float64) * args.w_max
    if args.brian2_seconds is not None and not args.brian2_seconds > 0:
        raise SystemExit(f"error: --brian2-seconds must be > 0, got {args.brian2_seconds}")
    b2_seconds = min(args.brian2_seconds or (seconds if args.quick else 100.0), seconds)
    prefix = spikes[:int(round(b2_seconds / DT))]
    full_b2 = not args.no_brian2 and prefix.shape[0] == T
    settings = (args.w_max, args.a_plus, args.ltd_ratio, args.tau_syn, args.same_step)
    rows = [run_variant(v, mu, spikes, w0, *settings, full_b2, args.tau_mem)
            for v, mu in (("additive", 0.0), ("multiplicative", 1.0))]
    if not args.no_brian2 and not full_b2:  # Brian2 on the first b2_seconds of the same spikes, beside torch's
        for r, mu in zip(rows, (0.0, 1.0)):
            check = run_variant(r["variant"], mu, prefix, w0, *settings, True, args.tau_mem)
            r.update({k: v for k, v in check.items() if k.startswith(("brian2_", "max_abs", "mean_abs", "corr",
                                                                       "spike_trains", "first_spike"))},
                     torch_hist_at_brian2_seconds=check["torch_hist"])
            r["brian2_hist_at_brian2_seconds"] = r.pop("brian2_hist")  # not the final weights: not plotted beside them
    add, mult = rows
    summary = {"seconds": seconds, "brian2_seconds": None if args.no_brian2 else b2_seconds,
               "inputs": args.inputs, "rate_hz": args.rate, "w_max": args.w_max,
               "a_plus_rel": args.a_plus, "ltd_ratio": args.ltd_ratio, "tau_syn": args.tau_syn, "same_step": args.same_step,
               "tau_mem": args.tau_mem,
               "a_minus_over_a_plus": ltd_amplitude(1.0, args.ltd_ratio, args.same_step),
               "additive_bimodal": bimodal(np.array(add["torch_hist"])),
               "multiplicative_unimodal": unimodal(np.array(mult["torch_hist"])),
               "additive_hist": add["torch_hist"], "multiplicative_hist": mult["torch_hist"],
               "additive_middle_fraction": float(np.sum(add["torch_hist"][1:-1]) / np.sum(add["torch_hist"])),
               "additive_edge_fraction": edge_fraction(np.array(add["torch_hist"])),
               "multiplicative_edge_fraction": edge_fraction(np.array(mult["torch_hist"])),
               "post_rate_hz": {r["variant"]: round(r["torch_rate_last5s_hz"], 2) for r in rows}}
    if not args.no_brian2:
        if full_b2:
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
    print(f"additive within 10 % of a bound: {summary['additive_edge_fraction']:.3f}")
    if not args.no_brian2:
        print(f"torch vs Brian2 on the first {b2_seconds:g} s, max |w_torch - w_brian2| / w_max: " + ", ".join(
            f"{k} {v:.2e}" for k, v in summary["torch_brian2_max_abs_diff_rel"].items()))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
