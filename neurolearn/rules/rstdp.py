r"""Reward-modulated STDP: Izhikevich 2007's dopamine-modulated STDP and Florian 2007's MSTDP / MSTDPET
(PLASTICITY.md 5.1, 5.2).

All three share the pair-STDP term of :mod:`neurolearn.rules.stdp` (pre-step traces, all-to-all or
nearest pairing, no weight dependence), the **point eligibility**

.. math::  \zeta_{ji}[t] = A_+\, z_j[t]\,\hat r_i[t] - A_-\, \hat o_j[t]\, s_i[t],

and a broadcast scalar reward ``r[t]`` (per step, or per trial: see :class:`RSTDP`). Per step
(Euler, ``dt``):

- ``form="izhikevich"`` (DA-STDP): eligibility ``c ← (1 − dt/τ_c) c + ζ``, dopamine
  ``d ← (1 − dt/τ_d) d + r``, ``Δw = η c (d + d_tonic)`` (Izhikevich's ``ds/dt = c·d``; ``η``
  absorbs ``dt``; ``d_tonic`` is his tonic dopamine 0.002);
- ``form="mstdp"`` (Florian): ``Δw = η r ζ`` (reward acts on the pairs of the same step);
- ``form="mstdpet"`` (Florian): ``e ← (1 − dt/τ_c) e + (dt/τ_c) ζ``, ``Δw = η r e``.

Weights are clipped to ``[0, w_max]`` after every change. Same-step pairs do not pair and LTP
is applied together with LTD (one ``ζ``), the conventions of the STDP rule.

Analytic check (``form="izhikevich"``, continuous time): one pre spike at ``t_pre``, a post spike
``Δ > 0`` later and one dopamine pulse ``D`` at ``t_d > t_post``: ``c(t_post) = A₊ e^{−Δ/τ₊}`` and
``Δw = η c(t_post) D e^{−(t_d − t_post)/τ_c} τ_c τ_d/(τ_c + τ_d) / dt``; Euler agrees to ``O(dt/τ)``.

Locality: P (pre trace), Q (post trace, spike), S (eligibility), Bs (reward / dopamine).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, NamedTuple

import torch

from neurolearn.errors import ConfigError, unknown_key, unknown_name
from neurolearn.network import Network
from neurolearn.neurons.base import check_finite
from neurolearn.rules.base import GradientRule, Requirements, StepOutput
from neurolearn.rules.stdp import (STDPParams, STDPTraces, check_plain_sgd, plastic_synapses, pre_post,
                                   stream_steps, _correlate)

FORMS = ("izhikevich", "mstdp", "mstdpet")


class RSTDPState(NamedTuple):
    """The STDP traces, the eligibility (``c`` or ``e``; ``None`` for MSTDP) and the dopamine ``d``."""

    traces: STDPTraces
    elig: torch.Tensor | None
    dopamine: torch.Tensor | float


@dataclass(frozen=True)
class RSTDPParams:
    """Reward-modulated STDP (module docstring). Times in seconds."""

    form: str = "izhikevich"
    a_plus: float = 1.0
    a_minus: float = 1.5
    tau_plus: float = 20e-3
    tau_minus: float = 20e-3
    pairing: str = "all"
    tau_c: float = 1.0
    tau_d: float = 0.2
    tonic: float = 0.0
    lr: float = 1e-3
    w_max: float = 1.0

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise unknown_name("R-STDP form", self.form, FORMS)
        for name in ("tau_c", "tau_d", "lr", "w_max"):
            check_finite(name, getattr(self, name), positive=True)
        check_finite("tonic", self.tonic)

    @cached_property
    def stdp(self) -> STDPParams:
        """The pair-STDP term (additive, unbounded: bounds apply to the weight, not to ζ)."""
        return STDPParams(a_plus=self.a_plus, a_minus=self.a_minus, tau_plus=self.tau_plus,
                          tau_minus=self.tau_minus, pairing=self.pairing)

    def decay(self, tau: float, dt: float) -> float:
        if dt > tau:
            raise ConfigError(f"dt = {dt:g} s is larger than an R-STDP time constant ({tau:g} s)")
        return 1.0 - dt / tau

    def init_state(self, pre_shape, post_shape, weight_shape, device=None, dtype=None) -> RSTDPState:
        traces = self.stdp.init_traces(pre_shape, post_shape, device, dtype)
        elig = None if self.form == "mstdp" else torch.zeros(weight_shape, device=device, dtype=dtype)
        return RSTDPState(traces, elig, 0.0)

    def eligibility(self, zeta: torch.Tensor, elig: torch.Tensor | None, dt: float) -> torch.Tensor:
        """The eligibility after a step's point eligibility ``ζ``."""
        if self.form == "mstdp":
            return zeta
        a = self.decay(self.tau_c, dt)
        return a * elig + (zeta if self.form == "izhikevich" else (dt / self.tau_c) * zeta)

    def modulator(self, reward: torch.Tensor | float, dopamine: torch.Tensor | float, dt: float):
        """``(factor multiplying the eligibility, new dopamine)`` for this step's reward."""
        if self.form != "izhikevich":
            return reward, dopamine
        d = self.decay(self.tau_d, dt) * dopamine + reward
        return d + self.tonic, d

    def step(self, pre: torch.Tensor, post: torch.Tensor, reward: torch.Tensor | float, state: RSTDPState,
             weight: torch.Tensor, dt: float, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, RSTDPState]:
        """One step for one population without a batch: ``pre`` ``[n_in]``, ``post`` ``[n_out]``,
        ``weight`` ``[n_out, n_in]`` (``mask``: 1 where a plastic synapse exists). Returns the new
        (clipped) weight and state."""
        pair, traces = self.stdp.step(pre, post, state.traces, dt)
        zeta = torch.outer(pair.ltp_post, pair.ltp_pre) - torch.outer(pair.ltd_post, pair.ltd_pre)
        if mask is not None:
            zeta = zeta * mask
        elig = self.eligibility(zeta, state.elig, dt)
        factor, dopamine = self.modulator(reward, state.dopamine, dt)
        new_w = (weight + self.lr * factor * elig).clamp(0.0, self.w_max)
        if mask is not None:
            new_w = torch.where(mask > 0, new_w, weight)
        return new_w, RSTDPState(traces, None if self.form == "mstdp" else elig, dopamine)


