r"""Target projection: DRTP and tpSGD (and the machinery DFA shares with them).

Every hidden layer ``k`` learns from a **fixed random projection of the label**,
``t_k = y* B_k`` (``y*`` the one-hot label, or the target vector of the step for sequence
tasks; ``B_k ∈ R^{C × n_k}`` drawn once and frozen), never from the network's error. The
output layer learns from its true error. No weight transport, no update locking: a layer
can update as soon as its own forward output exists, so training needs the activations of
one layer only.

Update of a hidden layer (pre-synaptic input ``x``, pre-activation ``z``, activity ``h``):

.. math::  \delta_k = e_k \odot \psi_k, \qquad
           \nabla W_k = \frac{1}{BT} \sum_{t} \delta_k[t]^\top \bar x_k[t], \qquad
           \nabla b_k = \frac{1}{BT} \sum_t \delta_k[t]\, \bar b_k[t]

(the optimizer steps ``W ← W − η ∇W``). ``e_k = ∂J_k/∂h_k`` is the layer's learning signal:

- **DRTP** (Frenkel et al. 2021): ``e_k = +t_k``, the linear "loss" ``J_k = ⟨t_k, h_k⟩`` (Frenkel's
  code replaces the gradient at the layer's output by ``+y* B_k``, ALGORITHMS.md 4.1; for
  projections symmetric about 0 the sign only relabels ``B``, for ``uniform_positive`` it matters);
- **tpSGD** (Lomnitz et al. 2022): ``e_k = ∂ℓ(h_k, t_k)/∂h_k`` for a local loss ``ℓ``:
  ``l2`` (``½‖h − t‖²`` → ``h − t``), ``l1`` (``‖h − t‖₁`` → ``sign(h − t)``), ``ce``
  (cross-entropy of ``softmax(h)`` to ``softmax(t)`` over the layer's units →
  ``softmax(h) − softmax(t)``), ``linear`` (= DRTP) or any callable ``loss(h, t)``
  (differentiated with autograd on a detached copy of ``h``: the gradient never leaves
  the layer).

``ψ_k`` is the post-synaptic factor ``f'(z_k)``: the activation's derivative for rate
units; for spiking (LIF) units, which have no derivative, one of (``spike_derivative``)

- ``"window"``: a membrane-potential window, ``ψ = 1[|v − θ| < w θ]`` on the pre-reset
  membrane ``v`` (``w = window``);
- ``"lif_rate"``: the derivative of the LIF rate-transfer function. For reset by
  subtraction the f-I curve of a LIF neuron has slope ``≈ 1/θ`` above threshold and ``0``
  below; it is smoothed by a logistic of width ``smoothing · θ`` so that silent neurons
  still learn: ``ψ = σ((u − θ)/(smoothing θ)) / θ`` with ``u`` the free membrane (the
  membrane low-pass filter of the input current, without reset);
- ``"none"``: ``ψ = 1``, a target-only delta rule (with tpSGD-``l2`` and spiking units:
  ``ΔW ∝ (t − r̄) x̄``, the filtered rate driven toward the projected target).

``x̄`` is the **pre-synaptic trace**: for layers with a membrane (LIF, leaky integrator,
leaky rate unit) ``x̄[t] = β x̄[t−1] + g x[t]`` with the membrane's ``β = 1 − dt/τ`` and
input gain ``g`` (1 for LIF and LI, ``1 − β`` for leaky rate units) — exactly
``∂v[t]/∂W`` when the reset and the recurrence are ignored; for static units ``x̄ = x``.
``b̄`` is the same trace of a constant 1. For tpSGD the activity of a spiking layer is its
filtered rate ``r̄[t] = β r̄[t−1] + (1 − β) s[t]`` (spikes per step).

**Layer types.** Dense and recurrent layers: ``B_k ∈ R^{C × n_k}``; recurrent layers get
their projected target at every time step (``target_steps="all"``; ``"last"``: only at the
read-out step, for tasks whose label is known only once the sequence has been seen) and their recurrent weights the update
``δ_k[t]^T h_k[t−1]`` (no backpropagation through time). Conv layers: ``B_k`` maps the
label to the convolution output's shape, ``R^{C × (c·h·w)}``, and the update is the
convolution's weight gradient for ``δ_k``. With ``conv_target="channel"`` ``B_k`` gives one
target per feature map, ``R^{C × c}``, and the local loss compares it with the map's spatial
mean (the error spread evenly over the positions): a shared filter cannot meet an independent
random target at every position.

**Output layer.** Its true error ``e = ∂L/∂out[t]`` (the objective's loss through the
model's decode), ``∇W = Σ_t (e[t] ⊙ ψ[t])^T x̄[t]`` — exact for a linear, rate or
leaky-integrator readout without recurrence. Its input trace is kept for the sequence
(``T × B × n_in``); the error arrives when the sequence ends.

**Projection** ``B_k`` (``projection``, ``scale``): ``"kaiming_uniform"`` (DRTP's code:
``U(±scale·√(6/C))``), ``"uniform"`` (``U(±scale)``), ``"uniform_positive"``
(``U(0, scale)``), ``"normal"`` (``N(0, scale²)``) or ``"sign"`` (``±scale``). With DRTP and
Adam the scale hardly matters (only the direction of ``t_k`` does); with tpSGD it decides
whether the targets fall inside the activation's range (``tanh``: ``|t| < 1``; ReLU:
``t ≥ 0``; spiking rate: ``0 ≤ t ≤ 1``).

**Layer by layer.** With ``T = 1`` (a static rate network) and ``layerwise=True``,
:meth:`TargetProjectionRule.step` hands each layer's parameters to the update seam
(:class:`~neurolearn.updates.Updater`) right after that layer's forward pass, which steps them
and frees their update; only one layer's activity
and update exist at a time. With ``T > 1`` each layer's updates add up over the sequence
and the seam applies them once at its end.

What a synapse needs: pre-synaptic trace, post-synaptic state (``ψ``, ``h``) and the
broadcast vector ``t_k`` (a third factor per neuron through fixed random feedback). No weight
transport, no output error in the hidden layers, no stored past: local.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from neurolearn.errors import ConfigError
from neurolearn.layers import Conv2d, Layer
from neurolearn.learning.feedback import (FeedbackOptions, FixedFeedback, fixed_projection, label_vectors,
                                          output_error, project)
from neurolearn.learning.grads import add_update, write_grads
from neurolearn.learning.options import check_bool, check_choice
from neurolearn.learning.traces import LayerTracer, Signals, membrane_filter
from neurolearn.learning.workspace import (Workspace, active_inputs, dense_drive, event_drive, sparse_input,
                                          streamable)
from neurolearn.layers import LayerState
from neurolearn.network import Network
from neurolearn.objectives import Objective
from neurolearn.rules.base import Requirements, Rule, StepOutput
from neurolearn.updates import Updater

CONV_TARGETS = ("position", "channel")
TARGET_STEPS = ("all", "last")
LOCAL_LOSSES = ("l2", "l1", "ce", "linear")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class TargetProjectionOptions(FeedbackOptions):
    """DRTP's and tpSGD's options: the projection and spike factor (:class:`FeedbackOptions`),
    ``layerwise`` (step each layer after its forward pass when ``T = 1``), ``target_steps``
    (all, last) and ``conv_target`` (position, channel)."""

    layerwise: bool = True
    target_steps: str = "all"
    conv_target: str = "position"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bool("layerwise", self.layerwise)
        check_choice("target_steps", self.target_steps, TARGET_STEPS)
        check_choice("conv_target", self.conv_target, CONV_TARGETS)


@dataclass(frozen=True)
class DRTPOptions(TargetProjectionOptions):
    """:class:`TargetProjectionOptions` and ``margin`` (``None`` or 0: off; see :meth:`DRTP.hidden_error`)."""

    margin: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.margin is not None and (isinstance(self.margin, bool) or not isinstance(self.margin, (int, float))
                                        or not self.margin >= 0):
            raise ConfigError(f"drtp margin must be a non-negative number (0 = off) or None, got {self.margin!r}")
        object.__setattr__(self, "margin", self.margin or None)


@dataclass(frozen=True)
class TPSGDOptions(TargetProjectionOptions):
    """:class:`TargetProjectionOptions` and the local ``loss`` (l2, l1, ce, linear or a callable ``loss(h, t)``)."""

    loss: str | LossFn = "l2"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not callable(self.loss):
            check_choice("local loss", self.loss, LOCAL_LOSSES)


# ------------------------------------------------------------------------------ the rules
class TargetProjectionRule(FixedFeedback, Rule):
    """Shared machinery of DRTP and tpSGD: hidden layers learn from ``t_k = y* B_k``."""

    requires = Requirements(pre=True, post=True, broadcast_vector=True)
    Options = TargetProjectionOptions

    def feedback_shape(self, layer: Layer) -> tuple[int, ...]:
        if self.conv_target == "channel" and isinstance(layer, Conv2d):  # one target per feature map
            return (layer.pre_features_shape[0], 1, 1)
        return super().feedback_shape(layer)

    # ---------------------------------------------------------------- learning signal
    def hidden_error(self, post: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``e_k = ∂J_k/∂h_k`` per sample (no batch averaging); see subclasses."""
        raise NotImplementedError

    def layer_error(self, post: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:meth:`hidden_error`, or for a per-channel conv target (``target`` ``[B, C, 1, 1]``)
        the error of the feature maps' spatial means ``m = ⟨h⟩_{ij}``, ``∂J(m, t)/∂h_ij =
        e(m, t) / (H W)``: a shared filter can meet a class target on average over the image,
        not at every position (background patches look the same in every class)."""
        if post.dim() == 4 and target.shape[2:] == (1, 1) and post.shape[2:] != (1, 1):
            mean = post.mean((2, 3), keepdim=True)
            return (self.hidden_error(mean, target) / (post.shape[2] * post.shape[3])).expand_as(post)
        return self.hidden_error(post, target)

    def stream_error(self, post: torch.Tensor, target: torch.Tensor, out: torch.Tensor,
                     cache: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """:meth:`layer_error` for the streamed step, which may write it into ``out`` (a buffer shaped like
        ``post``) and keep what depends on ``target`` alone in ``cache`` (``None``: the target changes
        from step to step). Default: :meth:`layer_error`."""
        return self.layer_error(post, target)

    # ---------------------------------------------------------------- one step
    def _run(self, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective,
             updater: Updater | None) -> StepOutput:
        """Forward pass with local updates into ``.grad``. With an ``updater`` (training), every
        decorrelated layer also learns ``R`` from its input at each step, and in the
        layer-by-layer mode (``T = 1``, ``layerwise``) each layer's parameters are applied right
        after its forward pass; otherwise the caller applies all of them at the end."""
        self.check_setup()
        model.check_input(x)
        steps, batch = x.shape[0], x.shape[1]
        online = steps == 1 and updater is not None and self.layerwise
        if not online and streamable(model, x):
            return self._stream(model, x, y, objective)
        labels = label_vectors(y, model.output_size, steps, x.dtype)
        state = model.init_state(batch, x.device, x.dtype)
        tracers = [LayerTracer(layer, self.spike) for layer in model.layers]
        hidden, readout = model.layers[:-1], model.layers[-1]
        grads: list[dict[str, torch.Tensor]] = [{} for _ in model.layers]
        out_sig: list[Signals] = []
        outputs: list[torch.Tensor] = []
        norm = 1.0 / (batch * steps)
        with torch.no_grad():
            for t in range(steps):
                h = x[t]
                for k, layer in enumerate(hidden):
                    h, state[k], taps = layer.step(h, state[k])
                    sig = tracers[k].update(taps)
                    if self.target_steps == "last" and t < steps - 1:
                        continue
                    target = project(labels[t], self.matrices[k])
                    delta = self.layer_error(sig.post, target) * sig.deriv
                    add_update(layer, delta, sig, grads[k], norm)
                    if online:
                        write_grads(layer, grads[k])
                        grads[k] = {}
                    if updater is not None:  # this layer's step (layer by layer), then its R
                        updater.apply(list(layer.parameters()) if online else [],
                                      layer_inputs=(layer, taps.input, f"layer {k}"), generator=self.generator)
                out, state[-1], taps = readout.step(h, state[-1])
                out_sig.append(tracers[-1].update(taps))
                outputs.append(out)
                if updater is not None:
                    updater.apply([], layer_inputs=(readout, taps.input, "the readout"), generator=self.generator)
            e, loss, pred = output_error(model, torch.stack(outputs), y, objective)
            for t, sig in enumerate(out_sig):
                add_update(readout, e[t] * sig.deriv, sig, grads[-1], 1.0)
        for layer, g in zip(model.layers, grads):
            if g:
                write_grads(layer, g)
        return StepOutput(loss, pred)

    @torch.no_grad()
    def _stream(self, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective) -> StepOutput:
        r""":meth:`_run` for dense, non-recurrent, undecorrelated networks (:func:`streamable`), with the
        same equations, streamed: every per-step quantity is written into a buffer allocated once
        per sequence (:class:`Workspace`; the neurons step in place, :meth:`Neuron.step_`), the
        projected label ``t_k = y* B_k`` is computed once per batch (class labels), and each hidden
        layer's update is accumulated at every step into one gradient buffer,
        ``G_k += δ_k[t]ᵀ x̄_k[t]`` (``addmm_``), scaled by ``1/(BT)`` once at the end. Nothing of size
        ``T`` is kept but the readout's input traces ``x̄[t]`` (``[T, B, n]``: its error arrives at the
        end), whose update is then one product ``Σ_t (e[t] ⊙ ψ[t])ᵀ x̄[t]``.

        Sparse input (spikes; :func:`~neurolearn.learning.workspace.sparse_input`: at most a quarter
        of the first step's inputs non-zero) is processed **event by event**, as a local rule on
        event-driven hardware does: the first layer's drive is the sum of the weight columns of the
        inputs that spiked (:func:`~neurolearn.learning.workspace.event_drive`, ``embedding_bag``), and
        its update ``G += δ[t]ᵀ x̄[t]`` is accumulated over the inputs active somewhere in the
        sequence only (:func:`~neurolearn.learning.workspace.active_inputs`: a silent input's trace
        and its update column are exactly 0). The same sums as the dense products, in another order
        (the rounding differs in the last bits). BPTT (autograd) keeps its dense products."""
        steps, batch = x.shape[0], x.shape[1]
        hidden, readout = model.layers[:-1], model.layers[-1]
        ws = Workspace()
        state = model.init_state(batch, x.device, x.dtype)
        const = y.dim() == 1  # class labels: the same projected target at every step
        labels = label_vectors(y, model.output_size, steps, x.dtype)
        targets = [project(labels[0], m) for m in self.matrices] if const else None
        caches: list[dict[str, torch.Tensor] | None] = [{} if const else None for _ in hidden]
        filters = [membrane_filter(layer) for layer in model.layers]
        gw = [torch.zeros_like(layer.weight) if layer.weight.requires_grad else None for layer in hidden]
        # the first layer's silent inputs (zero over the whole sequence) have a zero trace: its update
        # is accumulated over the active inputs alone, G[:, A] += δᵀ x̄[:, A], the other columns stay 0
        cols = active_inputs(x.flatten(2)) if hidden and gw[0] is not None else None
        if cols is not None:
            gw[0] = gw[0].new_zeros((gw[0].shape[0], cols.numel()))
        gb = [torch.zeros_like(layer.bias) if layer.bias is not None and layer.bias.requires_grad else None
              for layer in hidden]
        frees: list[torch.Tensor | None] = [None] * len(model.layers)
        first = model.layers[0]  # sparse input (spikes): its drive event by event
        weight_t = None  # Wᵀ for the event-driven drive, over the active inputs when they are known
        if sparse_input(x):
            weight_t = first.weight.t().contiguous() if cols is None else first.weight.t()[cols]
        bbar = [0.0] * len(model.layers)
        kind, window, smoothing = self.spike
        ro_in = None  # the readout's input traces [T, B, n]
        outputs = ws.buf("out", (steps, batch, readout.out_shape[0]), x)
        ro_psi: list[torch.Tensor] = []
        for t in range(steps):
            h = x[t].flatten(1) if x.dim() > 3 else x[t]
            for k, layer in enumerate(model.layers):
                beta, gain = filters[k]
                bbar[k] = gain if beta == 0.0 else beta * bbar[k] + gain
                last = k == len(hidden)
                if last:  # x̄[t] = β x̄[t−1] + g x[t] into the readout's stack
                    if ro_in is None:
                        ro_in = ws.buf("ro_in", (steps, *h.shape), h)
                    xb = self._trace_into(ro_in[t], None if t == 0 else ro_in[t - 1], h, beta, gain, ws, k)
                else:
                    src = h if k or cols is None else torch.index_select(
                        h, 1, cols, out=ws.buf("active_in", (batch, cols.numel()), h))
                    xb = ws.like(f"xbar{k}", src)
                    self._trace_into(xb, None if t == 0 else xb, src, beta, gain, ws, k)
                if k == 0 and weight_t is not None:
                    z = event_drive(h if cols is None else src, weight_t, first.bias)
                else:
                    z = dense_drive(layer, h, ws.buf(f"z{k}", (batch, layer.out_shape[0]), h))
                if layer.neuron is None:
                    act, ns, psi, psi_buf = z, None, None, None
                else:
                    act, ns = layer.neuron.step_(z, state[k].neuron, layer._spike_fn, out=ws.like(f"act{k}", z))
                    psi_buf = None if last else ws.like(f"psi{k}", z)
                    psi, frees[k] = layer.neuron.local_derivative_(z, ns, kind, window, smoothing, frees[k],
                                                                   out=psi_buf)
                state[k] = LayerState(ns, None)
                if last:
                    outputs[t].copy_(act)
                    if psi is not None:
                        ro_psi.append(psi)
                    break
                post = act
                if layer.spiking:  # the filtered rate r̄ = β r̄ + (1 − β) s, in place
                    b_rate = layer.neuron.trace_filter()[0]
                    rate = ws.like(f"rate{k}", act)
                    if t == 0:
                        torch.mul(act, 1 - b_rate, out=rate)
                    else:  # s ∈ {0, 1}: (1 − β) s is exact, so the fused add rounds as fl(β r̄) + fl((1 − β) s)
                        rate.mul_(b_rate).add_(act, alpha=1 - b_rate)
                    post = rate
                h = act
                if self.target_steps == "last" and t < steps - 1:
                    continue
                target = targets[k] if const else project(labels[t], self.matrices[k])
                delta = self.stream_error(post, target, ws.like(f"err{k}", act), caches[k])
                if psi is not None and psi is psi_buf:  # δ = e ⊙ ψ, into ψ's buffer (ψ is not read again)
                    delta = psi.mul_(delta)
                elif psi is not None:
                    delta = torch.mul(delta, psi, out=ws.like(f"delta{k}", act))
                if gw[k] is not None:
                    gw[k].addmm_(delta.t(), xb)
                if gb[k] is not None:
                    gb[k].add_(delta.sum(0), alpha=bbar[k])
        e, loss, pred = output_error(model, outputs, y, objective)
        if ro_psi:
            e = e * torch.stack(ro_psi)
        c = readout.out_shape[0]
        norm = 1.0 / (batch * steps)
        if cols is not None:
            gw[0] = torch.zeros_like(hidden[0].weight).index_copy_(1, cols, gw[0])
        for k, layer in enumerate(hidden):
            write_grads(layer, {n: g.mul_(norm) for n, g in (("weight", gw[k]), ("bias", gb[k])) if g is not None})
        grads = {"weight": e.reshape(-1, c).t() @ ro_in.reshape(steps * batch, -1)}
        if readout.bias is not None:
            b_ro = torch.tensor([_bias_trace(filters[-1], t) for t in range(steps)], dtype=e.dtype)
            grads["bias"] = (e.sum(1) * b_ro.unsqueeze(1)).sum(0)
        write_grads(readout, grads)
        return StepOutput(loss, pred)

    @staticmethod
    def _trace_into(out: torch.Tensor, old: torch.Tensor | None, new: torch.Tensor, beta: float, gain: float,
                    ws: Workspace, k: int) -> torch.Tensor:
        """``out = β old + g new`` (``out = g new`` at the first step, ``old = None``), the roundings of
        :class:`LayerTracer`'s ``β x̄ + g x``; ``out`` may be ``old``."""
        if beta == 0.0 or old is None:
            return out.copy_(new) if gain == 1.0 else torch.mul(new, gain, out=out)
        torch.mul(old, beta, out=out)
        return out.add_(new if gain == 1.0 else torch.mul(new, gain, out=ws.like(f"gx{k}", new)))

    def estimate_gradients(self, model: Network, x: torch.Tensor, y: torch.Tensor,
                           objective: Objective) -> StepOutput:
        """Put every layer's update into ``.grad`` (adding to what is there) without stepping."""
        return self._run(model, x, y, objective, None)

    def step(self, model, x, y, objective, updater) -> StepOutput:
        out = self._run(model, x, y, objective, updater)
        updater.apply()  # the readout (layer by layer), or every layer once per sequence
        return out


def _bias_trace(filt: tuple[float, float], t: int) -> float:
    """``b̄[t]`` of the trace ``b̄ = β b̄ + g`` of a constant 1 (``b̄[0] = g``), as :class:`LayerTracer` computes it."""
    beta, gain = filt
    b = 0.0
    for _ in range(t + 1):
        b = gain if beta == 0.0 else beta * b + gain
    return b


class DRTP(TargetProjectionRule):
    r"""Direct random target projection (Frenkel, Lefebvre & Bol 2021).

    Hidden layer ``k``: ``δ_k = (y* B_k) ⊙ ψ_k`` (``ψ_k = f'(z_k)``, or a surrogate-free factor
    for spiking units), ``∇W_k = δ_k^T x̄_k``; output layer: its true error. Needs per synapse the
    pre-synaptic trace, the post-synaptic ``ψ`` and a broadcast vector (the projected label);
    no weight transport, no update locking. See :mod:`neurolearn.rules.target_projection`.
    """

    name = "drtp"
    summary = "direct random target projection: hidden layers learn from a fixed random projection of the label"

    Options = DRTPOptions

    def hidden_error(self, post: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``+t`` (Frenkel's sign); with ``margin`` m, ``t · 1[−t h < m t²]`` (the linear loss clipped per unit).

        ``margin`` is a neurolearn variant, not part of the published rule: off by default
        (``None`` or ``0``).

        Frenkel's DRTP relies on saturating units (tanh): ``f'(z) → 0`` once a unit is driven
        far along its target, which stops the update like an error would. Non-saturating units
        (ReLU, leaky ReLU, spike rates far above threshold) never stop, and every unit drifts
        toward a class-mean template. ``margin`` restores the stop: a unit stops learning from
        a sample once its activity is driven past ``−t`` (the direction descent on ``⟨t, h⟩`` moves
        it) by ``m |t|`` (``J = Σ_j max(0, m t_j² + t_j h_j)``, still only the unit's own activity and target).
        """
        if self.margin is None:
            return target
        return target * (-post * target < self.margin * target * target).to(target.dtype)

    def stream_error(self, post, target, out, cache):
        """:meth:`hidden_error` written into ``out``: ``−h t < m t²`` is ``h t > −(m t) t`` (negation is
        exact), the bound kept in ``cache`` for a target constant over the sequence, the comparison
        written as floats (no bool tensor)."""
        if self.margin is None:
            return self.hidden_error(post, target)
        bound = None if cache is None else cache.get("bound")
        if bound is None:
            bound = (self.margin * target * target).neg_()
            if cache is not None:
                cache["bound"] = bound
        torch.mul(post, target, out=out)
        torch.gt(out, bound, out=out)
        return out.mul_(target)


class TPSGD(TargetProjectionRule):
    r"""Target-projection SGD (Lomnitz et al. 2022): each layer minimises ``ℓ(h_k, y* B_k)``.

    ``loss`` is ``"l2"``, ``"l1"``, ``"ce"``, ``"linear"`` (= DRTP) or a callable
    ``loss(h, t) -> Tensor`` (per sample ``[B]`` or summed; differentiated on a detached copy of
    ``h``, so no gradient crosses a layer boundary). Hidden layers are updated one after the
    other during the forward pass (``T = 1``). Needs pre, post and a broadcast vector (the
    projected label); no weight transport. See :mod:`neurolearn.rules.target_projection`.
    """

    name = "tpsgd"
    summary = "target-projection SGD: each layer minimises a local loss to a random projection of the label"

    Options = TPSGDOptions

    def hidden_error(self, post: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss == "l2":
            return post - target
        if self.loss == "l1":
            return torch.sign(post - target)
        if self.loss == "linear":  # ℓ = ⟨h, t⟩: DRTP's sign (Frenkel)
            return target
        if self.loss == "ce":
            return (torch.softmax(post.flatten(1), 1) - torch.softmax(target.flatten(1), 1)).view_as(post)
        leaf = post.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self.loss(leaf, target.detach())
            (e,) = torch.autograd.grad(value.sum(), leaf)
        return e


__all__ = ["TargetProjectionOptions", "DRTPOptions", "TPSGDOptions", "TargetProjectionRule", "DRTP", "TPSGD",
           "fixed_projection", "project"]
