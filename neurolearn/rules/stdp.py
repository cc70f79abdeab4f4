r"""Spike-timing-dependent plasticity: pair-based and triplet STDP with traces (PLASTICITY.md 4).

**Traces** (neurolearn's Euler convention, one value per synapse's pre- or post-neuron):

.. math::  \hat r_1[t] = (1 - dt/\tau_+)\, r_1[t-1],\quad \hat o_1[t] = (1 - dt/\tau_-)\, o_1[t-1]

(and ``r_2`` with ``τ_x``, ``o_2`` with ``τ_y`` for the triplet rule). ``^`` marks the *pre-step*
value: decayed to step ``t`` but without step ``t``'s own spike. After the update the traces take
the step's spikes ``s`` (pre) and ``z`` (post): **all-to-all** pairing ``r = r̂ + s`` (every earlier
spike counts), **nearest-spike** pairing ``r = s ? 1 : r̂`` (only the latest one).

**Update** at step ``t`` (post spike ``z_j``, pre spike ``s_i``):

.. math::  \text{LTP}_{ji} = z_j\,(A_2^+ + A_3^+ \hat o_{2,j})\,\hat r_{1,i},\qquad
           \text{LTD}_{ji} = \hat o_{1,j}\, s_i\,(A_2^- + A_3^- \hat r_{2,i})

    w' = \mathrm{clip}(w + f_+(w)\,\text{LTP},\ 0,\ w_{max}),\qquad
    w'' = \mathrm{clip}(w' - f_-(w')\,\text{LTD},\ 0,\ w_{max})

with the weight dependence of Gütig et al. 2003, ``f₊(w) = (1 − w/w_max)^μ₊``, ``f₋(w) = (w/w_max)^μ₋``:
``μ = 0`` **additive** (hard bounds, competitive, bimodal weights), ``μ = 1`` **multiplicative**
(soft bounds, unimodal). ``A₃± = 0`` is the pair rule; ``A₃± ≠ 0`` the triplet rule of Pfister &
Gerstner 2006 (``ô₂``, ``r̂₂`` are the second traces *before* this step's spike, as in the paper).
A spike pair ``Δ = t_post − t_pre = k`` steps (``k ≥ 1``) adds ``A₂⁺ (1 − dt/τ₊)^k`` to LTP; LTD
symmetrically. **Same-step pairs do not pair** (traces are read before they take the step's spikes;
PLASTICITY.md 4.1's recommendation) unless ``same_step="ltp"``: then LTP reads the pre trace *after*
this step's pre spike, so a pre and a post spike in the same step count as pre-before-post (``Δ = 0``,
``A₂⁺``), Brian2's ``STDP.py`` convention, right when the input of a step can cause that step's
spike (neurolearn's neurons add the input to the membrane within the step). LTP is applied before LTD: the Brian2 synapses of :mod:`neurolearn.backends.brian2_stdp` use
the same order, so both engines give the same weights on the same spikes.

**Batches.** Correlations are averaged over the batch (``1/B``), so amplitudes do not depend on
the batch size. Pre activity is the layer's ``input`` tap (the recurrent weight's: ``rec``, the
layer's spikes of the previous step), post activity the ``act`` tap: spikes for every spiking
neuron model of the contract (LIF, CubaLIF, ALIF, Izhikevich, AdEx); the correlation is the
layer's own :meth:`~neurolearn.layers.Layer.weight_gradient`, so dense and convolutional layers
both work.

**How the rule plugs in (a choice).** STDP is not a gradient estimator, but it computes a weight
change from what the synapse sees, which is all a :class:`~neurolearn.rules.base.GradientRule`
does. :meth:`STDP.estimate_gradients` runs one trial (the weights fixed during it), sums the
trial's LTP and LTD, bounds the result and writes ``.grad = w − w''`` (minus the bounded change),
never for a parameter with ``requires_grad=False``. Plain SGD with learning rate ``η ∈ (0, 1]``
then sets ``w ← w + η (w'' − w)``, a convex combination of two points of ``[0, w_max]``, so the
bounds hold exactly and ``η`` scales the amplitudes; with ``η = 1`` it is STDP itself. Momentum,
weight decay or Adam would turn the update into something that is not STDP (and break the
bounds), so :meth:`STDP.train_step` refuses them. For plasticity *during* a simulation (weights
changing at every step, as in Song et al. 2000) use :meth:`STDP.run_online`, which applies the
same update step by step.

Locality: P (pre trace), Q (post spike and trace); no broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator, NamedTuple

import torch

from neurolearn.errors import ConfigError, unknown_key, unknown_name
from neurolearn.layers import Layer, LayerState
from neurolearn.network import Network
from neurolearn.neurons.base import check_finite
from neurolearn.rules.base import GradientRule, Requirements, StepOutput

PAIRINGS = ("all", "nearest")
SAME_STEP = ("none", "ltp")


class STDPTraces(NamedTuple):
    """Traces after a step: pre ``r1`` (τ₊), post ``o1`` (τ₋) and, for the triplet rule, ``r2`` (τ_x), ``o2`` (τ_y)."""

    r1: torch.Tensor
    o1: torch.Tensor
    r2: torch.Tensor | None = None
    o2: torch.Tensor | None = None


class Pairing(NamedTuple):
    """One step's pairing factors: ``LTP = Σ_b ltp_post ⊗ ltp_pre``, ``LTD = Σ_b ltd_post ⊗ ltd_pre``."""

    ltp_post: torch.Tensor
    ltp_pre: torch.Tensor
    ltd_post: torch.Tensor
    ltd_pre: torch.Tensor


