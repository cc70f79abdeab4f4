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

and ``∂L/∂W ≈ (1/T) Σ_t ⟨g[t] x̃[t]ᵀ⟩_B``, ``∂L/∂b ≈ (1/T) Σ_t ⟨g[t]⟩_B``,
``∂L/∂W_rec ≈ (1/T) Σ_t ⟨g[t] h[t-1]ᵀ⟩_B`` (``x̃`` from the clean copy). The ``1/T`` (``T`` the
counted steps: the loss mask's count when there is one) makes the sum an estimate of the
gradient of the loss the trainer reports, ``L = (1/T) Σ_t L_t`` (the mean over the steps, as
BPTT differentiates it), not of ``Σ_t L_t`` (``T`` times larger); online, each step applies its
share. With ``trace_tau`` the same filter ``ā[t] = β ā[t-1] + a[t]`` is applied to every
pre-synaptic term alike: the feed-forward input, the recurrent input ``h[t-1]`` and the bias's
constant 1. With ``apply="online"`` the update seam
(:class:`~neurolearn.updates.Updater`) applies them after every time step; with
``apply="sequence"`` the per-step estimates are summed into ``.grad`` and applied once per
sequence. Layers with decorrelation update ``R`` at every step from the clean copy's inputs
(through the seam; DANP in time).
Either way nothing of the past is stored: memory does not grow with ``T`` (only the clean
output, ``[T, B, C]``, is kept to report the prediction).
"""

from __future__ import annotations

import math

import torch

from neurolearn.learning.grads import add_grad, bias_grad, layer_params
from neurolearn.learning.noise import noisy_minus_clean, pair_step, sum_draws
from neurolearn.learning.traces import trace_beta
from neurolearn.network import Network
from neurolearn.objectives import Objective
from neurolearn.rules.base import StepOutput
from neurolearn.updates import Updater


class _Sequence:
    """What one time-domain sequence keeps: the summed loss, the clean output ``[T, B, C]`` and
    the pre-synaptic traces (``trace_tau``)."""

    def __init__(self, rule, model: Network, x: torch.Tensor, objective: Objective) -> None:
        self.steps, self.batch = x.shape[0], x.shape[1]
        self.online = rule.apply == "online"
        self.beta = trace_beta(model, rule.trace_tau)
        self.counted = float(objective.loss_mask.sum().item() if objective.loss_mask is not None else self.steps)
        self.inputs = math.prod(model.input_shape)
        self.loss = torch.zeros(self.batch, device=x.device, dtype=x.dtype)
        self.output: torch.Tensor | None = None
        self.traces: list[torch.Tensor | None] = [None] * len(model.layers)
        self.rec_traces: list[torch.Tensor | None] = [None] * len(model.layers)
        self.bias_trace = 0.0

    def pre_input(self, k: int, inp: torch.Tensor) -> torch.Tensor:
        """``x̄_k[t] = β x̄_k[t-1] + x̃_k[t]`` (``x̃`` itself without ``trace_tau``)."""
        if self.beta == 0.0:
            return inp
        self.traces[k] = inp.clone() if self.traces[k] is None else self.beta * self.traces[k] + inp
        return self.traces[k]

    def rec_input(self, k: int, rec: torch.Tensor) -> torch.Tensor:
        """The recurrent input's trace ``h̄_k[t-1] = β h̄_k[t-2] + h_k[t-1]``, the same filter as the feed-forward input."""
        if self.beta == 0.0:
            return rec
        self.rec_traces[k] = rec.clone() if self.rec_traces[k] is None else self.beta * self.rec_traces[k] + rec
        return self.rec_traces[k]

    def advance_bias(self) -> float:
        """``b̄[t] = β b̄[t-1] + 1``: the trace of the bias's constant input (1 without ``trace_tau``); call once a step."""
        self.bias_trace = self.beta * self.bias_trace + 1.0
        return self.bias_trace

    def keep(self, out_t: torch.Tensor, t: int) -> None:
        """Write the clean output of step ``t`` into one preallocated ``[T, B, C]`` tensor."""
        if self.output is None:
            self.output = out_t.new_empty((self.steps, *out_t.shape))
        self.output[t] = out_t

    def result(self, model: Network) -> StepOutput:
        return StepOutput((self.loss / self.counted).detach(), model.decode_output(self.output).detach(), None)


def _add_layer_grads(model: Network, g: list[torch.Tensor], taps, seq: _Sequence, rows: slice | None = None) -> None:
    """``g_l[t] x̄_l[t]ᵀ``, ``b̄[t] Σ g_l[t]`` and ``g_l[t] h̄_l[t-1]ᵀ`` into ``.grad`` (the bars: traces
    with ``trace_tau``, applied alike to the feed-forward input, the bias's constant 1 and the
    recurrent input; the raw values without it)."""
    bias_in = seq.advance_bias()
    for k, layer in enumerate(model.layers):
        gk = g[k]
        inp = taps[k].input if rows is None else taps[k].input[rows]
        add_grad(layer.weight, layer.weight_gradient(gk, seq.pre_input(k, inp)))
        if layer.bias is not None:
            add_grad(layer.bias, bias_grad(gk) * bias_in)
        if layer.recurrent_weight is not None:
            rec = taps[k].rec if rows is None else taps[k].rec[rows]
            add_grad(layer.recurrent_weight, gk.t() @ seq.rec_input(k, rec))


def node_time_step(rule, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective,
                   updater: Updater) -> StepOutput:
    """One sequence of time-domain NP / ANP (``rule`` a ``NodeNoiseRule``)."""
    model.check_input(x)
    seq = _Sequence(rule, model, x, objective)
    batch, steps = seq.batch, seq.steps
    if rule.passes == "baseline":  # one noisy run; δL_t = L_t - b[t], b[t] a running average per step
        state = model.init_state(batch, x.device, x.dtype)
        noise = None
        for t in range(steps):
            noise = rule.step_noise(model, batch, x, noise, paired=False)
            out, state, taps = model.step(x[t], state, noise)
            lt = objective.step_loss(out, y[t], t)
            dl = rule.reward_signal(lt, t)
            seq.loss += lt
            seq.keep(out, t)
            g = rule.node_signal(dl / (batch * seq.counted), [n.unsqueeze(0) for n in noise],
                                 [n.unsqueeze(0) for n in noise], 1, inputs=seq.inputs)
            _add_layer_grads(model, [gk[0] for gk in g], taps, seq)
            updater.apply(None if seq.online else [], taps=taps, generator=rule.generator)
    else:
        copies = 1 + rule.draws  # [clean; noisy_1 .. noisy_K], K = draws
        state = model.init_state(copies * batch, x.device, x.dtype)
        noise = None
        nl = len(model.layers)
        for t in range(steps):
            noise = rule.step_noise(model, batch, x, noise)
            out, state, taps = pair_step(model, x[t], state, noise, batch, copies=copies)
            lt = objective.step_loss(out, torch.cat([y[t]] * copies), t)  # per step: no [T, copies·B] copy of y
            dl = noisy_minus_clean(lt, batch)
            seq.loss += lt[:batch]
            seq.keep(out[:batch], t)
            eps = [rule.noise_diff(n, batch) for n in noise]
            diffs = [rule.post_difference(tp, e, batch, k, nl) for k, (tp, e) in enumerate(zip(taps, eps))]
            # the mean over batch and draws is folded into the per-sample scalar (g is linear in δL)
            g = rule.node_signal(dl / (dl.shape[0] * seq.counted), [d.unsqueeze(0) for d in diffs],
                                 [e.unsqueeze(0) for e in eps], 1, inputs=seq.inputs)
            _add_layer_grads(model, [sum_draws(gk[0], batch) for gk in g], taps, seq, slice(0, batch))
            # R learns online from the clean copy's inputs (DANP in time)
            updater.apply(None if seq.online else [], taps=[tp._replace(input=tp.input[:batch]) for tp in taps],
                          generator=rule.generator)
    if not seq.online:
        updater.apply()
    return seq.result(model)


def weight_time_step(rule, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective,
                     updater: Updater) -> StepOutput:
    """One sequence of time-domain WP (``rule`` a ``WeightPerturbation``): the noisy copy runs with
    perturbed weights ``W + ξ[t]``, fresh at every step."""
    model.check_input(x)
    seq = _Sequence(rule, model, x, objective)
    batch, steps = seq.batch, seq.steps
    params = layer_params(model)
    if rule.passes == "baseline":
        state = model.init_state(batch, x.device, x.dtype)
        for t in range(steps):
            xi = rule.weight_noise(params)
            out, state = _perturbed_step(model, params, xi, x[t], state)
            lt = objective.step_loss(out, y[t], t)
            dl = rule.reward_signal(lt, t)
            seq.loss += lt
            seq.keep(out, t)
            for (_, _, p), e in zip(params, xi):  # the weight's own noise x the batch-mean reward error
                add_grad(p, e * (float(dl.mean()) / (rule.sigma**2 * seq.counted)))
            if seq.online:
                updater.apply()
    else:
        clean_state = model.init_state(batch, x.device, x.dtype)
        noisy_state = model.init_state(batch, x.device, x.dtype)
        other_state = model.init_state(batch, x.device, x.dtype) if rule.passes == "noisy-noisy" else None
        for t in range(steps):
            xi2 = rule.weight_noise(params)
            xi1 = rule.weight_noise(params) if other_state is not None else None
            out_c, clean_state, _ = model.step(x[t], clean_state)
            if xi1 is None:
                base_out = out_c
            else:
                base_out, other_state = _perturbed_step(model, params, xi1, x[t], other_state)
            out_n, noisy_state = _perturbed_step(model, params, xi2, x[t], noisy_state)
            l_c = objective.step_loss(out_c, y[t], t)
            dl = float((objective.step_loss(out_n, y[t], t) - objective.step_loss(base_out, y[t], t)).mean())
            seq.loss += l_c
            seq.keep(out_c, t)
            diff = xi2 if xi1 is None else [b - a for a, b in zip(xi1, xi2)]
            if dl != 0.0:
                for (_, _, p), d in zip(params, diff):
                    add_grad(p, d * (dl / (rule.noise_diff_var(rule.sigma) * seq.counted)))
            if seq.online:
                updater.apply()
    if not seq.online:
        updater.apply()
    return seq.result(model)


def _perturbed_step(model: Network, params, xi: list[torch.Tensor], x_t: torch.Tensor, state):
    for (_, _, p), e in zip(params, xi):
        p.add_(e)
    try:
        out, state, _ = model.step(x_t, state)
    finally:
        for (_, _, p), e in zip(params, xi):
            p.sub_(e)
    return out, state
