r"""Perturbation rules in the time domain, for recurrent and spiking networks with a target
at every step (García Fernández, Keemink & van Gerven 2024, "ANP in the time domain").

A clean and a noisy copy of the dynamics run side by side (one stacked batch for NP/ANP;
two states for WP, whose noisy copy runs with perturbed weights), or, with
``passes="baseline"`` (NP, WP), the noisy copy alone against a running average ``b[t]`` of each
step's loss (``δL_t = L_t - b[t]``); fresh noise is drawn at
every step (or noise correlated over ``noise_tau``, see :mod:`neurolearn.rules.perturbation`),
so noise injected at ``t`` also shapes the noisy trajectory later on. At every
step ``t`` the per-sample loss difference ``δL_t = L_t(noisy) - L_t(clean)`` is paired with
that step's post-synaptic term of layer ``l``:

- NP:  ``g_l[t] = δL_t ε_l[t] / σ²``
- ANP: ``g_l[t] = c δL_t δz_l[t] / ‖δz[t]‖²`` (network-wide or per-layer norm, ``c = N``
  or ``√N``; ``δz`` measured: the pre-activation, or the membrane with ``activity="mem"``)
- WP:  ``g_W[t] = ⟨δL_t⟩_B ξ[t] / σ²``

and ``∂L/∂W ≈ ⟨g[t] x̃[t]ᵀ⟩_B``, ``∂L/∂W_rec ≈ ⟨g[t] h[t-1]ᵀ⟩_B`` (``x̃`` from the clean copy,
or its trace with ``trace_tau``). With ``apply="online"`` the optimizer steps after every
time step; with ``apply="sequence"`` the per-step estimates are summed into ``.grad`` and
applied once per sequence. Layers with decorrelation update ``R`` at every step from the
clean copy's inputs (:func:`~neurolearn.decorrelation.update_decorrelation_step`; DANP in time).
Either way nothing of the past is stored: memory does not grow with ``T`` (only the clean
output, ``[T, B, C]``, is kept to report the prediction).
"""

from __future__ import annotations

import torch

from neurolearn.decorrelation import has_decorrelation, update_decorrelation_step
from neurolearn.network import Network
from neurolearn.objectives import Objective
from neurolearn.rules.base import StepOutput
from neurolearn.rules.perturbation import (add_grad, bias_grad, layer_params, noisy_minus_clean, pair_step, sum_draws,
                                           trace_beta)


def _clear(model: Network) -> None:
    for p in model.parameters():
        p.grad = None