def _per_sample(syn, post: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
    """``post_b ⊗ pre_b`` for every sample: ``[B, *weight.shape]``."""
    return torch.stack([_correlate(syn.layer, syn.name, post[b:b + 1], pre[b:b + 1]) for b in range(post.shape[0])])


class RSTDP(GradientRule):
    r"""Reward-modulated STDP of every spiking layer, trained trial by trial.

    **Per-trial reward.** A trial runs with no reward (traces and eligibilities evolve, weights
    fixed); the trial's reward ``r_b`` (classification: +1 if the decoded output is right, −1 if
    not; otherwise the negative loss), minus a running-mean baseline ``r̄`` (``baseline_decay``),
    arrives as one pulse at the last step, and the change is ``Δw = η (1/B) Σ_b (r_b − r̄) E_b`` with
    ``E_b`` the eligibility at the last step (``c`` for DA-STDP, whose dopamine time course is folded
    into ``η``; ``e`` for MSTDPET; the trial's summed ``ζ`` for MSTDP). ``.grad = w − clip(w + Δw)``
    as in :class:`~neurolearn.rules.stdp.STDP` (plain SGD, ``lr ≤ 1``). For a reward at every step
    (an environment) drive :meth:`RSTDPParams.step` directly, as ``experiments/rstdp_izhikevich.py`` does.
    """

    name = "rstdp"
    summary = "reward-modulated STDP (Izhikevich DA-STDP, MSTDP, MSTDPET), global reward"
    requires = Requirements(pre=True, post=True, broadcast_scalar=True)

    def __init__(self, layers: tuple[int, ...] | list[int] | None = None, baseline_decay: float = 0.9,
                 **params) -> None:
        super().__init__()
        known = [f.name for f in fields(RSTDPParams)]
        for key in params:
            if key not in known:
                raise unknown_key("rule rstdp", key, known + ["layers", "baseline_decay"])
        self.params = RSTDPParams(**params)
        check_finite("baseline_decay", baseline_decay, non_negative=True)
        if baseline_decay >= 1:
            raise ConfigError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        self.baseline_decay = baseline_decay
        self.layers = None if layers is None else tuple(int(k) for k in layers)
        self.baseline = 0.0

    def reward(self, pred: torch.Tensor, y: torch.Tensor, loss: torch.Tensor, objective) -> torch.Tensor:
        """Per-sample reward ``[B]``: ±1 for a right/wrong class, else the negative loss."""
        if objective.task == "classification":
            return (pred.argmax(-1) == y).to(loss.dtype) * 2.0 - 1.0
        return -loss

    @torch.no_grad()
    def estimate_gradients(self, model: Network, x, y, objective) -> StepOutput:
        p, dt = self.params, float(model.dt)
        stdp = p.stdp
        syns = plastic_synapses(model, self.layers, self.name)
        traces: list[STDPTraces | None] = [None] * len(syns)
        elig: list[torch.Tensor | None] = [None] * len(syns)
        outputs = []
        for out, taps in stream_steps(model, x):
            outputs.append(out)
            for n, syn in enumerate(syns):
                pre, post = pre_post(syn, taps)
                if traces[n] is None:
                    traces[n] = stdp.init_traces(pre.shape, post.shape, pre.device, pre.dtype)
                pair, traces[n] = stdp.step(pre, post, traces[n], dt)
                zeta = _per_sample(syn, pair.ltp_post, pair.ltp_pre) - _per_sample(syn, pair.ltd_post, pair.ltd_pre)
                if elig[n] is None:
                    elig[n] = torch.zeros_like(zeta)
                elig[n] = elig[n] + zeta if p.form == "mstdp" else p.eligibility(zeta, elig[n], dt)
        pred = model.decode_output(torch.stack(outputs))
        loss = objective.loss(pred, y)
        r = self.reward(pred, y, loss, objective)
        advantage = r - self.baseline
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * float(r.mean())
        for syn, e in zip(syns, elig):
            w = getattr(syn.layer, syn.name)
            change = p.lr * torch.einsum("b,b...->...", advantage.to(e.dtype), e) / e.shape[0]
            w.grad = w.detach() - (w.detach() + change).clamp(0.0, p.w_max)
        return StepOutput(loss.detach(), pred.detach())

    def train_step(self, model, x, y, objective, optimizer) -> StepOutput:
        check_plain_sgd(optimizer, self.name)
        return super().train_step(model, x, y, objective, optimizer)

    def state_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline = float(state.get("baseline", 0.0))


__all__ = ["RSTDP", "RSTDPParams", "RSTDPState", "FORMS"]
