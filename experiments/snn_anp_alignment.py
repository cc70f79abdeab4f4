"""Why node perturbation struggles on the spiking MLP: the alignment of NP/ANP estimates with
the surrogate gradient, layer by layer, as the number of noise draws grows (issue #3).

For one fixed batch of MNIST images (one Bernoulli spike sample ``x``) the script computes

- the surrogate-gradient BP direction of ``snn-mnist`` (784-500 LIF, LI readout, T = 25);
- NP and ANP estimates (variants below, ``draws`` = 16, 128, 1024) and, per
  layer, their cosine with BP (``cos_bp``) and with a second, independent estimate of the
  same rule and draws (``cos_self``: close to 1 when the estimate has converged; a converged
  estimate that does not align with BP is biased with respect to it, not noisy);
- a descent test: the test loss on a *second* spike sample of the same images after moving
  one layer's weights by 1 % of their norm along the direction (BP's for comparison);
- the same for the rate MLP ``mlp-mnist`` (first hidden layer), the control where ANP reaches
  0.97 on MNIST.

The SNN variants: white noise (a fresh draw every step, σ = 0.3 in both layers: ``N·T`` =
12 500 perturbed entries per sample in the hidden layer), the membrane as activity, noise
frozen over the trial (``noise_tau = inf``: 500 directions), no noise in the readout
(``sigma = [σ, 0]``: the readout's noise no longer drowns the hidden layer's share of the
loss difference; ANP still learns the readout from the activity difference propagated into
it), both, and both with the readout's membrane as its activity (``activity = ["pre",
"mem"]``: the model file's ANP setting).

    python experiments/snn_anp_alignment.py            # batch 16, draws 16/128/1024 (~minutes)
    python experiments/snn_anp_alignment.py --quick    # batch 8, draws 16/128

Prints a table, writes ``experiments/results/snn_anp_alignment.json`` and ``.png``; last line
JSON ``{"snn_hidden_cos_bp": ..., "snn_hidden_cos_self": ..., "mlp_hidden_cos_bp": ...}`` at the
largest draw count.
"""

from __future__ import annotations

import json
import sys

import torch


from neurolearn import harness
from neurolearn.plotting import pyplot, save_figure
from neurolearn.rules import make_rule
from neurolearn.runs import build_run

INF = float("inf")
# (rule, parameters): sigma explicit in each, so that the rows do not depend on the model file
SNN_VARIANTS = {
    "np": ("np", {"sigma": 0.3}),
    "anp": ("anp", {"sigma": 0.3}),                                           # white noise in both layers
    "anp-mem": ("anp", {"sigma": 0.3, "activity": "mem"}),
    "anp-frozen": ("anp", {"sigma": 0.3, "noise_tau": INF}),                 # one draw per neuron and trial
    "anp-quiet": ("anp", {"sigma": [0.3, 0.0]}),                              # no noise in the readout
    "anp-frozen-quiet": ("anp", {"sigma": [0.1, 0.0], "noise_tau": INF}),
    # the model file's anp setting: as above, the readout's activity is its membrane (what is decoded)
    "anp-fq-mem": ("anp", {"sigma": [0.1, 0.0], "noise_tau": INF, "activity": ["pre", "mem"]}),
}
MLP_VARIANTS = {"np": ("np", {"sigma": 1e-3}), "anp": ("anp", {"sigma": 1e-3})}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))


def weight_grads(model, rule, x, y, objective) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    rule.estimate_gradients(model, x, y, objective)
    return [layer.weight.grad.detach().clone() for layer in model.layers]


def loss_of(model, objective, x, y) -> float:
    with torch.no_grad():
        return float(objective.loss(model.decode_output(model.run(x).output), y).mean())


def descent(model, objective, x_eval, y, k: int, direction: torch.Tensor, step: float = 0.01) -> float:
    """Change of the loss on ``x_eval`` after ``W_k ← W_k − step ‖W_k‖ d/‖d‖`` (restored after)."""
    w = model.layers[k].weight
    before = loss_of(model, objective, x_eval, y)
    move = direction / direction.norm().clamp_min(1e-30) * w.norm() * step
    with torch.no_grad():
        w.sub_(move)
    try:
        return loss_of(model, objective, x_eval, y) - before
    finally:
        with torch.no_grad():
            w.add_(move)


