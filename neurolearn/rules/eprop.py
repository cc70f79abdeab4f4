r"""e-prop (eligibility propagation; Bellec et al. 2020, Nat. Commun. 11:3625): online learning of a
recurrent spiking layer (LIF or ALIF) with a leaky readout, from eligibility traces and a learning
signal broadcast from the readout error.

Network: layer 0 a (recurrent) :class:`~neurolearn.layers.Dense` layer of ``lif`` or ``alif``
neurons, layer 1 a non-recurrent dense readout, a leaky integrator (``li``) or linear:
``y[t] = κ y[t−1] + g_o (W_out z[t] + b_out) + (1 − κ) v_leak`` (``κ, g_o`` from the readout's
``linear_response()``). Per step ``t`` (``pre`` = the layer's input ``x[t]``, the recurrent spikes
``z[t−1]`` and 1 for the bias; traces in :mod:`neurolearn.rules.eprop_traces`):

- eligibility ``e_ji[t] = ψ_j[t] ε^v_i[t]`` (LIF) or ``ψ_j[t](ε^v_i[t] − β_a ε^a_ji[t−1])`` (ALIF);
- filtered with exactly the readout's filter: ``ē_ji[t] = κ ē_ji[t−1] + g_o e_ji[t]``;
- readout error ``err_k[t] = ∂L/∂y_k[t]`` of the task's loss ``L`` (the mean over the batch of the
  objective's per-sample loss); learning signal ``L_j[t] = Σ_k B_kj err_k[t]`` with ``B = W_out``
  (``feedback="symmetric"``: weight transport) or a fixed random matrix (``"random"``,
  ``N(0, 1/n_rec)``, drawn in :meth:`setup`);
- ``∂W_ji += Σ_b L_j[t] ē_ji[t]``; readout ``∂W_out_kj += Σ_b err_k[t] z̄_j[t]``,
  ``z̄[t] = κ z̄[t−1] + g_o z[t]``, ``∂b_out_k += Σ_b err_k[t] b̄[t]``, ``b̄[t] = κ b̄[t−1] + g_o``.

With ``feedback="symmetric"`` this is the exact gradient of the network in which every path
through a spike other than the readout and the neuron's own adaptation (the recurrent input and
the reset) is cut (PLASTICITY.md §2.5): equal to BPTT where those paths carry nothing
(``W_rec = 0`` with a detached reset; tests/test_eprop.py).

The readout error is known online for per-step targets (sequence regression: ``err[t]`` at
step ``t``). For classification the prediction is a linear decode ``pred = Σ_t c[t] y[t]``
(``last``, ``mean``, ``sum``, windowed: :meth:`~neurolearn.network.Network.decode_weights`), so
``err[t] = c[t] δ`` with ``δ = ∂L/∂pred`` known at the end of the decode window; the rule keeps
``Σ_t c[t] ē[t]`` and ``Σ_t c[t] z̄[t]`` per sample and multiplies by the learning signal
``B δ`` then. Memory is independent of ``T`` (traces of size ``B·n_post·n_pre``; of the sequence
only the readout output the loss needs is kept).

Firing-rate regularisation (``c_reg > 0``): ``E_reg = (c_reg/2) Σ_j (f̄_j − f_target)²`` with
``f̄_j`` the mean rate in Hz over batch and time (``mean z / dt``); its gradient
``c_reg (f̄_j − f_target) mean_{b,t} e_ji[t] / dt`` (unfiltered ``e``) is added to the hidden
weights. ``c_reg`` is in 1/Hz² (the TF code's 300 with rates in kHz is ``3e-4``).

No autapses (``autapses=False``, as the reference code): :meth:`setup` zeroes the diagonal of
``W_rec`` and the rule never writes a gradient there. The pseudo-derivative's height is ``gamma``
(0.3). Parameters with ``requires_grad=False`` get no ``.grad``; otherwise ``.grad`` is added to
(the optimizer applies it).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neurolearn.errors import ConfigError, expect_number, unknown_name
from neurolearn.layers import Dense, Layer
from neurolearn.network import Network
from neurolearn.objectives import Objective
from neurolearn.rules.base import GradientRule, Requirements, StepOutput
from neurolearn.rules.eprop_traces import EligibilityTraces, EpropDynamics, eprop_dynamics

FEEDBACKS = ("random", "symmetric")


class EProp(GradientRule):
    r"""e-prop for a recurrent LIF/ALIF layer and a leaky readout (module docstring)."""

    name = "eprop"
    summary = "e-prop: eligibility traces x readout learning signal, online (recurrent LIF/ALIF + leaky readout)"
    requires = Requirements(pre=True, post=True, broadcast_vector=True)
    # data parallel (neurolearn.distributed): sums a float64 tensor over the processes, so the
    # firing-rate regulariser sees the whole batch's rate (None: one process)
    reduce_sum: Any = None

    def __init__(self, feedback: str = "random", gamma: float = 0.3, c_reg: float = 0.0, f_target: float = 10.0,
                 autapses: bool = False) -> None:
        super().__init__()
        if feedback not in FEEDBACKS:
            raise unknown_name("e-prop feedback", feedback, FEEDBACKS)
        expect_number("eprop gamma", gamma)
        expect_number("eprop c_reg", c_reg)
        expect_number("eprop f_target", f_target)
        if not (math.isfinite(gamma) and gamma > 0):
            raise ConfigError(f"eprop gamma (the pseudo-derivative's height) must be positive, got {gamma!r}")
        if not (math.isfinite(c_reg) and c_reg >= 0):
            raise ConfigError(f"eprop c_reg must be >= 0, got {c_reg!r}")
        if not isinstance(autapses, bool):
            raise ConfigError(f"eprop autapses must be true or false, got {autapses!r}")
        self.feedback = feedback
        self.gamma = float(gamma)
        self.c_reg = float(c_reg)
        self.f_target = float(f_target)
        self.autapses = autapses
        self.B: torch.Tensor | None = None  # random feedback [n_out, n_rec] (the shape of W_out)
        # symmetric feedback reads W_out: weight transport (not local)
        self.requires = Requirements(pre=True, post=True, broadcast_vector=True,
                                     weight_transport=feedback == "symmetric")

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def check_model(model: Network) -> tuple[Dense, Layer, EpropDynamics, tuple[float, float]]:
        """``(hidden, readout, dynamics, (κ, g_o))`` or a :class:`ConfigError` saying what does not fit."""
        layers = list(model.layers)
        if len(layers) != 2:
            raise ConfigError(f"e-prop trains a network of two layers (a recurrent spiking layer, then a leaky "
                              f"readout); this one has {len(layers)}")
        hidden, readout = layers
        if not isinstance(hidden, Dense) or not isinstance(readout, Dense):
            raise ConfigError("e-prop needs dense layers (type = \"recurrent\" then \"dense\")")
        dyn = eprop_dynamics(hidden.neuron)
        if readout.recurrent or readout.spiking:
            raise ConfigError("e-prop's readout must be a non-recurrent leaky integrator (neuron = { model = \"li\" }) "
                              "or linear")
        if hidden.decorrelation is not None or readout.decorrelation is not None:
            raise ConfigError("e-prop does not combine with decorrelation (decor.enabled = false)")
        if readout.neuron is None:
            filt = (0.0, 1.0)
        else:
            lin = readout.neuron.linear_response()
            if lin is None:
                raise ConfigError(f"e-prop's readout must be a linear filter of its input (li); "
                                  f"neuron model {readout.neuron.model!r} is not")
            filt = (lin[0], lin[1])
        return hidden, readout, dyn, filt

    def setup(self, model: Network, objective: Objective, generator: torch.Generator) -> None:
        super().setup(model, objective, generator)
        hidden, readout, _, _ = self.check_model(model)
        if hidden.recurrent and not self.autapses:
            with torch.no_grad():
                hidden.recurrent_weight.fill_diagonal_(0.0)
        if self.feedback == "random" and self.B is None:
            self.B = self._draw_feedback(readout, generator)

    @staticmethod
    def _draw_feedback(readout: Dense, generator: torch.Generator | None) -> torch.Tensor:
        w = readout.weight
        b = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype) if generator is not None \
            else torch.randn(w.shape, device=w.device, dtype=w.dtype)
        return b / math.sqrt(w.shape[1])

    def state_dict(self) -> dict[str, Any]:
        return {"B": self.B} if self.B is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = set(state) - {"B"}
        if unknown:
            raise ValueError(f"rule 'eprop': unexpected state {sorted(unknown)}")
        if "B" in state:
            self.B = state["B"]

    # ------------------------------------------------------------------ one sequence
    def estimate_gradients(self, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective) -> StepOutput:
        hidden, readout, dyn, (kappa, gain) = self.check_model(model)
        sequential = objective.sequential_targets
        steps, batch = x.shape[0], x.shape[1]
        c = None
        if not sequential:
            c = model.decode_weights(steps)
            if c is None:
                raise ConfigError(f"e-prop needs a linear decode of the readout (last, mean or sum, optionally with "
                                  f"decode_window) for classification; the model decodes with {model.decode!r}")
            c = c.tolist()
        elif model.decode != "all":
            raise ConfigError("e-prop with per-step targets needs decode = \"all\"")
        if self.feedback == "random":
            if self.B is None:
                self.B = self._draw_feedback(readout, self.generator)
            B = self.B
        else:
            B = readout.weight
        n_in = hidden.weight.shape[1]
        n_rec = hidden.out_shape[0]
        use_bias = hidden.bias is not None
        n_pre = n_in + (n_rec if hidden.recurrent else 0) + int(use_bias)
        p0 = hidden.weight
        dev, dt_ = p0.device, p0.dtype
        model.check_input(x)

        with torch.no_grad():
            B = B.detach()
            traces = EligibilityTraces(dyn, batch, n_rec, n_pre, dev, dt_)
            ebar = torch.zeros(batch, n_rec, n_pre, device=dev, dtype=dt_)   # κ-filtered eligibility
            zbar = torch.zeros(batch, n_rec, device=dev, dtype=dt_)          # κ-filtered spikes (readout)
            bbar = 0.0                                                       # κ-filtered 1 (readout bias)
            g_hidden = torch.zeros(n_rec, n_pre, device=dev, dtype=dt_)
            g_out = torch.zeros_like(readout.weight)
            g_out_b = torch.zeros(readout.out_shape[0], device=dev, dtype=dt_)
            if not sequential:  # Σ_t c[t] ē[t], Σ_t c[t] z̄[t], Σ_t c[t] b̄[t] per sample; pred = Σ_t c[t] y[t]
                acc_e = torch.zeros_like(ebar)
                acc_z = torch.zeros_like(zbar)
                acc_b = 0.0
                pred = torch.zeros(batch, readout.out_shape[0], device=dev, dtype=dt_)
            else:
                outputs = []
                mask = objective.loss_mask
                norm = float(steps if mask is None else mask.sum())
                loss = torch.zeros(batch, device=dev, dtype=dt_)
            reg_e = torch.zeros(n_rec, n_pre, device=dev, dtype=dt_) if self.c_reg > 0 else None
            spike_count = torch.zeros(n_rec, device=dev, dtype=dt_)
            ones = torch.ones(batch, 1, device=dev, dtype=dt_)

            state = model.init_state(batch, dev, dt_)
            for t in range(steps):
                before = state[0].neuron
                out, state, taps = model.step(x[t], state)
                tap = taps[0]
                parts = [tap.input]
                if hidden.recurrent:
                    parts.append(tap.rec)
                if use_bias:
                    parts.append(ones)
                pre = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
                psi = dyn.pseudo_derivative(before, tap.state, self.gamma)
                e = traces.step(pre, psi)
                ebar.mul_(kappa).add_(e, alpha=gain)
                z = taps[1].input
                zbar.mul_(kappa).add_(z, alpha=gain)
                bbar = kappa * bbar + gain
                spike_count += z.sum(0)
                if reg_e is not None:
                    reg_e += e.sum(0)
                if sequential:
                    outputs.append(out)
                    with torch.enable_grad():
                        leaf = out.detach().requires_grad_(True)
                        step_loss = objective.step_loss(leaf, y[t], t) / norm
                        (err,) = torch.autograd.grad(step_loss.sum() / batch, leaf)
                    loss += step_loss.detach()
                    if err.abs().max() > 0:
                        signal = err @ B                                      # [B, n_rec]
                        g_hidden += torch.einsum("bj,bji->ji", signal, ebar)
                        g_out += err.T @ zbar
                        g_out_b += err.sum(0) * bbar
                elif c[t] != 0.0:
                    acc_e.add_(ebar, alpha=c[t])
                    acc_z.add_(zbar, alpha=c[t])
                    acc_b += c[t] * bbar
                    pred.add_(out, alpha=c[t])

            if not sequential:
                with torch.enable_grad():
                    leaf = pred.detach().requires_grad_(True)
                    per_sample = objective.loss(leaf, y)
                    (delta,) = torch.autograd.grad(per_sample.mean(), leaf)   # [B, n_out]
                loss = per_sample.detach()
                g_hidden = torch.einsum("bj,bji->ji", delta @ B, acc_e)
                g_out = delta.T @ acc_z
                g_out_b = delta.sum(0) * acc_b
            else:
                pred = torch.stack(outputs)

            if reg_e is not None:
                counts = torch.cat([spike_count.reshape(-1).double(), spike_count.new_tensor([batch], dtype=torch.float64)])
                if self.reduce_sum is not None:  # the whole batch's rate (every process's share)
                    counts = self.reduce_sum(counts)
                rate = (counts[:-1] / (counts[-1] * steps * model.dt)).to(spike_count.dtype)  # Hz
                g_hidden += (self.c_reg * (rate - self.f_target) / (batch * steps * model.dt))[:, None] * reg_e

            grads = [(hidden.weight, g_hidden[:, :n_in])]
            if hidden.recurrent:
                g_rec = g_hidden[:, n_in:n_in + n_rec]
                if not self.autapses:
                    g_rec = g_rec.clone()
                    g_rec.fill_diagonal_(0.0)
                grads.append((hidden.recurrent_weight, g_rec))
            if use_bias:
                grads.append((hidden.bias, g_hidden[:, -1]))
            grads.append((readout.weight, g_out))
            if readout.bias is not None:
                grads.append((readout.bias, g_out_b))
            for p, g in grads:
                if not p.requires_grad:
                    continue
                g = g.to(p.dtype).reshape(p.shape)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.add_(g)
        return StepOutput(loss, pred.detach(), None)
