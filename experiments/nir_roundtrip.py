"""NIR round trips, spike for spike, on test inputs.

1. neurolearn -> NIR file -> neurolearn (LIF + recurrent CubaLIF + LI readout);
2. neurolearn -> NIR file -> snnTorch ``import_from_nir`` (reset to zero, feed-forward LIF +
   CubaLIF: snnTorch 1.0 + nirtorch 2.6 fail to build recurrent sub-graphs on import, and
   snnTorch has no LI node);
3. a graph exported by snnTorch ``export_to_nir`` -> neurolearn, compared with snnTorch's own run.

Inputs: Bernoulli spike trains made from digits images (scikit-learn, offline), 64 inputs.
Prints a table, writes experiments/results/nir_roundtrip.{json,png}; the last stdout line is
the JSON ``{"neurolearn_roundtrip_equal", "snntorch_import_equal", "snntorch_export_equal"}``.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from neurolearn import harness
from neurolearn.plotting import pyplot, save_figure



def inputs(n: int, steps: int, seed: int = 0) -> torch.Tensor:
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().data[:n], dtype=torch.float32) / 16.0
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x.unsqueeze(0).expand(steps, *x.shape).contiguous(), generator=g)


def neurolearn_net(recurrent: bool, readout: bool, v_reset: float):
    from neurolearn.layers import Dense
    from neurolearn.network import Network
    from neurolearn.neurons import LIFParams, LIParams

    torch.manual_seed(0)
    layers = [Dense(64, 100, LIFParams(tau_mem=20e-3, reset="value", v_reset=v_reset), init_gain=2.0),
              Dense(100, 50, LIFParams(tau_mem=20e-3, tau_syn=5e-3, reset="value", v_reset=v_reset),
                    recurrent=recurrent, init_gain=2.0, recurrent_gain=0.3)]
    layers.append(Dense(50, 10, LIParams(tau=10e-3)) if readout else
                  Dense(50, 10, LIFParams(tau_mem=20e-3, reset="value"), init_gain=3.0))
    return Network(layers, decode="mean", dt=1e-3)


def compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    return {"equal": bool(torch.equal(a, b)), "mismatches": int((a != b).sum()), "spikes": int(a.sum()),
            "entries": a.numel()}


def case_neurolearn(x: torch.Tensor, tmp: Path) -> dict:
    from neurolearn.export.nir import read, write

    net = neurolearn_net(recurrent=True, readout=True, v_reset=-0.2)
    write(tmp / "nl.nir", net)
    back = read(tmp / "nl.nir")
    with torch.no_grad():
        ra, rb = net.run(x), back.run(x)
    spikes_a = torch.cat([ra.layers[k].act.flatten() for k in (0, 1)])
    spikes_b = torch.cat([rb.layers[k].act.flatten() for k in (0, 1)])
    out = compare(spikes_a, spikes_b)
    out["readout_max_abs_diff"] = float((ra.output - rb.output).abs().max())
    out["trace"] = ra.layers[1].act[:, 0].numpy()
    return out


def case_snntorch_import(x: torch.Tensor, tmp: Path) -> dict:
    import nir
    from snntorch.import_nir import import_from_nir

    from neurolearn.export.nir import write

    net = neurolearn_net(recurrent=False, readout=False, v_reset=0.0)
    write(tmp / "sn.nir", net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sn = import_from_nir(nir.read(tmp / "sn.nir"))
    outs, state = [], None
    with torch.no_grad():
        for t in range(x.shape[0]):
            o, state = sn(x[t]) if state is None else sn(x[t], state)
            outs.append(o)
        ours = net.run(x).output
    return compare(ours, torch.stack(outs))


def case_snntorch_export(x: torch.Tensor) -> dict:
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    from neurolearn.export.nir import from_nir

    torch.manual_seed(1)
    fc1, fc2, fc3 = torch.nn.Linear(64, 100), torch.nn.Linear(100, 50), torch.nn.Linear(50, 10)
    with torch.no_grad():
        fc1.weight.mul_(2.0), fc2.weight.mul_(3.0), fc3.weight.mul_(3.0)
    lif1 = snn.Leaky(beta=torch.full((100,), 0.9), threshold=torch.ones(100), reset_mechanism="zero",
                     init_hidden=True)
    lif2 = snn.Synaptic(alpha=torch.full((50,), 0.6), beta=torch.full((50,), 0.85), threshold=torch.ones(50),
                        reset_mechanism="zero", reset_delay=False, init_hidden=True)
    lif3 = snn.Leaky(beta=torch.full((10,), 0.9), threshold=torch.ones(10), reset_mechanism="zero",
                     init_hidden=True, output=True)
    model = torch.nn.Sequential(fc1, lif1, fc2, lif2, fc3, lif3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(model, torch.zeros(1, 64), ignore_dims=[0])
    net = from_nir(graph)
    with torch.no_grad():
        for m in (lif1, lif2, lif3):
            m.reset_mem()
        lif2.syn = torch.zeros(0)
        ref = torch.stack([model(x[t])[0] for t in range(x.shape[0])])
        ours = net.run(x).output
    return compare(ours, ref)


def main() -> None:
    ap = harness.parser(__doc__, quick="16 inputs of 20 steps instead of 64 of 50")
    args = harness.start(ap)
    n, steps = (16, 20) if args.quick else (64, 50)
    x = inputs(n, steps)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        res = {"neurolearn -> NIR -> neurolearn": case_neurolearn(x, tmp),
               "neurolearn -> NIR -> snnTorch import_from_nir": case_snntorch_import(x, tmp),
               "snnTorch export_to_nir -> neurolearn": case_snntorch_export(x)}
    trace = res["neurolearn -> NIR -> neurolearn"].pop("trace")
    print(f"inputs: {n} digits images, {steps} steps of Bernoulli spikes")
    print(f"{'round trip':48s} {'equal':>6s} {'mismatches':>11s} {'spikes':>8s} {'entries':>9s}")
    for name, r in res.items():
        print(f"{name:48s} {str(r['equal']):>6s} {r['mismatches']:>11d} {r['spikes']:>8d} {r['entries']:>9d}")
    print(f"LI readout max |diff| after the neurolearn round trip: "
          f"{res['neurolearn -> NIR -> neurolearn']['readout_max_abs_diff']:.3g}")
    summary = {"neurolearn_roundtrip_equal": res["neurolearn -> NIR -> neurolearn"]["equal"],
               "snntorch_import_equal": res["neurolearn -> NIR -> snnTorch import_from_nir"]["equal"],
               "snntorch_export_equal": res["snnTorch export_to_nir -> neurolearn"]["equal"]}
    harness.write_results(args, "nir_roundtrip", {"inputs": n, "steps": steps, "cases": res, **summary})
    try:
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(7, 3))
        t, i = np.nonzero(trace)
        ax.scatter(t, i, s=3, c="k")
        ax.set(xlabel="step", ylabel="neuron", title="CubaLIF layer spikes (identical after the NIR round trip)")
        save_figure(fig, harness.results_path(args, "nir_roundtrip.png"), dpi=120)
    except Exception as exc:  # the figure is a by-product
        print(f"(no figure: {exc})")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
