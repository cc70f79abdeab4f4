"""A LIF reservoir on digits (or MNIST): closed-form readout vs a gradient-trained readout.

Reservoir: Bernoulli rate-coded input (T steps of 1 ms) into a recurrent LIF population
(random input and recurrent weights, never trained), read out by a leaky integrator whose
mean membrane over time is the logit (decode "mean"). The readout is linear in its weights,
so its decoded output is ``[W b] [φ; 1]`` with ``φ`` the reservoir spikes filtered by the
readout's own leak (neurolearn.readout.readout_features). Both readouts use the same
features (extracted once, timed separately):

- closed form: one ridge solve on one-hot targets (and the ZORB-style softmax-inverse
  refinement) - ``neurolearn.readout.fit_readout``;
- gradient: Adam on the cross-entropy of the same linear readout (mini-batches of 64).

The fitted readout is checked by running the network itself on the test set.

    python experiments/reservoir_readout.py            # digits, 1000 LIF neurons, T = 25
    python experiments/reservoir_readout.py --quick    # 300 neurons, T = 15
    python experiments/reservoir_readout.py --data mnist --train-limit 10000

Last stdout line: JSON {"closed_form_test_acc", "closed_form_fit_s", "gradient_test_acc", "gradient_fit_s",
"feature_s"}.
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

from neurolearn import harness
from neurolearn.data import load_dataset
from neurolearn.encoders import Encoder
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams
from neurolearn.readout import fit_readout, readout_features
from neurolearn.plotting import pyplot, save_figure



def reservoir(n_in: int, units: int, steps: int, seed: int) -> Network:
    torch.manual_seed(seed)
    res = Dense(n_in, units, LIFParams(tau_mem=20e-3), recurrent=True, init="xavier_uniform", init_gain=4.0,
                recurrent_init="normal", recurrent_gain=1.0)
    with torch.no_grad():  # sparse-ish random recurrence, spectral scale ~0.5 of threshold
        res.recurrent_weight.normal_(0.0, 0.5 / units ** 0.5)
    return Network([res, Dense(units, 10, LIParams(tau=20e-3))], encoder=Encoder("rate", steps=steps), decode="mean")


def features(model: Network, x: torch.Tensor, seed: int, chunk: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    phis, offs = [], []
    for i in range(0, x.shape[0], chunk):
        p, o = readout_features(model, model.encode(x[i:i + chunk], gen))
        phis.append(p)
        offs.append(o)
    return torch.cat(phis), torch.cat(offs)


def main() -> None:
    ap = harness.parser(__doc__, raw=True)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=100, help="Adam epochs of the gradient readout")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = harness.start(ap)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.units, args.steps, args.epochs = 300, 15, 40
    opts = {"train_limit": args.train_limit} if args.train_limit else {}
    ds = load_dataset(args.data, **opts)
    xtr, xte = ds.x_train.flatten(1), ds.x_test.flatten(1)
    model = reservoir(xtr.shape[1], args.units, args.steps, args.seed)
    print(f"{ds.name}: LIF reservoir {xtr.shape[1]}-{args.units}(recurrent LIF)-10(LI), T = {args.steps}, "
          f"{xtr.shape[0]} train / {xte.shape[0]} test", flush=True)

    t0 = time.perf_counter()
    ftr = features(model, xtr, args.seed)
    feature_s = time.perf_counter() - t0
    fte = features(model, xte, args.seed + 1)
    rate = float(ftr[0][:, :-1].mean())
    print(f"features: {feature_s:.1f} s for the training set (mean filtered activity {rate:.3f})", flush=True)

    rows = {}
    for target in ("onehot", "softmax"):
        fit = fit_readout(model, xtr, ds.y_train, ridge=args.ridge, target=target, features=ftr)
        w = torch.cat([model.layers[-1].weight.T, model.layers[-1].bias[None]]).double()
        acc = float(((fte[0] @ w + fte[1]).argmax(1) == ds.y_test).double().mean())
        rows[f"closed form ({target})"] = {"fit_s": fit.solve_s, "train_acc": fit.train_accuracy, "test_acc": acc}
    # the network itself, run with the fitted readout (fresh spikes), agrees with the feature model
    with torch.no_grad():
        gen = torch.Generator().manual_seed(123)
        net_acc = float(torch.cat([model.predict(xte[i:i + 500], gen).argmax(1) == ds.y_test[i:i + 500]
                                   for i in range(0, xte.shape[0], 500)]).double().mean())

    # gradient-trained readout on the same features
    torch.manual_seed(args.seed)
    phi_tr, phi_te = ftr[0].float(), fte[0].float()
    lin = torch.nn.Linear(phi_tr.shape[1], 10, bias=False)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(args.seed)
    curve = []
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(phi_tr.shape[0], generator=gen)
        for i in range(0, phi_tr.shape[0], 64):
            idx = order[i:i + 64]
            loss = F.cross_entropy(lin(phi_tr[idx]) + ftr[1][idx].float(), ds.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            curve.append((time.perf_counter() - t0,
                          float(((lin(phi_te) + fte[1].float()).argmax(1) == ds.y_test).float().mean())))
    grad_s = time.perf_counter() - t0
    with torch.no_grad():
        g_train = float((lin(phi_tr).argmax(1) == ds.y_train).float().mean())
    rows["gradient (Adam, CE)"] = {"fit_s": grad_s, "train_acc": g_train, "test_acc": curve[-1][1]}

    print()
    print("| readout | fit time (s) | train acc | test acc |")
    print("|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['fit_s']:.3f} | {r['train_acc']:.4f} | {r['test_acc']:.4f} |")
    print(f"(+ {feature_s:.1f} s of reservoir simulation for the features, shared by both; "
          f"the network itself with the closed-form readout on fresh spikes: test acc {net_acc:.4f})")

    stem = "reservoir_readout" + ("_quick" if args.quick else "")
    cf = rows["closed form (onehot)"]
    summary = {"closed_form_test_acc": cf["test_acc"], "closed_form_fit_s": cf["fit_s"],
               "gradient_test_acc": rows["gradient (Adam, CE)"]["test_acc"], "gradient_fit_s": grad_s,
               "feature_s": feature_s}
    harness.write_results(args, f"{stem}", {"summary": summary, "rows": rows, "network_test_acc": net_acc,
                                                      "gradient_curve": curve, "args": vars(args)})
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([c[0] for c in curve], [c[1] for c in curve], label="gradient readout (Adam), per epoch")
    ax.scatter([cf["fit_s"]], [cf["test_acc"]], color="r", zorder=3, label="closed-form readout (one solve)")
    ax.set(xscale="log", xlabel="readout training seconds (features excluded)", ylabel="test accuracy",
           title=f"LIF reservoir ({args.units}) on {ds.name}")
    ax.legend(fontsize=8)
    save_figure(fig, harness.results_path(args, f"{stem}.png"), dpi=120)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
