"""Calibration of the bimodality criterion: Brian2's own Song, Miller & Abbott 2000 example.

Runs Brian2's ``examples/synapses/STDP.py`` with its parameters unchanged (PLASTICITY.md 4.3:
1000 Poisson inputs at 15 Hz onto one conductance-based integrate-and-fire neuron, τ_m 10 ms,
E_L −74 mV, V_t −54 mV, V_r −60 mV, τ_e 5 ms, g_max 0.01, A+ = 0.01 g_max, A− = −1.05 A+ τ+/τ−,
τ± 20 ms, Euler at Brian2's default dt 0.1 ms) and reports the histogram of ``w/g_max`` in 10
bins, the fraction in the middle 80 % of the range, and whether both edge bins exceed every middle
bin. This is the reference the criterion of ``experiments/stdp_song.py`` (PLASTICITY.md 4.3:
"middle < 30 %", marked *ours; calibrate against Brian2 once*) is calibrated against: the
reference implementation itself must pass a criterion for bimodality.

    python experiments/stdp_song_reference.py            # 600 s of simulated time (~7 min with Cython)
    python experiments/stdp_song_reference.py --quick    # 100 s

Last stdout line: {"seconds": ..., "hist": [...], "middle_fraction": ..., "edges_above_middle": ...,
"strict_30_bimodal": ...}.
"""

from __future__ import annotations

import numpy as np

from neurolearn import harness


def run_reference(seconds: float, seed: int) -> dict:
    """Brian2's STDP.py example for ``seconds`` of simulated time; the final weights' histogram."""
    try:
        import brian2 as b2
    except ImportError as exc:  # pragma: no cover - brian2 is a dev dependency
        raise SystemExit("error: this experiment needs brian2: pip install neurolearn[brian2]") from exc
    b2.start_scope()
    b2.seed(seed)
    ms, mV, Hz, second = b2.ms, b2.mV, b2.Hz, b2.second
    taum, taupre, taupost, taue = 10 * ms, 20 * ms, 20 * ms, 5 * ms
    Ee, vt, vr, El = 0 * mV, -54 * mV, -60 * mV, -74 * mV  # noqa: F841 - read by Brian2's equations
    gmax = 0.01
    dApre = 0.01 * gmax
    dApost = -0.01 * taupre / taupost * 1.05 * gmax  # noqa: F841
    inputs = b2.PoissonGroup(1000, rates=15 * Hz)
    neuron = b2.NeuronGroup(1, "dv/dt = (ge * (Ee-v) + El - v) / taum : volt\ndge/dt = -ge / taue : 1",
                            threshold="v>vt", reset="v = vr", method="euler")
    syn = b2.Synapses(inputs, neuron,
                      "w : 1\ndApre/dt = -Apre / taupre : 1 (event-driven)\n"
                      "dApost/dt = -Apost / taupost : 1 (event-driven)",
                      on_pre="ge += w\nApre += dApre\nw = clip(w + Apost, 0, gmax)",
                      on_post="Apost += dApost\nw = clip(w + Apre, 0, gmax)")
    syn.connect()
    syn.w = "rand() * gmax"
    spikes = b2.SpikeMonitor(neuron)
    b2.run(seconds * second, namespace={**locals()})
    w = np.asarray(syn.w) / gmax
    counts = np.histogram(w, bins=10, range=(0.0, 1.0))[0]
    middle = counts[1:-1]
    return {"seconds": seconds, "hist": counts.tolist(),
            "middle_fraction": float(middle.sum() / counts.sum()),
            "edge_fraction": float((counts[0] + counts[-1]) / counts.sum()),
            "edges_above_middle": bool(counts[0] > middle.max() and counts[-1] > middle.max()),
            "strict_30_bimodal": bool(counts[0] > middle.max() and counts[-1] > middle.max()
                                      and middle.sum() < 0.3 * counts.sum()),
            "post_rate_hz": float(spikes.num_spikes / seconds)}


def main() -> None:
    ap = harness.parser(__doc__, quick="100 s of simulated time instead of 600 s")
    ap.add_argument("--seconds", type=float, default=None, help="simulated time (s)")
    ap.add_argument("--seed", type=int, default=0)
    args = harness.start(ap)
    seconds = args.seconds or (100.0 if args.quick else 600.0)
    result = run_reference(seconds, args.seed)
    table = [f"Brian2 examples/synapses/STDP.py, {seconds:g} s: w/g_max histogram {result['hist']}",
             f"middle 80 % of the range: {result['middle_fraction']:.3f}; both edge bins above every middle bin: "
             f"{result['edges_above_middle']}; post rate {result['post_rate_hz']:.1f} Hz"]
    harness.finish(args, "stdp_song_reference" + ("_quick" if args.quick else ""), result, table=table)


if __name__ == "__main__":
    main()
