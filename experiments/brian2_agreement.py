"""Agreement of the Brian2 backend with the torch engine: same weights, same inputs.

Networks (fixed seeds, float64 in both engines unless stated):

- rate: 64-48(tanh)-32(leaky ReLU, leaky integrator tau = 4 ms, recurrent)-10(linear) on
  digits-sized inputs, T = 10 steps, 16 samples: maximum relative error of every tap;
- LIF: 64-48(LIF, subtract, recurrent)-10(LI), Bernoulli rate-coded digits, T = 30, 16 samples;
- CubaLIF: 64-48(CubaLIF, reset to value)-10(LI), same inputs;
- the same LIF network with the torch engine in float32 (Brian2 always computes in float64);
- CubaLIF with Brian2's own joint Euler step (``cuba_update="brian2"``: v sees the old i_syn),
  the one documented discretisation difference;
- the new neuron models, each as a recurrent 64-48 layer and an LI readout on Bernoulli inputs:
  ALIF (tau_a 100 ms, adapt_scale 0.3, 3 ms refractory, dt 1 ms), Izhikevich (chattering, dt 0.5 ms,
  T = 200 steps) and AdEx (the paper's regular-spiking set, dt 0.1 ms, T = 300 steps).

    python experiments/brian2_agreement.py [--quick]

Last stdout line: {"rate_max_rel_err": ..., "lif_spike_match": ..., "alif_spike_match": ...,
"izhikevich_spike_match": ..., "adex_spike_match": ...} where a spike match is the fraction of
(step, sample, neuron) spike entries that are equal in both engines (1.0 = identical spike trains;
lif_spike_match: the worse of the float64 LIF and CubaLIF networks).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


from neurolearn import harness
from neurolearn import Dense, LIFParams, LIParams, Network, RateParams
from neurolearn.backends.brian2 import run_brian2
from neurolearn.neurons import AdExParams, ALIFParams, IzhikevichParams
from neurolearn.data import load_dataset
from neurolearn.plotting import pyplot, save_figure



def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def spiking(neuron: LIFParams, recurrent: bool) -> Network:
    torch.manual_seed(0)
    return Network([Dense(64, 48, neuron, recurrent=recurrent, init_gain=2.0), Dense(48, 10, LIParams(tau=10e-3))])


def new_model(neuron, gain: float, positive: bool) -> Network:
    """A recurrent 64-48 layer of ``neuron`` and an LI readout; input weights scaled by ``gain``
    (made excitatory for the models whose membrane is in mV or volts and that rest far below threshold)."""
    torch.manual_seed(0)
    net = Network([Dense(64, 48, neuron, recurrent=True), Dense(48, 10, LIParams(tau=10e-3, dt=neuron.dt))],
                  dt=neuron.dt)
    with torch.no_grad():
        net.layers[0].weight.mul_(gain)
        net.layers[0].recurrent_weight.mul_(0.2 * gain)
        if positive:
            net.layers[0].weight.abs_()
    return net.double()


NEW_MODELS = {  # name: (neuron, input gain, excitatory inputs, steps)
    "alif": (ALIFParams(tau_mem=10e-3, tau_adapt=0.1, adapt_scale=0.3, refractory=3e-3), 2.0, False, 30),
    "izhikevich": (IzhikevichParams(regime="CH", dt=0.5e-3), 8.0, True, 200),
    "adex": (AdExParams(), 0.01, True, 300),
}


def compare_spiking(name: str, net: Network, x: torch.Tensor, **kw) -> dict:
    ref = net.run(x)
    ours = run_brian2(net, x, **kw)
    spikes_ref = ref.layers[0].act
    spikes_b2 = ours.layers[0].act
    return dict(
        net=name,
        spikes_torch=int(spikes_ref.sum()),
        spikes_brian2=int(spikes_b2.sum()),
        spike_match=float((spikes_ref == spikes_b2).double().mean()),
        identical=bool(torch.equal(spikes_ref, spikes_b2)),
        samples_identical=int(sum(torch.equal(spikes_ref[:, b], spikes_b2[:, b]) for b in range(x.shape[1]))),
        mem_max_rel_err=rel(ours.layers[0].mem, ref.layers[0].mem),
        output_max_rel_err=rel(ours.output, ref.output),
    )


def main() -> None:
    ap = harness.parser(__doc__, quick="4 samples instead of 16")
    args = harness.start(ap)
    batch = 4 if args.quick else 16
    data = load_dataset("digits")
    x_static = data.x_test[:batch].double()

    # rate network
    torch.manual_seed(0)
    rate = Network([
        Dense(64, 48, RateParams("tanh")),
        Dense(48, 32, RateParams("leaky_relu", tau=4e-3), recurrent=True),
        Dense(32, 10, None),
    ]).double()
    xr = x_static.unsqueeze(0).expand(10, *x_static.shape)
    ref, ours = rate.run(xr), run_brian2(rate, xr)
    rate_errs = {f"layer{k}.{f}": rel(getattr(a, f), getattr(b, f))
                 for k, (a, b) in enumerate(zip(ours.layers, ref.layers)) for f in ("pre", "act")}
    rate_errs["output"] = rel(ours.output, ref.output)
    rate_max = max(rate_errs.values())

    gen = torch.Generator().manual_seed(0)
    xs = torch.bernoulli(x_static.unsqueeze(0).expand(30, *x_static.shape), generator=gen)
    rows = [
        compare_spiking("LIF subtract, recurrent (float64)", spiking(LIFParams(tau_mem=10e-3), True).double(), xs),
        compare_spiking("CubaLIF reset-to-value (float64)",
                        spiking(LIFParams(tau_mem=10e-3, tau_syn=5e-3, reset="value"), False).double(), xs),
        compare_spiking("LIF subtract, recurrent (torch float32)", spiking(LIFParams(tau_mem=10e-3), True), xs.float()),
        compare_spiking("CubaLIF, Brian2 joint Euler (float64)",
                        spiking(LIFParams(tau_mem=10e-3, tau_syn=5e-3, reset="value"), False).double(), xs,
                        cuba_update="brian2"),
    ]
    spike_match = min(r["spike_match"] for r in rows[:2])
    new_matches = {}
    for name, (neuron, gain, positive, steps) in NEW_MODELS.items():
        xn = torch.bernoulli(0.5 * x_static.unsqueeze(0).expand(steps, *x_static.shape) / x_static.max(),
                             generator=torch.Generator().manual_seed(1))
        row = compare_spiking(f"{name} recurrent (float64, dt {neuron.dt * 1e3:g} ms, T {steps})",
                              new_model(neuron, gain, positive), xn)
        rows.append(row)
        new_matches[f"{name}_spike_match"] = row["spike_match"]

    print(f"rate net 64-48-32r-10, T=10, {batch} samples: max relative error over taps {rate_max:.2e}")
    print(f"{'network':48s} {'spikes torch':>12s} {'brian2':>7s} {'match':>8s} {'identical':>9s} {'mem rel err':>11s}")
    for r in rows:
        print(f"{r['net']:48s} {r['spikes_torch']:12d} {r['spikes_brian2']:7d} {r['spike_match']:8.5f} "
              f"{str(r['identical']):>9s} {r['mem_max_rel_err']:11.2e}")
    result = dict(batch=batch, rate_errors=rate_errs, rate_max_rel_err=rate_max, spiking=rows,
                  lif_spike_match=spike_match, **new_matches)
    harness.write_results(args, "brian2_agreement", result)
    plot(rate, xs, rows, harness.results_path(args, "brian2_agreement.png"))
    print(json.dumps({"rate_max_rel_err": rate_max, "lif_spike_match": spike_match, **new_matches}))


def plot(_rate, xs: torch.Tensor, rows: list[dict], path: Path) -> None:
    """Raster of sample 0 of the float64 LIF net in both engines (overlaid)."""
    plt = pyplot()

    net = spiking(LIFParams(tau_mem=10e-3), True).double()
    ref, ours = net.run(xs[:, :1]), run_brian2(net, xs[:, :1])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for rec, style, label in ((ref, dict(marker="o", s=18, facecolors="none", edgecolors="C0"), "torch"),
                              (ours, dict(marker="x", s=10, c="C3"), "Brian2")):
        t, n = torch.nonzero(rec.layers[0].act[:, 0], as_tuple=True)
        axes[0].scatter(t, n, label=label, **style)
    axes[0].set_xlabel("step (1 ms)")
    axes[0].set_ylabel("neuron")
    axes[0].set_title("LIF layer spikes, sample 0")
    axes[0].legend(fontsize=7)
    axes[1].plot(ref.layers[0].mem[:, 0, :3].detach(), lw=2, alpha=0.5)
    axes[1].plot(ours.layers[0].mem[:, 0, :3], "k:", lw=1)
    axes[1].set_title("membrane (torch solid, Brian2 dotted)")
    axes[1].set_xlabel("step")
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main()
