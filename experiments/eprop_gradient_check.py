"""e-prop against BPTT where the factorisation is exact (PLASTICITY.md §2.10), in float64.

Network of §2.10's checks: 3 inputs (100 Hz Poisson), 8 LIF or 8 ALIF neurons (τ_m 20 ms, θ0 0.62;
ALIF: τ_a 500 ms, β_a 0.07, 2 ms refractory), a leaky readout of 2 units (τ 20 ms), T = 50 steps of 1 ms,
batch 4; BPTT uses e-prop's pseudo-derivative (γ = 0.3) as its surrogate. Cases:

- ``exact``: W_rec = 0 and the reset detached (as the neurons do by default), symmetric feedback: every
  path through a spike is the readout's (and the neuron's own adaptation, which ε^a carries), so
  e-prop's update must equal the BPTT gradient of every parameter (W_in, W_rec, biases, readout),
  for MSE to per-step targets and for cross-entropy on the windowed mean readout;
- ``truncated``: W_rec != 0, e-prop against autograd through the network with the recurrent spikes
  detached (e-prop is that network's exact gradient);
- ``with recurrence``: the same e-prop against full BPTT (not equal: the approximation e-prop makes).

    python experiments/eprop_gradient_check.py

Last stdout line: JSON with ``max_rel_err`` (exact cases; must be <= 1e-5), ``max_rel_err_truncated``
and ``rel_err_with_recurrence`` (how far e-prop is from BPTT once the recurrence carries gradient).
Relative error: max over parameters of ``max|g_eprop − g_bptt| / max|g_bptt|``.
"""

from __future__ import annotations

import json

import torch

from neurolearn import harness
from neurolearn.io import write_json
from neurolearn.layers import Dense, LayerState
from neurolearn.network import Network
from neurolearn.neurons import ALIFParams, LIFParams, LIParams
from neurolearn.objectives import Objective
from neurolearn.plotting import pyplot, save_figure
from neurolearn.rules.eprop import EProp
from neurolearn.rules.eprop_traces import pseudo_spike

GAMMA, THETA = 0.3, 0.62


def network(kind: str, rec_zero: bool, classification: bool, seed: int) -> Network:
    torch.manual_seed(seed)
    if kind == "alif":
        neuron = ALIFParams(tau_mem=20e-3, threshold=THETA, tau_adapt=500e-3, adapt_scale=0.07, refractory=2e-3)
    else:
        neuron = LIFParams(tau_mem=20e-3, threshold=THETA)
    hidden = Dense(3, 8, neuron, recurrent=True, init="normal", init_gain=12.0, recurrent_init="normal",
                   recurrent_gain=4.0)
    readout = Dense(8, 2, LIParams(tau=20e-3), init="normal", init_gain=10.0)
    net = Network([hidden, readout], decode="mean" if classification else "all",
                  decode_window=10 if classification else None).double()
    if rec_zero:
        with torch.no_grad():
            hidden.recurrent_weight.zero_()
    hidden._spike_fn = pseudo_spike(GAMMA, THETA)
    return net


def autograd(net: Network, x, y, objective, cut_recurrence: bool) -> dict[str, torch.Tensor]:
    net.zero_grad(set_to_none=True)
    state, outs = net.init_state(x.shape[1]), []
    for t in range(x.shape[0]):
        out, state, _ = net.step(x[t], state)
        if cut_recurrence:
            state = [LayerState(state[0].neuron, state[0].prev.detach()), state[1]]
        outs.append(out)
    objective.loss(net.decode_output(torch.stack(outs)), y).mean().backward()
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def eprop(net: Network, x, y, objective) -> dict[str, torch.Tensor]:
    net.zero_grad(set_to_none=True)
    EProp(feedback="symmetric", autapses=True).estimate_gradients(net, x, y, objective)
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def rel_err(a: dict, b: dict) -> float:
    return max(float((a[n] - b[n]).abs().max() / a[n].abs().max().clamp_min(1e-300)) for n in a)


def main(argv: list[str] | None = None) -> dict:
    ap = harness.parser(__doc__, quick="(the check takes seconds anyway)")
    ap.add_argument("--seeds", type=int, default=3)
    args = harness.start(ap, argv)
    torch.set_num_threads(1)
    rows = []
    for kind in ("lif", "alif"):
        for task in ("regression", "classification"):
            for seed in range(args.seeds):
                cls = task == "classification"
                g = torch.Generator().manual_seed(100 + seed)
                x = (torch.rand(50, 4, 3, generator=g, dtype=torch.float64) < 0.1).double()
                if cls:
                    y, obj = torch.randint(0, 2, (4,), generator=g), Objective("classification")
                else:
                    y, obj = torch.randn(50, 4, 2, generator=g, dtype=torch.float64), Objective("sequence_regression")
                exact_net = network(kind, True, cls, seed)
                rate = float(exact_net.run(x, record=("act",)).layers[0].act.detach().mean()) / 1e-3
                exact = rel_err(autograd(exact_net, x, y, obj, False), eprop(exact_net, x, y, obj))
                rec_net = network(kind, False, cls, seed)
                ep = eprop(rec_net, x, y, obj)
                trunc = rel_err(autograd(rec_net, x, y, obj, True), ep)
                full = rel_err(autograd(rec_net, x, y, obj, False), ep)
                rows.append(dict(neuron=kind, task=task, seed=seed, rate_hz=rate, exact=exact, truncated=trunc,
                                 with_recurrence=full))
    print(f"{'neuron':6s} {'task':15s} {'seed':>4s} {'rate Hz':>8s} {'exact (W_rec=0)':>16s} "
          f"{'truncated':>10s} {'vs full BPTT':>13s}")
    for r in rows:
        print(f"{r['neuron']:6s} {r['task']:15s} {r['seed']:4d} {r['rate_hz']:8.1f} {r['exact']:16.2e} "
              f"{r['truncated']:10.2e} {r['with_recurrence']:13.2e}")
    result = {"max_rel_err": max(r["exact"] for r in rows),
              "max_rel_err_truncated": max(r["truncated"] for r in rows),
              "rel_err_with_recurrence": min(r["with_recurrence"] for r in rows)}
    result["pass"] = result["max_rel_err"] <= 1e-5 and result["max_rel_err_truncated"] <= 1e-5
    write_json(args.out / "eprop_gradient_check.json", {"rows": rows, **result})
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    labels = [f"{r['neuron']}/{r['task'][:3]}/{r['seed']}" for r in rows]
    for key, mark in (("exact", "o"), ("truncated", "s"), ("with_recurrence", "^")):
        ax.semilogy(range(len(rows)), [max(r[key], 1e-17) for r in rows], mark, label=key.replace("_", " "))
    ax.axhline(1e-5, color="gray", lw=0.8, ls="--")
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=6)
    ax.set_ylabel("max rel. error vs autograd")
    ax.legend(fontsize=7)
    save_figure(fig, args.out / "eprop_gradient_check.png", dpi=120)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
