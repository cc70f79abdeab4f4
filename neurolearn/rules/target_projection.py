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

- **DRTP** (Frenkel et al. 2021): ``e_k = −t_k``, the linear "loss" ``J_k = −⟨t_k, h_k⟩``;
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
:meth:`TargetProjectionRule.train_step` steps the optimizer on each layer's parameters
right after that layer's forward pass and frees its update; only one layer's activity
and update exist at a time. With ``T > 1`` each layer's updates add up over the sequence
and the optimizer steps once at its end.

What a synapse needs: pre-synaptic trace, post-synaptic state (``ψ``, ``h``) and the
broadcast vector ``t_k`` (a third factor per neuron through fixed random feedback). No weight
transport, no output error in the hidden layers, no stored past: local.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F

from neurolearn.errors import ConfigError, ShapeError, unknown_name
from neurolearn.decorrelation import has_decorrelation, update_layer_decorrelation
from neurolearn.layers import Conv2d, Dense, Layer, Taps
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams, RateParams, activation_derivative
from neurolearn.objectives import Objective
from neurolearn.rules.base import Requirements, Rule, StepOutput

CONV_TARGETS = ("position", "channel")
PROJECTIONS = ("kaiming_uniform", "uniform", "uniform_positive", "normal", "sign")
SPIKE_DERIVATIVES = ("window", "lif_rate", "none")
LOCAL_LOSSES = ("l2", "l1", "ce", "linear")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------------ projections
def fixed_projection(
    n_labels: int, shape: tuple[int, ...], dist: str, scale: float, generator: torch.Generator | None
) -> torch.Tensor:
    """A fixed random matrix ``B ∈ R^{C × prod(shape)}``, returned as ``[C, *shape]``.

    See the module docstring for the distributions; ``scale`` multiplies them.
    """
    if dist not in PROJECTIONS:
        raise unknown_name("projection", dist, PROJECTIONS)
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"projection scale must be a positive number, got {scale!r}")
    device = generator.device if generator is not None else None
    size = (n_labels, *shape)
    u = torch.rand(size, generator=generator, device=device)
    if dist == "kaiming_uniform":
        return (2 * u - 1) * scale * math.sqrt(6.0 / n_labels)
    if dist == "uniform":
        return (2 * u - 1) * scale
    if dist == "uniform_positive":
        return u * scale
    if dist == "sign":
        return torch.where(u < 0.5, -scale, scale)
    return torch.randn(size, generator=generator, device=device) * scale