def time_domain_step(rule, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective,
                     optimizer: torch.optim.Optimizer) -> StepOutput:
    """One sequence of time-domain WP / NP / ANP (``rule`` is a ``PerturbationRule``)."""
    model.check_input(x)
    steps, batch = x.shape[0], x.shape[1]
    online = rule.apply == "online"
    beta = trace_beta(model, rule.trace_tau)
    counted = objective.loss_mask.sum().item() if objective.loss_mask is not None else steps
    decorrelates = has_decorrelation(model)
    loss = torch.zeros(batch, device=x.device, dtype=x.dtype)
    output: torch.Tensor | None = None  # the clean output [T, B, C], filled step by step
    traces: list[torch.Tensor | None] = [None] * len(model.layers)

    def pre_input(k: int, inp: torch.Tensor) -> torch.Tensor:
        if beta == 0.0:
            return inp
        traces[k] = inp.clone() if traces[k] is None else beta * traces[k] + inp
        return traces[k]

    if rule.passes == "baseline":  # one noisy run; δL_t = L_t - b[t], b[t] a running average per step
        params = layer_params(model)
        state = model.init_state(batch, x.device, x.dtype)
        noise = None
        for t in range(steps):
            if rule.kind == "wp":
                xi = rule.weight_noise(params)
                out, state = _perturbed_step(model, params, xi, x[t], state)
                taps = None
            else:
                noise = rule.step_noise(model, batch, x, noise, paired=False)
                out, state, taps = model.step(x[t], state, noise)
            lt = objective.step_loss(out, y[t], t)
            dl = rule.reward_signal(lt, t)
            loss += lt
            output = _keep(output, out, t, steps)
            if taps is None:  # WP: the weight's own noise x the batch-mean reward error
                for (_, _, p), e in zip(params, xi):
                    add_grad(p, e * (float(dl.mean()) / rule.sigma**2))
            else:
                g = rule.node_signal(dl / batch, [n.unsqueeze(0) for n in noise], [n.unsqueeze(0) for n in noise], 1)
                for k, layer in enumerate(model.layers):
                    gk = g[k][0]
                    add_grad(layer.weight, layer.weight_gradient(gk, pre_input(k, taps[k].input)))
                    if layer.bias is not None:
                        add_grad(layer.bias, bias_grad(gk))
                    if layer.recurrent_weight is not None:
                        add_grad(layer.recurrent_weight, gk.t() @ taps[k].rec)
                if decorrelates:
                    update_decorrelation_step(model, taps, rule.generator)
            if online:
                _step(optimizer, model)
    elif rule.kind == "wp":
        params = layer_params(model)
        clean_state = model.init_state(batch, x.device, x.dtype)
        noisy_state = model.init_state(batch, x.device, x.dtype)
        other_state = model.init_state(batch, x.device, x.dtype) if rule.passes == "noisy-noisy" else None
        for t in range(steps):
            xi2 = rule.weight_noise(params)
            xi1 = rule.weight_noise(params) if other_state is not None else None
            if xi1 is None:
                out_c, clean_state, _ = model.step(x[t], clean_state)
                base_out = out_c
            else:
                out_c, clean_state, _ = model.step(x[t], clean_state)
                base_out, other_state = _perturbed_step(model, params, xi1, x[t], other_state)
            out_n, noisy_state = _perturbed_step(model, params, xi2, x[t], noisy_state)
            l_c = objective.step_loss(out_c, y[t], t)
            dl = float((objective.step_loss(out_n, y[t], t) - objective.step_loss(base_out, y[t], t)).mean())
            loss += l_c
            output = _keep(output, out_c, t, steps)
            diff = xi2 if xi1 is None else [b - a for a, b in zip(xi1, xi2)]
            if dl != 0.0:
                for (_, _, p), d in zip(params, diff):
                    add_grad(p, d * (dl / rule.noise_diff_var(rule.sigma)))
            if online:
                _step(optimizer, model)
    else:
        copies = 1 + rule.draws  # [clean; noisy_1 .. noisy_K], K = draws
        state = model.init_state(copies * batch, x.device, x.dtype)
        noise = None
        for t in range(steps):
            noise = rule.step_noise(model, batch, x, noise)
            out, state, taps = pair_step(model, x[t], state, noise, batch, copies=copies)
            lt = objective.step_loss(out, torch.cat([y[t]] * copies), t)  # per step: no [T, copies·B] copy of y
            dl = noisy_minus_clean(lt, batch)
            loss += lt[:batch]
            output = _keep(output, out[:batch], t, steps)
            eps = [rule.noise_diff(n, batch) for n in noise]
            diffs = ([rule._activity_diff(tp, batch, k, len(taps)) for k, tp in enumerate(taps)]
                     if rule.kind == "anp" else eps)
            # the mean over batch and draws is folded into the per-sample scalar (g is linear in δL)
            g = rule.node_signal(dl / dl.shape[0], [d.unsqueeze(0) for d in diffs], [e.unsqueeze(0) for e in eps], 1)
            for k, layer in enumerate(model.layers):
                gk = sum_draws(g[k][0], batch)
                inp = pre_input(k, taps[k].input[:batch])
                add_grad(layer.weight, layer.weight_gradient(gk, inp))
                if layer.bias is not None:
                    add_grad(layer.bias, bias_grad(gk))
                if layer.recurrent_weight is not None:
                    add_grad(layer.recurrent_weight, gk.t() @ taps[k].rec[:batch])
            if decorrelates:  # R learns online from the clean copy's inputs (DANP in time)
                update_decorrelation_step(model, [tp._replace(input=tp.input[:batch]) for tp in taps], rule.generator)
            if online:
                _step(optimizer, model)
    if not online:
        optimizer.step()
        _clear(model)
    return StepOutput((loss / counted).detach(), model.decode_output(output).detach(), None)


def _keep(output: torch.Tensor | None, out_t: torch.Tensor, t: int, steps: int) -> torch.Tensor:
    """Write the clean output of step ``t`` into one preallocated ``[T, B, C]`` tensor."""
    if output is None:
        output = out_t.new_empty((steps, *out_t.shape))
    output[t] = out_t
    return output


def _step(optimizer: torch.optim.Optimizer, model: Network) -> None:
    if any(p.grad is not None for p in model.parameters()):
        optimizer.step()
    _clear(model)


def _perturbed_step(model: Network, params, xi: list[torch.Tensor], x_t: torch.Tensor, state):
    for (_, _, p), e in zip(params, xi):
        p.add_(e)
    try:
        out, state, _ = model.step(x_t, state)
    finally:
        for (_, _, p), e in zip(params, xi):
            p.sub_(e)
    return out, state