def study(model_name: str, variants: dict, batch: int, draws_list: list[int], layers: list[int],
          seed: int) -> list[dict]:
    cfg = harness.resolve(model=model_name, rule="anp", overrides=["data.options.train_limit=1000"], seed=seed)
    run = build_run(cfg)
    model, objective = run.model, run.objective
    torch.manual_seed(seed)
    images, y = run.dataset.x_train[:batch], run.dataset.y_train[:batch]
    x, x_eval = model.encode(images), model.encode(images)  # two spike samples of the same images
    bp = make_rule("bp")
    bp.setup(model, objective, torch.Generator().manual_seed(seed))
    g_bp = weight_grads(model, bp, x, y, objective)
    rows = [dict(model=model_name, rule="bp", draws=0, layer=k, cos_bp=1.0, cos_self=1.0,
                 descent=descent(model, objective, x_eval, y, k, g_bp[k])) for k in layers]
    for variant, (name, params) in variants.items():
        for draws in draws_list:
            est = []
            for s in (1, 2):
                rule = make_rule(name, draws=draws, **params)
                rule.setup(model, objective, torch.Generator().manual_seed(seed + 100 * s))
                est.append(weight_grads(model, rule, x, y, objective))
            for k in layers:
                rows.append(dict(model=model_name, rule=variant, draws=draws, layer=k,
                                 cos_bp=cosine(est[0][k], g_bp[k]), cos_self=cosine(est[0][k], est[1][k]),
                                 descent=descent(model, objective, x_eval, y, k, est[0][k])))
                print(f"{model_name:10s} {variant:8s} {draws:6d} {k:5d} {rows[-1]['cos_bp']:8.3f} "
                      f"{rows[-1]['cos_self']:9.3f} {rows[-1]['descent']:+9.4f}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = harness.parser(__doc__, quick="batch 8, draws 16 and 128")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--draws", type=int, nargs="+", default=[16, 128, 1024])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = harness.start(p, argv)
    if args.quick:
        args.batch, args.draws = 8, [16, 128]
    torch.set_num_threads(args.threads)
    print(f"{'model':10s} {'rule':8s} {'draws':>6s} {'layer':>5s} {'cos_bp':>8s} {'cos_self':>9s} {'Δloss@1%':>9s}")
    rows = study("snn-mnist", SNN_VARIANTS, args.batch, args.draws, [0, 1], args.seed)
    rows += study("mlp-mnist", MLP_VARIANTS, args.batch, args.draws, [0], args.seed)
    for r in rows:
        if r["rule"] == "bp":
            print(f"{r['model']:10s} {'bp':8s} {'-':>6s} {r['layer']:5d} {1.0:8.3f} {1.0:9.3f} {r['descent']:+9.4f}")
    top = max(args.draws)

    def pick(model, rule, layer, key):
        return next(r[key] for r in rows if r["model"] == model and r["rule"] == rule and r["draws"] == top
                    and r["layer"] == layer)

    summary = {"snn_hidden_cos_bp": pick("snn-mnist", "anp", 0, "cos_bp"),
               "snn_hidden_cos_self": pick("snn-mnist", "anp", 0, "cos_self"),
               "snn_readout_cos_bp": pick("snn-mnist", "anp", 1, "cos_bp"),
               "snn_default_hidden_cos_bp": pick("snn-mnist", "anp-fq-mem", 0, "cos_bp"),
               "snn_default_readout_cos_bp": pick("snn-mnist", "anp-fq-mem", 1, "cos_bp"),
               "mlp_hidden_cos_bp": pick("mlp-mnist", "anp", 0, "cos_bp")}
    harness.write_results(args, "snn_anp_alignment", {"rows": rows, "args": vars(args), **summary})
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), gridspec_kw={"width_ratios": [1, 1, 1, 0.55]})
    panels = [("snn-mnist", 0, "spiking hidden layer"), ("snn-mnist", 1, "spiking readout"),
              ("mlp-mnist", 0, "rate MLP, first hidden layer")]
    for ax, (model, layer, title) in zip(axes[:3], panels):
        for i, variant in enumerate(SNN_VARIANTS if model == "snn-mnist" else MLP_VARIANTS):
            sel = [r for r in rows if r["model"] == model and r["rule"] == variant and r["layer"] == layer]
            ax.plot([r["draws"] for r in sel], [r["cos_bp"] for r in sel], "o-", color=f"C{i}", label=f"{variant} vs bp")
            ax.plot([r["draws"] for r in sel], [r["cos_self"] for r in sel], "s--", color=f"C{i}", alpha=0.5,
                    label=f"{variant} vs itself")
        ax.set(xscale="log", xlabel="noise draws per sample", title=title)
    axes[0].set_ylabel("cosine")
    for ax in axes[1:3]:
        ax.sharey(axes[0])
    handles, labels = axes[0].get_legend_handles_labels()  # the SNN variants (the MLP's are a subset)
    axes[3].legend(handles, labels, fontsize=7, loc="center left")
    axes[3].axis("off")
    save_figure(fig, harness.results_path(args, "snn_anp_alignment.png"))
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