def project(label: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``t = y* B``: a label ``[B, C]`` through ``B`` (``[C, *shape]``) gives ``[B, *shape]``."""
    return (label @ matrix.flatten(1)).view(label.shape[0], *matrix.shape[1:])


def label_vectors(y: torch.Tensor, n_labels: int, steps: int, dtype: torch.dtype) -> torch.Tensor:
    """The label at every step, ``[T, B, C]``: one-hot class indices, or per-step targets."""
    if y.dim() == 1:
        return F.one_hot(y, n_labels).to(dtype).unsqueeze(0).expand(steps, -1, -1)
    if y.dim() == 3 and y.shape[0] == steps and y.shape[-1] == n_labels:
        return y.to(dtype)
    raise ShapeError(
        f"target projection needs class labels [B] or per-step targets [T={steps}, B, C={n_labels}], "
        f"got {list(y.shape)}"
    )


# ------------------------------------------------------------------------------ local signals
class Signals(NamedTuple):
    """What one layer's synapses see at one step (see the module docstring)."""

    pre: torch.Tensor  # x̄, the pre-synaptic trace
    rec: torch.Tensor | None  # the recurrent input's trace
    bias: float  # b̄, the trace of a constant 1
    deriv: torch.Tensor  # ψ, the post-synaptic factor
    post: torch.Tensor  # h (rate) or the filtered spike rate r̄


def membrane_filter(layer: Layer) -> tuple[float, float]:
    """``(β, g)`` of the pre-synaptic trace ``x̄ = β x̄ + g x`` (``(0, 1)``: no memory)."""
    p = layer.neuron
    if isinstance(p, (LIFParams, LIParams)):
        return p.beta, 1.0
    if isinstance(p, RateParams) and p.tau is not None:
        return p.beta, 1.0 - p.beta
    return 0.0, 1.0


class SpikeDerivative(NamedTuple):
    """Surrogate-free post-synaptic factor of spiking units (module docstring)."""

    kind: str = "window"
    window: float = 0.5
    smoothing: float = 0.2

    def check(self) -> "SpikeDerivative":
        if self.kind not in SPIKE_DERIVATIVES:
            raise unknown_name("spike_derivative", self.kind, SPIKE_DERIVATIVES)
        if not (self.window > 0 and self.smoothing > 0):
            raise ConfigError(f"window and smoothing must be positive, got {self.window}, {self.smoothing}")
        return self


class LayerTracer:
    """Keeps one layer's traces over a sequence and turns its taps into :class:`Signals`."""

    def __init__(self, layer: Layer, spike: SpikeDerivative) -> None:
        self.layer = layer
        self.spike = spike
        self.beta, self.gain = membrane_filter(layer)
        self.x_bar: torch.Tensor | None = None
        self.r_bar: torch.Tensor | None = None
        self.b_bar = 0.0
        self.rate: torch.Tensor | None = None
        self.free: torch.Tensor | None = None

    def _trace(self, old: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
        if self.beta == 0.0:
            return new
        return self.gain * new if old is None else self.beta * old + self.gain * new

    def derivative(self, taps: Taps) -> torch.Tensor:
        """``ψ``: ``f'`` of rate units, the chosen surrogate-free factor of LIF units."""
        p = self.layer.neuron
        if p is None or isinstance(p, LIParams):
            return torch.ones_like(taps.pre)
        if isinstance(p, RateParams):
            arg = taps.pre if p.tau is None else taps.mem
            return activation_derivative(p.activation, arg, p.negative_slope)
        kind = self.spike.kind
        if kind == "none":
            return torch.ones_like(taps.pre)
        if kind == "window":
            return ((taps.mem - p.threshold).abs() < self.spike.window * p.threshold).to(taps.pre.dtype)
        # lif_rate: free membrane u = low-pass filter of the drive, without reset
        if self.free is None:
            self.free = torch.full_like(taps.pre, float(p.v_leak))
        self.free = p.beta * self.free + (1 - p.beta) * (p.v_leak + p.r * taps.pre)
        return torch.sigmoid((self.free - p.threshold) / (self.spike.smoothing * p.threshold)) / p.threshold

    def update(self, taps: Taps) -> Signals:
        self.x_bar = self._trace(self.x_bar, taps.input)
        rec = None
        if taps.rec is not None:
            self.r_bar = self._trace(self.r_bar, taps.rec)
            rec = self.r_bar
        self.b_bar = self.gain if self.beta == 0.0 else self.beta * self.b_bar + self.gain
        post = taps.act
        if self.layer.spiking:
            p = self.layer.neuron
            s = taps.act
            self.rate = (1 - p.beta) * s if self.rate is None else p.beta * self.rate + (1 - p.beta) * s
            post = self.rate
        return Signals(self.x_bar, rec, self.b_bar, self.derivative(taps), post)


def add_update(layer: Layer, delta: torch.Tensor, sig: Signals, grads: dict[str, torch.Tensor], scale: float) -> None:
    """Add ``scale · δ^T x̄`` (and the bias and recurrent parts) to ``grads`` (by parameter name)."""

    def acc(name: str, value: torch.Tensor) -> None:
        grads[name] = value * scale if name not in grads else grads[name].add_(value, alpha=scale)

    if not isinstance(layer, (Dense, Conv2d)):
        raise ConfigError(f"target projection does not know how to update a {type(layer).__name__} layer")
    acc("weight", layer.weight_gradient(delta, sig.pre))
    if layer.recurrent_weight is not None and sig.rec is not None:
        acc("recurrent_weight", delta.flatten(1).T @ sig.rec.flatten(1))
    if layer.bias is not None:
        acc("bias", delta.sum(0).flatten(1).sum(1) * sig.bias if delta.dim() > 2 else delta.sum(0) * sig.bias)


def write_grads(layer: Layer, grads: dict[str, torch.Tensor]) -> None:
    """Put the accumulated updates into the layer's ``.grad`` (adding to what is there)."""
    for name, g in grads.items():
        p = getattr(layer, name)
        p.grad = g.to(p.dtype) if p.grad is None else p.grad + g


def output_error(model: Network, outputs: torch.Tensor, y: torch.Tensor, objective: Objective
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(e, loss, pred)``: ``e = ∂⟨L⟩_B/∂out[t]`` (``[T, B, C]``) through the model's decode."""
    leaf = outputs.detach().requires_grad_(True)
    with torch.enable_grad():
        pred = model.decode_output(leaf)
        loss = objective.loss(pred, y)
        (e,) = torch.autograd.grad(loss.mean(), leaf)
    return e, loss.detach(), pred.detach()


def check_readout(model: Network) -> None:
    out = model.layers[-1]
    if out.recurrent or out.spiking:
        raise ConfigError(
            "the output layer of a target-projection / feedback-alignment rule must be a non-recurrent, "
            "non-spiking readout (linear, rate or leaky integrator): it learns from its exact local error"
        )


# ------------------------------------------------------------------------------ the rules
class FixedFeedback:
    """Mixin for rules whose hidden layers learn through fixed random matrices ``B_k`` (DRTP, tpSGD, DFA).

    Holds the projection settings and the surrogate-free spike factor, draws one
    ``B_k ∈ R^{C × n_k}`` per hidden layer in :meth:`setup` from the rule's generator
    (:func:`fixed_projection`) and keeps them in the rule's checkpoint state. Put it before
    the :class:`Rule` base class, so that its ``setup`` runs the base class's first.
    """

    name: str
    matrices: list[torch.Tensor]

    def init_feedback(self, projection: str, scale: float, spike_derivative: str, window: float,
                      smoothing: float) -> None:
        if projection not in PROJECTIONS:
            raise unknown_name("projection", projection, PROJECTIONS)
        self.projection, self.scale = projection, float(scale)
        self.spike = SpikeDerivative(spike_derivative, float(window), float(smoothing)).check()
        self.matrices = []

    def setup(self, model: Network, objective: Objective, generator: torch.Generator) -> None:
        super().setup(model, objective, generator)  # type: ignore[misc]
        check_readout(model)
        c = model.output_size
        self.matrices = [fixed_projection(c, self.feedback_shape(layer), self.projection, self.scale, generator)
                         for layer in model.layers[:-1]]

    def feedback_shape(self, layer: Layer) -> tuple[int, ...]:
        """The shape ``B_k`` maps the label to: the layer's pre-activation (per sample)."""
        return tuple(layer.pre_features_shape)

    def check_setup(self) -> None:
        if not self.matrices:
            raise ConfigError(f"rule {self.name!r}: call setup(model, objective, generator) before training")

    def state_dict(self) -> dict[str, Any]:
        return {"matrices": [m.clone() for m in self.matrices]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.matrices = [m.clone() for m in state["matrices"]]


class TargetProjectionRule(FixedFeedback, Rule):
    """Shared machinery of DRTP and tpSGD: hidden layers learn from ``t_k = y* B_k``."""

    requires = Requirements(pre=True, post=True, broadcast_vector=True)

    def __init__(
        self,
        projection: str = "kaiming_uniform",
        scale: float = 1.0,
        spike_derivative: str = "window",
        window: float = 0.5,
        smoothing: float = 0.2,
        layerwise: bool = True,
        target_steps: str = "all",
        conv_target: str = "position",
    ) -> None:
        super().__init__()
        self.init_feedback(projection, scale, spike_derivative, window, smoothing)
        self.layerwise = bool(layerwise)
        if target_steps not in ("all", "last"):
            raise unknown_name("target_steps", target_steps, ("all", "last"))
        if conv_target not in CONV_TARGETS:
            raise unknown_name("conv_target", conv_target, CONV_TARGETS)
        self.target_steps = target_steps
        self.conv_target = conv_target

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

    # ---------------------------------------------------------------- one step
    def _run(self, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective,
             done: Callable[[Layer], None] | None, learn_decorrelation: bool = False) -> StepOutput:
        """Forward pass with local updates; ``done(layer)`` is called when a layer's ``.grad`` is final.

        With ``learn_decorrelation`` every decorrelated layer also updates its ``R`` from its
        input at each step (after its own weight step in the layer-by-layer mode)."""
        self.check_setup()
        model.check_input(x)
        steps, batch = x.shape[0], x.shape[1]
        labels = label_vectors(y, model.output_size, steps, x.dtype)
        state = model.init_state(batch, x.device, x.dtype)
        tracers = [LayerTracer(layer, self.spike) for layer in model.layers]
        hidden, readout = model.layers[:-1], model.layers[-1]
        grads: list[dict[str, torch.Tensor]] = [{} for _ in model.layers]
        out_sig: list[Signals] = []
        outputs: list[torch.Tensor] = []
        online = steps == 1 and done is not None and self.layerwise
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
                        done(layer)
                    if learn_decorrelation:
                        update_layer_decorrelation(layer, taps.input, self.generator, where=f"layer {k}")
                out, state[-1], taps = readout.step(h, state[-1])
                out_sig.append(tracers[-1].update(taps))
                outputs.append(out)
                if learn_decorrelation:
                    update_layer_decorrelation(readout, taps.input, self.generator, where="the readout")
            e, loss, pred = output_error(model, torch.stack(outputs), y, objective)
            for t, sig in enumerate(out_sig):
                add_update(readout, e[t] * sig.deriv, sig, grads[-1], 1.0)
        for layer, g in zip(model.layers, grads):
            if g:
                write_grads(layer, g)
        if done is not None:
            for layer in (model.layers if not online else [readout]):
                done(layer)
        return StepOutput(loss, pred)

    def estimate_gradients(self, model: Network, x: torch.Tensor, y: torch.Tensor,
                           objective: Objective) -> StepOutput:
        """Put every layer's update into ``.grad`` (adding to what is there) without stepping."""
        return self._run(model, x, y, objective, None)

    def train_step(self, model, x, y, objective, optimizer) -> StepOutput:
        optimizer.zero_grad(set_to_none=True)

        def step_layer(layer: Layer) -> None:
            # only parameters with a .grad move: this layer's
            optimizer.step()
            for p in layer.parameters():
                p.grad = None

        decor = has_decorrelation(model)
        if x.shape[0] == 1 and self.layerwise:
            return self._run(model, x, y, objective, step_layer, decor)
        out = self._run(model, x, y, objective, None, decor)
        optimizer.step()
        return out


class DRTP(TargetProjectionRule):
    r"""Direct random target projection (Frenkel, Lefebvre & Bol 2021).

    Hidden layer ``k``: ``δ_k = −(y* B_k) ⊙ ψ_k`` (``ψ_k = f'(z_k)``, or a surrogate-free factor
    for spiking units), ``∇W_k = δ_k^T x̄_k``; output layer: its true error. Needs per synapse the
    pre-synaptic trace, the post-synaptic ``ψ`` and a broadcast vector (the projected label);
    no weight transport, no update locking. See :mod:`neurolearn.rules.target_projection`.
    """

    name = "drtp"
    summary = "direct random target projection: hidden layers learn from a fixed random projection of the label"

    def __init__(self, projection: str = "kaiming_uniform", scale: float = 1.0, spike_derivative: str = "window",
                 window: float = 0.5, smoothing: float = 0.2, layerwise: bool = True,
                 margin: float | None = None, target_steps: str = "all", conv_target: str = "position") -> None:
        super().__init__(projection, scale, spike_derivative, window, smoothing, layerwise, target_steps, conv_target)
        if margin is not None and not (isinstance(margin, (int, float)) and margin >= 0):
            raise ConfigError(f"drtp margin must be a non-negative number (0 = off) or None, got {margin!r}")
        self.margin = margin or None

    def hidden_error(self, post: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``−t``; with ``margin`` m, ``−t · 1[t h < m t²]`` (the linear loss clipped per unit).

        ``margin`` is a neurolearn variant, not part of the published rule: off by default
        (``None`` or ``0``).

        Frenkel's DRTP relies on saturating units (tanh): ``f'(z) → 0`` once a unit is driven
        far along its target, which stops the update like an error would. Non-saturating units
        (ReLU, leaky ReLU, spike rates far above threshold) never stop, and every unit drifts
        toward a class-mean template. ``margin`` restores the stop: a unit stops learning from
        a sample once its activity is on the target's side by ``m |t|``
        (``J = Σ_j max(0, m t_j² − t_j h_j)``, still only the unit's own activity and target).
        """
        if self.margin is None:
            return -target
        return -target * (post * target < self.margin * target * target).to(target.dtype)


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

    def __init__(self, loss: str | LossFn = "l2", projection: str = "kaiming_uniform", scale: float = 1.0,
                 spike_derivative: str = "window", window: float = 0.5, smoothing: float = 0.2,
                 layerwise: bool = True, target_steps: str = "all", conv_target: str = "position") -> None:
        super().__init__(projection, scale, spike_derivative, window, smoothing, layerwise, target_steps, conv_target)
        if not callable(loss) and loss not in LOCAL_LOSSES:
            raise unknown_name("local loss", loss, LOCAL_LOSSES)
        self.loss = loss

    def hidden_error(self, post: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.loss == "l2":
            return post - target
        if self.loss == "l1":
            return torch.sign(post - target)
        if self.loss == "linear":
            return -target
        if self.loss == "ce":
            return (torch.softmax(post.flatten(1), 1) - torch.softmax(target.flatten(1), 1)).view_as(post)
        leaf = post.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self.loss(leaf, target.detach())
            (e,) = torch.autograd.grad(value.sum(), leaf)
        return e