@dataclass(frozen=True)
class STDPParams:
    r"""Pair / triplet STDP (module docstring). Times in seconds, amplitudes in weight units.

    ``a_plus``/``a_minus`` are the pair amplitudes ``A₂±``; ``a3_plus``/``a3_minus`` the triplet ones
    (0: pair rule); ``mu_plus``/``mu_minus`` the weight dependence (0 additive, 1 multiplicative).
    """

    a_plus: float = 0.01
    a_minus: float = 0.0105
    tau_plus: float = 20e-3
    tau_minus: float = 20e-3
    pairing: str = "all"
    mu_plus: float = 0.0
    mu_minus: float = 0.0
    w_max: float = 1.0
    a3_plus: float = 0.0
    a3_minus: float = 0.0
    tau_x: float = 101e-3
    tau_y: float = 125e-3
    same_step: str = "none"

    def __post_init__(self) -> None:
        for name in ("a_plus", "a_minus", "a3_plus", "a3_minus", "mu_plus", "mu_minus"):
            check_finite(name, getattr(self, name), non_negative=True)
        for name in ("tau_plus", "tau_minus", "tau_x", "tau_y", "w_max"):
            check_finite(name, getattr(self, name), positive=True)
        if self.pairing not in PAIRINGS:
            raise unknown_name("STDP pairing", self.pairing, PAIRINGS)
        if self.same_step not in SAME_STEP:
            raise unknown_name("STDP same_step", self.same_step, SAME_STEP)

    @property
    def triplet(self) -> bool:
        return self.a3_plus != 0.0 or self.a3_minus != 0.0

    def decays(self, dt: float) -> tuple[float, float, float, float]:
        """Euler decay factors ``1 − dt/τ`` of r1, o1, r2, o2 (``dt`` must not exceed any τ)."""
        out = []
        for name in ("tau_plus", "tau_minus", "tau_x", "tau_y"):
            tau = getattr(self, name)
            if dt > tau:
                raise ConfigError(f"dt = {dt:g} s is larger than the STDP time constant {name} = {tau:g} s")
            out.append(1.0 - dt / tau)
        return tuple(out)  # type: ignore[return-value]

    def window_integrals(self, dt: float) -> tuple[float, float]:
        r"""The pair rule's LTP and LTD windows integrated over the spike-time difference (seconds ×
        weight units), at the weight-independent amplitudes: ``dt Σ_k A₊ (1 − dt/τ₊)^k`` over the
        pairs that potentiate (``k ≥ 1``, and ``k = 0`` when ``same_step = "ltp"``) and
        ``dt Σ_{k≥1} A₋ (1 − dt/τ₋)^k`` over those that depress:

        .. math::  I_+ = A_+ (\tau_+ - dt) \;[+ A_+ dt \text{ if same\_step = "ltp"}],\qquad I_- = A_- (\tau_- - dt)

        (continuous time: ``A± τ±``). For uncorrelated pre and post spikes at rates ``ν_pre``,
        ``ν_post`` the mean drift of a weight is ``ν_pre ν_post (I₊ − I₋)``, so the balance of
        Song et al. 2000 (``A₋τ₋ / A₊τ₊ = 1.05``) at a step ``dt`` is ``I₋ / I₊ = 1.05``: with
        ``same_step = "ltp"`` and ``dt = τ/20`` that is ``A₋/A₊ = 1.05 · 20/19``, not 1.05 (which
        makes ``I₋ < I₊`` and uncorrelated activity potentiate)."""
        d_plus, d_minus = self.decays(dt)[:2]
        ltp = self.a_plus * dt * (d_plus / (1.0 - d_plus) + (1.0 if self.same_step == "ltp" else 0.0))
        return ltp, self.a_minus * dt * d_minus / (1.0 - d_minus)

    def init_traces(self, pre_shape, post_shape, device=None, dtype=None) -> STDPTraces:
        r1 = torch.zeros(pre_shape, device=device, dtype=dtype)
        o1 = torch.zeros(post_shape, device=device, dtype=dtype)
        if self.triplet:
            return STDPTraces(r1, o1, torch.zeros_like(r1), torch.zeros_like(o1))
        return STDPTraces(r1, o1)

    def _take(self, hat: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        return hat + spikes if self.pairing == "all" else torch.where(spikes > 0, torch.ones_like(hat), hat)

    def step(self, pre: torch.Tensor, post: torch.Tensor, traces: STDPTraces, dt: float
             ) -> tuple[Pairing, STDPTraces]:
        """One step: the pairing factors from the pre-step traces, then the traces take the spikes."""
        d1, d2, dx, dy = self.decays(dt)
        r1, o1 = d1 * traces.r1, d2 * traces.o1
        ltp_gain = self.a_plus
        ltd_gain = self.a_minus
        r2 = o2 = None
        if self.triplet:
            r2, o2 = dx * traces.r2, dy * traces.o2
            ltp_gain = self.a_plus + self.a3_plus * o2
            ltd_gain = self.a_minus + self.a3_minus * r2
        r1_new = self._take(r1, pre)
        pairing = Pairing(post * ltp_gain, r1_new if self.same_step == "ltp" else r1, o1, pre * ltd_gain)
        new = STDPTraces(r1_new, self._take(o1, post),
                         None if r2 is None else self._take(r2, pre), None if o2 is None else self._take(o2, post))
        return pairing, new

    def potentiation_factor(self, w: torch.Tensor) -> torch.Tensor | float:
        """``f₊(w) = (1 − w/w_max)^μ₊`` (1 for the additive rule)."""
        if self.mu_plus == 0.0:
            return 1.0
        return (1.0 - w / self.w_max).clamp(min=0.0) ** self.mu_plus

    def depression_factor(self, w: torch.Tensor) -> torch.Tensor | float:
        """``f₋(w) = (w/w_max)^μ₋`` (1 for the additive rule)."""
        if self.mu_minus == 0.0:
            return 1.0
        return (w / self.w_max).clamp(min=0.0) ** self.mu_minus

    def apply(self, w: torch.Tensor, ltp: torch.Tensor, ltd: torch.Tensor) -> torch.Tensor:
        """The bounded weights after LTP then LTD (module docstring): a new tensor."""
        w1 = (w + self.potentiation_factor(w) * ltp).clamp(0.0, self.w_max)
        return (w1 - self.depression_factor(w1) * ltd).clamp(0.0, self.w_max)


def _correlate(layer: Layer, name: str, post: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """``Σ_b post ⊗ pre`` in the shape of the layer's parameter ``name``."""
    if name == "weight":
        return layer.weight_gradient(post, pre)
    n = post.shape[-1]
    return post.reshape(-1, n).T @ pre.reshape(-1, n)


class Synapses(NamedTuple):
    """One plastic weight: the layer index, the layer, and ``weight`` or ``recurrent_weight``."""

    index: int
    layer: Layer
    name: str


def plastic_synapses(model: Network, layers: tuple[int, ...] | None, rule: str) -> list[Synapses]:
    """The weights a spike-based rule changes: those of spiking layers (all, or the listed ones) with
    ``requires_grad=True``. A listed layer that does not spike, or decorrelates its input, is refused."""
    chosen = range(len(model.layers)) if layers is None else layers
    out: list[Synapses] = []
    for k in chosen:
        if not 0 <= k < len(model.layers):
            raise ConfigError(f"{rule}: layer {k} does not exist (the model has {len(model.layers)} layers)")
        layer = model.layers[k]
        if not layer.spiking:
            if layers is not None:
                raise ConfigError(f"{rule}: layer {k} does not spike; spike-timing plasticity needs spiking neurons")
            continue
        if layer.decorrelation is not None:
            raise ConfigError(f"{rule}: layer {k} decorrelates its input; STDP of a decorrelated layer is not defined")
        for name in ("weight", "recurrent_weight"):
            param = getattr(layer, name, None)
            if param is not None and param.requires_grad:
                out.append(Synapses(k, layer, name))
    if not out:
        raise ConfigError(f"{rule}: the model has no trainable weights of a spiking layer to make plastic")
    return out


def stream_steps(model: Network, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, list]]:
    """Run ``model`` on ``x`` (``[T, B, ...]``) step by step: yields ``(output, taps)`` per step.

    A boolean or integer ``x`` (spike trains kept small: 1 byte a spike, not 8) is converted one
    step at a time to the dtype of the model's parameters."""
    model.check_input(x)
    dtype = x.dtype if x.is_floating_point() else next(model.parameters()).dtype
    state: list[LayerState] = model.init_state(x.shape[1], x.device, dtype)
    for t in range(x.shape[0]):
        out, state, taps = model.step(x[t].to(dtype), state)
        yield out, taps


def pre_post(syn: Synapses, taps) -> tuple[torch.Tensor, torch.Tensor]:
    """The pre and post activity of a plastic weight at one step."""
    tap = taps[syn.index]
    return (tap.input if syn.name == "weight" else tap.rec), tap.act


class STDP(GradientRule):
    r"""Unsupervised pair / triplet STDP of every spiking layer (module docstring; parameters of
    :class:`STDPParams`). ``layers``: indices of the plastic layers (default: every spiking layer).
    """

    name = "stdp"
    summary = "STDP (pair/triplet, all-to-all/nearest, additive/multiplicative), unsupervised"
    requires = Requirements(pre=True, post=True)

    def __init__(self, layers: tuple[int, ...] | list[int] | None = None, **params) -> None:
        super().__init__()
        known = [f.name for f in fields(STDPParams)]
        for key in params:
            if key not in known:
                raise unknown_key("rule stdp", key, known + ["layers"])
        self.params = STDPParams(**params)
        self.layers = None if layers is None else tuple(int(k) for k in layers)

    def _pair_steps(self, model: Network, x: torch.Tensor, syns: list) -> Iterator[
            tuple[int, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]]:
        """Simulate ``x`` step by step: per step ``t`` the output and, per plastic weight in ``syns``,
        this step's ``(LTP, LTD)`` pair correlations summed over the batch (the traces kept here)."""
        p, dt = self.params, float(model.dt)
        traces: list[STDPTraces | None] = [None] * len(syns)
        for t, (out, taps) in enumerate(stream_steps(model, x)):
            changes = []
            for n, syn in enumerate(syns):
                pre, post = pre_post(syn, taps)
                if traces[n] is None:
                    traces[n] = p.init_traces(pre.shape, post.shape, pre.device, pre.dtype)
                pair, traces[n] = p.step(pre, post, traces[n], dt)
                changes.append((_correlate(syn.layer, syn.name, pair.ltp_post, pair.ltp_pre),
                                _correlate(syn.layer, syn.name, pair.ltd_post, pair.ltd_pre)))
            yield t, out, changes

    # -------------------------------------------------------------- one trial
    @torch.no_grad()
    def correlations(self, model: Network, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Run one trial with the weights fixed: the output ``[T, B, C]`` and, per plastic weight,
        the trial's ``(LTP, LTD)`` sums averaged over the batch."""
        syns = plastic_synapses(model, self.layers, self.name)
        batch = x.shape[1]
        sums = [(torch.zeros_like(getattr(s.layer, s.name)), torch.zeros_like(getattr(s.layer, s.name))) for s in syns]
        outputs = []
        for _, out, changes in self._pair_steps(model, x, syns):
            outputs.append(out)
            for (ltp_sum, ltd_sum), (ltp, ltd) in zip(sums, changes):
                ltp_sum.add_(ltp, alpha=1.0 / batch)
                ltd_sum.add_(ltd, alpha=1.0 / batch)
        return torch.stack(outputs), sums

    def estimate_gradients(self, model, x, y, objective) -> StepOutput:
        """``.grad = w − w''`` (minus the trial's bounded STDP change) for each plastic weight."""
        output, sums = self.correlations(model, x)
        for syn, (ltp, ltd) in zip(plastic_synapses(model, self.layers, self.name), sums):
            w = getattr(syn.layer, syn.name)
            w.grad = (w.detach() - self.params.apply(w.detach(), ltp, ltd))
        pred = model.decode_output(output)
        return StepOutput(objective.loss(pred, y).detach(), pred.detach())

    def train_step(self, model, x, y, objective, optimizer) -> StepOutput:
        check_plain_sgd(optimizer, self.name)
        return super().train_step(model, x, y, objective, optimizer)

    # -------------------------------------------------------------- plasticity during a simulation
    @torch.no_grad()
    def run_online(self, model: Network, x: torch.Tensor, every: int = 1) -> torch.Tensor:
        """Simulate ``x`` (``[T, B, ...]``) with the weights changing as it runs: every ``every`` steps
        the accumulated LTP/LTD (batch-averaged) is applied in place (bounded). Frozen weights
        (``requires_grad=False``) are left alone. Returns the output ``[T, B, C]``."""
        if every < 1:
            raise ConfigError(f"run_online: every must be >= 1, got {every}")
        p = self.params
        syns = plastic_synapses(model, self.layers, self.name)
        batch = x.shape[1]
        acc = [[0.0, 0.0] for _ in syns]
        outputs = []
        for t, out, changes in self._pair_steps(model, x, syns):
            outputs.append(out)
            for n, (syn, (ltp, ltd)) in enumerate(zip(syns, changes)):
                acc[n][0] = acc[n][0] + ltp / batch
                acc[n][1] = acc[n][1] + ltd / batch
                if (t + 1) % every == 0 or t + 1 == x.shape[0]:
                    w = getattr(syn.layer, syn.name)
                    w.copy_(p.apply(w, torch.as_tensor(acc[n][0]), torch.as_tensor(acc[n][1])))
                    acc[n] = [0.0, 0.0]
        return torch.stack(outputs)

    def epoch_metrics(self, model: Network) -> dict[str, float]:
        """Fraction of plastic weights within 10 % of each bound (bimodality at a glance)."""
        ws = torch.cat([getattr(s.layer, s.name).detach().flatten()
                        for s in plastic_synapses(model, self.layers, self.name)]) / self.params.w_max
        return {"stdp_frac_low": float((ws < 0.1).float().mean()), "stdp_frac_high": float((ws >= 0.9).float().mean())}


def check_plain_sgd(optimizer: torch.optim.Optimizer | None, rule: str) -> None:
    """A plasticity rule's ``.grad`` is a bounded weight change: it needs plain SGD with ``lr`` in (0, 1]."""
    ok = isinstance(optimizer, torch.optim.SGD)
    if ok:
        for g in optimizer.param_groups:
            if not (0.0 < g["lr"] <= 1.0) or g.get("momentum", 0.0) or g.get("weight_decay", 0.0) or g.get("nesterov"):
                ok = False
    if not ok:
        raise ConfigError(f"rule {rule} writes bounded weight changes, not gradients: train it with plain SGD, "
                          "lr in (0, 1] (1 = the rule's own amplitudes), no momentum or weight decay "
                          "(--optimizer sgd --lr 1 --momentum 0)")


__all__ = ["STDP", "STDPParams", "STDPTraces", "Pairing", "PAIRINGS", "plastic_synapses", "stream_steps",
           "pre_post", "check_plain_sgd"]
