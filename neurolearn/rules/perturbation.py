r"""Perturbation rules with a global reward: weight perturbation (WP), node perturbation (NP)
and activity-based node perturbation (ANP).

The only error signal is a **broadcast scalar per sample**, the loss difference between a
noisy and a clean run of the same input (``δL = L(noisy) - L(clean)``); every synapse
combines it with a post-synaptic term it sees locally and its pre-synaptic activity
``x̃`` (the layer's ``input`` tap of the clean run). Nothing is differentiated: no
backward pass, no weight transport, no surrogate derivative.

Node noise ``ε ~ N(0, σ²)`` (or Bernoulli ``±σ``) is injected into every layer's
pre-activation ``z`` (the input current of a spiking layer). For layer ``l``, sample ``n``
(sums over time steps ``t`` of a sequence; the batch is averaged):

- **NP** (Williams / REINFORCE):  ``g_l = δL · ε_l / σ²``
- **ANP** (Dalm et al. 2023): the *measured* pre-activation difference
  ``δz_l = z_l^noisy - z_l^clean`` (the layer's own noise plus everything propagated from
  earlier layers and earlier steps) replaces the noise:
  ``g_l = c · δL · δz_l / ‖δz‖²`` with ``‖δz‖² = Σ_k ‖δz_k‖²`` over the whole network
  (``norm="network"``, Dalm et al.) or ``‖δz_l‖²`` of the layer alone (``norm="layer"``,
  the RNN paper); ``c = N`` (``scale="n"``, unbiased for isotropic directions: ``N`` = the
  number of perturbed entries in the norm), ``√N`` (``scale="sqrt"``, the authors' code; with
  ``norm="layer"`` every layer uses the whole network's count ``N = n_in + Σ_l n_l``, as the
  RNN reference's ``√(n_in + H + n_out)``) or a number. ANP never needs to read the noise, so it works with hardware noise.
- **WP**: every weight is perturbed, ``W + ξ``, ``ξ ~ N(0, σ²)`` (one draw per mini-batch);
  ``g_W = ⟨δL⟩_B · ξ / σ²``.

Then ``∂L/∂W_l ≈ ⟨Σ_t g_l[t] x̃_l[t]ᵀ⟩_B``, ``∂L/∂b_l ≈ ⟨Σ_t g_l[t]⟩_B`` and, for a
recurrent layer, ``∂L/∂W_rec ≈ ⟨Σ_t g_l[t] h_l[t-1]ᵀ⟩_B``; the estimate goes into
``.grad`` and any ``torch.optim`` optimizer applies it (Adam absorbs the constants; with SGD
``c`` and ``σ`` matter).

Variants (``passes``):

- ``"clean"`` (default): a clean and a noisy run, as one doubled batch ``[x; x]``;
- ``"noisy-noisy"``: both runs noisy with independent noise (hardware whose noise cannot
  be switched off): ANP uses the measured ``δz`` as before, NP and WP use the noise
  difference ``ε₂ - ε₁`` and divide by ``2σ²``;
- ``"baseline"``: a single noisy run against a running average ``b`` of the loss
  (reward-prediction error ``δL = L - b``, ``b ← λ b + (1-λ) ⟨L⟩_B``; in the time domain one
  ``b[t]`` per step); NP and WP only (ANP needs the clean activity).

Networks with state over time (recurrent, spiking) are handled in two ways:

- *sequence-level* (this module): one loss per sequence (e.g. a class from the mean readout
  of a spiking net); the runs' taps are kept over the ``T`` steps (activity only, no graph)
  and ``δL`` of the sequence multiplies ``Σ_t g[t] x̃[t]ᵀ``; the ANP norm runs over space
  and time. For spiking layers ``activity="mem"`` (or a list, one entry per layer) uses the
  membrane difference instead of the current, and ``trace_tau`` (seconds) filters the
  pre-synaptic spikes into a trace ``x̄[t] = β x̄[t-1] + x̃[t]``, ``β = 1 - dt/τ``, and the
  same filter is applied to every other pre-synaptic term: the recurrent input ``h[t-1]`` and
  the bias's constant 1 (``b̄[t] = β b̄[t-1] + 1``).
- *time-domain* (:mod:`neurolearn.rules.perturbation_time`): with a target at every step,
  per-step loss differences ``δL_t`` are paired with per-step activity differences and
  applied online (memory independent of ``T``) or accumulated over the sequence.
  ``time_domain=None`` picks it when the network is temporal and the task has per-step
  targets.

``sigma`` may be a list, one ``σ_l`` per layer (NP and ANP): the noise of one layer adds
to the loss difference that every other layer's estimate reads, so a layer whose noise moves
the loss most (typically the readout) can drown the others; a smaller ``σ`` there (for ANP
even ``0``: the layer still learns from the activity difference propagated into it) lets
the hidden layers' estimates through.

Node noise is white in time by default (a fresh draw at every step). ``noise_tau = τ``
(seconds; NP and ANP) gives it a correlation time instead: Gaussian noise follows the
Ornstein-Uhlenbeck recursion ``ε[t] = a ε[t-1] + √(1-a²) η[t]``, Bernoulli noise is redrawn
with probability ``1-a`` at each step (a telegraph process), ``a = exp(-dt/τ)``; both keep
the variance ``σ²`` and have autocorrelation ``exp(-|Δt|/τ)``. ``noise_tau = inf`` freezes
the noise over the sequence (one draw per neuron and trial). In a spiking or leaky layer the
membrane low-pass filters its input current (``v[t] = β v[t-1] + I[t]``, ``β = 1 - dt/τ_mem``):
white noise of standard deviation ``σ`` gives the membrane a standard deviation of about
``σ √(τ_mem/2dt)``, noise slower than ``τ_mem`` shifts it by up to ``σ τ_mem/dt``, ``√(2τ_mem/dt)``
times more (6.3x at 20 ms and 1 ms). Slow noise perturbs the neuron's rate (what a
rate-decoded loss reads) rather than single spike times. With slow noise the estimate points
along ``(Σ_t ∂L/∂z[t]) x̄ᵀ`` (frozen; ``x̄`` the mean input over the sequence) rather than
``Σ_t ∂L/∂z[t] x̃[t]ᵀ``: the rate-level gradient, the true one when the drive is stationary
over the sequence. Each draw spans ``m`` steps
(:meth:`PerturbationRule.noise_span`), which NP's ``1/σ²`` and ANP's ``c`` account for. (In
the time domain the per-step pairing is left as it is.)

``draws = K`` (NP and ANP, feed-forward and in time) runs ``K`` independent noisy copies of
each sample beside one clean copy (the stacked batch ``[clean; noisy_1 .. noisy_K]``) and
averages their estimates: ``K`` times less variance for ``K`` noisy forward passes; the outer
product with the shared clean input is taken once (``Σ_k g_k x̃ᵀ = (Σ_k g_k) x̃ᵀ``).

What a synapse needs: pre-synaptic activity, a post-synaptic term (its own noise for NP,
its own activity difference for ANP, its own weight noise for WP) and the broadcast
scalar ``δL``. ANP's network-wide norm is one more broadcast scalar (or per layer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from neurolearn.errors import ConfigError
from neurolearn.distributed import ScalarUpdate
from neurolearn.learning.grads import add_grad, bias_grad, exact, layer_params, trainable, weight_gradient
from neurolearn.learning.noise import (NOISES, blocked_first_layer, blocked_pair_step, draw_noise, first_layer_gain,
                                      noisy_minus_clean, pair_step, shares_first_drive, sum_draws)
from neurolearn.learning.options import check_bool, check_choice, check_number
from neurolearn.learning.traces import pre_traces, trace_beta
from neurolearn.learning.workspace import PackedSpikes, streamable
from neurolearn.network import LayerRecord, Network, Record
from neurolearn.objectives import Objective
from neurolearn.rules import perturbation_time
from neurolearn.rules.base import GradientRule, Requirements, StepOutput

PASSES = ("clean", "noisy-noisy", "baseline")
NORMS = ("network", "layer")
ACTIVITIES = ("pre", "mem")
APPLY = ("online", "sequence")


# ------------------------------------------------------------------------ options
@dataclass(frozen=True)
class PerturbationOptions:
    """Options of WP, NP and ANP (see the module docstring): ``sigma`` (one number, or for NP/ANP
    one per layer), ``noise`` (gaussian, bernoulli), ``passes`` (clean, noisy-noisy, baseline),
    ``baseline_decay`` ``λ ∈ [0, 1)``, ``time_domain`` (``None``: automatic), ``apply`` (online,
    sequence), ``trace_tau`` (s), ``draws`` ``K ≥ 1``, ``noise_tau`` (s; ``inf`` frozen; unset white)."""

    sigma: float | tuple[float, ...] = 1e-3
    noise: str = "gaussian"
    passes: str = "clean"
    baseline_decay: float = 0.99
    time_domain: bool | None = None
    apply: str = "sequence"
    trace_tau: float | None = None
    draws: int = 1
    noise_tau: float | None = None

    def __post_init__(self) -> None:
        sigma = self.sigma
        if isinstance(sigma, (list, tuple)):
            if not sigma or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                                    and math.isfinite(v) for v in sigma) or not any(v > 0 for v in sigma):
                raise ConfigError(f"sigma per layer (np, anp) must be a list of numbers >= 0, one per layer, at "
                                  f"least one positive; got {sigma!r}")
            object.__setattr__(self, "sigma", tuple(float(v) for v in sigma))
        else:
            if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (
                    sigma > 0 and math.isfinite(sigma)):
                raise ConfigError(f"sigma must be a positive number (np, anp: or a list, one per layer), "
                                  f"got {sigma!r}")
            object.__setattr__(self, "sigma", float(sigma))
        check_choice("noise", self.noise, NOISES)
        check_choice("passes", self.passes, PASSES)
        check_choice("apply", self.apply, APPLY)
        check_number("baseline_decay", self.baseline_decay, low=0.0, high=1.0, high_open=True)
        check_bool("time_domain", self.time_domain, optional=True)
        if self.trace_tau is not None:
            check_number("trace_tau", self.trace_tau, low=0.0)
        if isinstance(self.draws, bool) or not isinstance(self.draws, int) or self.draws < 1:
            raise ConfigError(f"draws must be a positive integer, got {self.draws!r}")
        if self.noise_tau is not None:
            if not (isinstance(self.noise_tau, (int, float)) and not isinstance(self.noise_tau, bool)
                    and self.noise_tau > 0):
                raise ConfigError(f"noise_tau must be a positive time in seconds (inf: frozen noise) or unset "
                                  f"(white noise), got {self.noise_tau!r}")
            object.__setattr__(self, "noise_tau", float(self.noise_tau))


@dataclass(frozen=True)
class ANPOptions(PerturbationOptions):
    """ANP's options: those of :class:`PerturbationOptions` and ``norm`` (network, layer),
    ``scale`` (``"n"``, ``"sqrt"`` or a positive number), ``activity`` (pre, mem; or one per layer)."""

    norm: str = "network"
    scale: str | float = "n"
    activity: str | tuple[str, ...] = "pre"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.passes == "baseline":
            raise ConfigError("anp needs the clean activity to measure δz: use passes='clean' or 'noisy-noisy' "
                              "(the running-baseline variant exists for np and wp)")
        check_choice("norm", self.norm, NORMS)
        activity = self.activity
        for a in (activity if isinstance(activity, (list, tuple)) else [activity]):
            check_choice("activity", a, ACTIVITIES)
        if isinstance(activity, (list, tuple)):
            if not activity:
                raise ConfigError("activity per layer must list one of 'pre'/'mem' for every layer")
            object.__setattr__(self, "activity", tuple(activity))
        if not (self.scale in ("n", "sqrt") or (isinstance(self.scale, (int, float))
                                                 and not isinstance(self.scale, bool) and self.scale > 0
                                                 and math.isfinite(self.scale))):
            raise ConfigError(f"scale must be 'n', 'sqrt' or a positive number, got {self.scale!r}")


# ------------------------------------------------------------------------ the rules
class PerturbationRule(GradientRule):
    """Shared machinery of WP, NP and ANP (see the module docstring).

    Data-parallel runs (:mod:`neurolearn.distributed`) set ``shard = (lo, hi, n)``: this process
    holds samples ``lo..hi`` of an ``n``-sample batch; node noise is then drawn for all ``n``
    samples (the draws one process would make) and this process keeps its rows, so every
    sample gets the same noise whichever process holds it. ``reduce_mean`` (set there too)
    turns a per-sample loss into the mean over the whole batch (the running baseline's input).
    """

    Options = PerturbationOptions
    shard: tuple[int, int, int] | None = None
    reduce_mean: Callable[[torch.Tensor], float] | None = None

    def __init__(self, options: PerturbationOptions | None = None, **params: Any) -> None:
        super().__init__(options, **params)
        self.check_options()
        self.baseline: float | None = None
        self.step_baselines: dict[int, float] = {}  # time domain: one running baseline per step

    def check_options(self) -> None:
        """What this rule refuses beyond the options' own checks."""

    # ---------------------------------------------------------------- noise
    def layer_sigmas(self, layers: int) -> list[float]:
        """``σ_l`` of every layer (one number for all, or the per-layer list checked against the
        network's depth)."""
        if isinstance(self.sigma, float):
            return [self.sigma] * layers
        if len(self.sigma) != layers:
            raise ConfigError(f"rule {self.name!r}: sigma has {len(self.sigma)} entries but the network has "
                              f"{layers} layers: give one noise level per layer (or one number for all)")
        return list(self.sigma)

    def draw(self, shape: tuple[int, ...], like: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        """Noise of standard deviation ``sigma`` (default: the rule's single ``σ``)."""
        sigma = self.sigma if sigma is None else sigma
        if sigma == 0.0:
            return torch.zeros(shape, device=like.device, dtype=like.dtype)
        return draw_noise(shape, sigma, self.noise, self.generator, like)

    def pair_noise(self, shape: tuple[int, ...], like: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        """Node noise for a stacked batch ``[clean; noisy_1 .. noisy_K]`` (``shape`` = one
        copy, ``K = draws``).

        The noise is drawn in place into one ``[(K+1)B, ...]`` tensor (no concatenation); the
        noisy copies are drawn first, as :meth:`draw` would.
        """
        sigma = self.sigma if sigma is None else sigma
        half = shape[0]
        noisy_shape = (self.draws * half, *shape[1:])
        if sigma == 0.0:
            return torch.zeros(((1 + self.draws) * half, *shape[1:]), device=like.device, dtype=like.dtype)
        out = torch.empty(((1 + self.draws) * half, *shape[1:]), device=like.device, dtype=like.dtype)
        if self.noise != "gaussian":  # the noisy copies first, as draw() would, straight into place
            draw_noise(noisy_shape, sigma, self.noise, self.generator, like, out=out[half:])
            if self.passes == "noisy-noisy":
                draw_noise(shape, sigma, self.noise, self.generator, like, out=out[:half])
            else:
                out[:half].zero_()
            return out
        out[half:].normal_(0.0, sigma, generator=self.generator)
        if self.passes == "noisy-noisy":
            out[:half].normal_(0.0, sigma, generator=self.generator)
        else:
            out[:half].zero_()
        return out

    def noise_diff(self, noise: torch.Tensor, batch: int) -> torch.Tensor:
        """Noisy copies minus the clean copy's noise, ``[K·B, ...]`` (a view when the clean copy is 0)."""
        return noisy_minus_clean(noise, batch) if self.passes == "noisy-noisy" else noise[batch:]

    def noise_diff_var(self, sigma: float) -> float:
        """Variance of the noise difference between the two runs (``σ²`` or ``2σ²``; a single
        noisy run against a baseline: ``σ²``)."""
        return (2.0 if self.passes == "noisy-noisy" else 1.0) * sigma**2

    def noise_memory(self, dt: float) -> float:
        """``a = exp(-dt/τ)``: the share of a step's node noise carried into the next (0 white, 1 frozen)."""
        return 0.0 if self.noise_tau is None else math.exp(-dt / self.noise_tau)

    def step_noise(self, model: Network, batch: int, like: torch.Tensor, prev: list[torch.Tensor] | None,
                   paired: bool = True) -> list[torch.Tensor]:
        """:meth:`whole_step_noise`, for this process's rows of the batch when :attr:`shard` is set."""
        if self.shard is None:
            return self.whole_step_noise(model, batch, like, prev, paired)
        lo, hi, total = self.shard
        if hi - lo != batch:
            raise ConfigError(f"rule {self.name!r}: shard {lo}..{hi} does not match a batch of {batch}")
        whole = self.whole_step_noise(model, total, like, None if prev is None else self._shard_prev, paired)
        self._shard_prev = whole
        copies = 1 + self.draws if paired else 1
        return [t.unflatten(0, (copies, total))[:, lo:hi].flatten(0, 1) for t in whole]

    def whole_step_noise(self, model: Network, batch: int, like: torch.Tensor, prev: list[torch.Tensor] | None,
                         paired: bool = True) -> list[torch.Tensor]:
        """Every layer's node noise for one time step: for the stacked batch ``[clean; noisy_1 ..
        noisy_K]`` (``paired``, see :meth:`pair_noise`) or one noisy copy. ``prev`` is the previous
        step's noise (``None`` at the first step); with ``noise_tau`` set the new noise is
        correlated with it (module docstring), else it is a fresh draw."""
        keep = self.noise_memory(model.dt)
        if prev is not None and keep == 1.0:  # frozen over the sequence
            return prev
        sigmas = self.layer_sigmas(len(model.layers))
        fresh = [self.pair_noise(layer.pre_shape(batch), like, sigma) if paired
                 else self.draw(layer.pre_shape(batch), like, sigma) for layer, sigma in zip(model.layers, sigmas)]
        if prev is None or keep == 0.0:
            return fresh
        if self.noise == "gaussian":  # Ornstein-Uhlenbeck: a ε[t-1] + √(1-a²) η[t]
            return [p.mul(keep).add_(f, alpha=math.sqrt(1.0 - keep * keep)) for p, f in zip(prev, fresh)]
        out = []  # telegraph: redraw each entry with probability 1 - a
        for p, f in zip(prev, fresh):
            redraw = torch.rand(p.shape, generator=self.generator, device=p.device) >= keep
            out.append(torch.where(redraw, f, p))
        return out

    def reward_signal(self, noisy_loss: torch.Tensor, step: int | None = None) -> torch.Tensor:
        """``L - b`` against the running-average baseline ``b`` (one per time step ``step`` in
        the time domain, whose loss changes along the sequence); updates ``b`` afterwards."""
        mean = float(noisy_loss.mean()) if self.reduce_mean is None else self.reduce_mean(noisy_loss)
        base = self.baseline if step is None else self.step_baselines.get(step)
        new = mean if base is None else self.baseline_decay * base + (1.0 - self.baseline_decay) * mean
        if step is None:
            self.baseline = new
        else:
            self.step_baselines[step] = new
        return noisy_loss - (mean if base is None else base)

    def state_dict(self) -> dict[str, Any]:
        if self.passes != "baseline":
            return {}
        return {"baseline": self.baseline, "step_baselines": dict(self.step_baselines)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline = state.get("baseline") if state else None
        self.step_baselines = {int(k): float(v) for k, v in (state or {}).get("step_baselines", {}).items()}

    # ---------------------------------------------------------------- dispatch
    def uses_time_domain(self, model: Network, objective: Objective) -> bool:
        if self.time_domain is None:
            return model.temporal and objective.sequential_targets
        if self.time_domain and not objective.sequential_targets:
            raise ConfigError(
                f"rule {self.name!r}: time_domain=true needs a target at every step (a sequence task); "
                "this task has one loss per sequence: leave time_domain unset")
        return bool(self.time_domain)

    def step(self, model, x, y, objective, updater) -> StepOutput:
        if self.uses_time_domain(model, objective):
            with torch.no_grad():
                return self.time_step(model, x, y, objective, updater)
        return super().step(model, x, y, objective, updater)

    def time_step(self, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective,
                  updater) -> StepOutput:
        """One sequence in the time domain (:mod:`neurolearn.rules.perturbation_time`)."""
        raise NotImplementedError


class NodeNoiseRule(PerturbationRule):
    """NP and ANP: node noise into every layer's pre-activation; they differ in the post-synaptic
    term (:meth:`post_difference`) and its scaling (:meth:`node_signal`)."""

    def check_options(self) -> None:
        if self.draws > 1 and self.passes == "baseline":
            raise ConfigError(f"rule {self.name!r}: draws > 1 needs a clean pass (passes 'clean' or "
                              "'noisy-noisy'); use a larger batch instead")

    def post_difference(self, taps, noise: torch.Tensor, batch: int, layer: int, layers: int) -> torch.Tensor:
        """The post-synaptic term of layer ``layer`` for the noisy copies: NP reads its own noise
        difference ``noise``; ANP overrides it with the measured activity difference."""
        return noise

    def post_source(self, taps, layer: int, layers: int) -> torch.Tensor | None:
        """The tap whose noisy-minus-clean difference is layer ``layer``'s post-synaptic term (ANP), or
        ``None`` when the term is not a measured difference (NP: its noise)."""
        return None

    def estimate_gradients(self, model: Network, x: torch.Tensor, y: torch.Tensor,
                           objective: Objective) -> StepOutput:
        with torch.no_grad():
            return self._node_perturbation(model, x, y, objective)

    def time_step(self, model, x, y, objective, updater) -> StepOutput:
        return perturbation_time.node_time_step(self, model, x, y, objective, updater)

    def node_signal(self, dloss: torch.Tensor, diffs: list[torch.Tensor], noises: list[torch.Tensor],
                    steps: int, span: float = 1.0, inputs: int = 0) -> list[torch.Tensor]:
        """Per-layer post-synaptic factors ``g_l`` (``[S, B, ...]`` each), ``dloss`` ``[B]``;
        ``span``: the steps one noise draw spans (:meth:`noise_span`); ``inputs``: the network's
        input units (ANP's ``scale="sqrt"``, ``norm="layer"``)."""
        raise NotImplementedError

    def noise_span(self, steps: int, dt: float) -> float:
        """How many of ``steps`` steps one noise draw spans, ``m = (1/T) Σ_{t,t'} a^{|t-t'|}``
        (``a = exp(-dt/τ)``): 1 for white noise, ``T`` for frozen noise.

        A sequence-level estimate sums ``g[t] x̃[t]ᵀ`` over the steps; with noise correlated over
        ``m`` steps each draw is counted ``m`` times, so NP divides by ``m`` and ANP's ``c``
        counts ``N·T/m`` independent directions: unbiased again for a stationary drive."""
        a = self.noise_memory(dt)
        if a == 0.0 or steps == 1:
            return 1.0
        if a == 1.0:
            return float(steps)
        k = torch.arange(1, steps, dtype=torch.float64)
        return 1.0 + 2.0 * float(((steps - k) * a**k).sum()) / steps

    def constant_post(self, model: Network, layer: int, paired: bool) -> bool:
        """Whether layer ``layer``'s post-synaptic term is the same at every step of a sequence:
        with noise frozen over the trial (``noise_tau = inf``) NP's own noise is; so is ANP's
        current difference ``δz`` of a first layer whose drive every copy shares (dense, not
        recurrent: ``δz = ε_noisy − ε_clean`` exactly). Then ``Σ_t g x̄[t]ᵀ = g (Σ_t x̄[t])ᵀ``:
        one outer product per sequence, and nothing of size ``T`` kept."""
        return self.noise_memory(model.dt) == 1.0 and self.noise_is_post(model, layer, paired)

    def noise_is_post(self, model: Network, layer: int, paired: bool) -> bool:
        """Whether the post-synaptic term of ``layer`` is its noise difference itself (NP: always)."""
        return True

    def _node_perturbation(self, model: Network, x: torch.Tensor, y: torch.Tensor,
                           objective: Objective) -> StepOutput:
        r"""One sequence-level step, streamed over time (no autograd, nothing of the past kept
        but what the estimate reads).

        Per step ``t`` and layer ``l``: the post-synaptic term ``d_l[t]`` (noise or measured
        difference of the noisy copies, ``[K·B, ...]``) goes into a preallocated ``[T, K·B, ...]``
        buffer and the clean input (or its trace ``x̄ = β x̄ + x̃``, updated in place) into a
        ``[T, B, ...]`` one; a layer whose ``d_l`` is constant over the sequence
        (:meth:`constant_post`) keeps ``Σ_t x̄_l[t]`` (``[B, ...]``) instead. At the end the
        per-sample coefficients (:meth:`node_coefficients`: ``δL``, and for ANP the norm
        ``Σ_{t,l} ‖d_l[t]‖²``) scale the buffers in place and one product per layer gives
        ``Σ_t (Σ_k g_k[t]) x̄[t]ᵀ``. The first layer's raw inputs are the network's input itself
        (no copy); raw spikes feeding a later layer are kept as bits (a 32nd of the memory)
        when no record reads them, and that layer's product is then taken step by step. The layers' records (stacked clean inputs) come for free
        when every layer keeps its raw inputs; otherwise they are copied only when a layer is
        decorrelated (what reads them)."""
        model.check_input(x)
        steps, batch = x.shape[0], x.shape[1]
        single = self.passes == "baseline"
        paired = not single
        copies = 1 if single else 1 + self.draws  # [clean; noisy_1 .. noisy_K]
        rows = copies * batch
        nl = len(model.layers)
        state = model.init_state(rows, x.device, x.dtype)
        beta = trace_beta(model, self.trace_tau)
        const = [self.constant_post(model, k, paired) for k in range(nl)]
        # the record's layers: free when every layer keeps its raw inputs anyway, else copied only
        # for decorrelation (their reader)
        decorrelates = any(layer.decorrelation is not None for layer in model.layers)
        autocast = torch.is_autocast_enabled(x.device.type)
        free = beta == 0.0 and not any(const)
        keep_inputs = not free and decorrelates
        # a layer fed by raw spikes (0/1) keeps them as bits (PackedSpikes), a 32nd of the memory, unless
        # the record reads them (free, or for decorrelation)
        # (not under autocast: the per-step bf16 products would be summed in bf16)
        binary = [k > 0 and beta == 0.0 and not free and not decorrelates and not autocast
                  and model.layers[k - 1].spiking
                  and not getattr(model.layers[k - 1], "rescaled", False) for k in range(nl)]
        posts: list[torch.Tensor | None] = [None] * nl  # [T, K·B, ...] or, constant, [K·B, ...]
        from_output = [False] * nl  # the post-synaptic term is the difference of the network's output
        inputs: list[torch.Tensor | None] = [None] * nl  # clean inputs (traces) [T, B, ...], or Σ_t [B, ...]
        raws: list[torch.Tensor | None] = [None] * nl  # the raw clean inputs for the record (decorrelation)
        traces: list[torch.Tensor | None] = [None] * nl
        recs: list[torch.Tensor | None] = [None] * nl
        output: torch.Tensor | None = None  # [T, rows, ...], written step by step
        noise = None
        work: dict[str, Any] = {}  # the first layer's current and activity, rewritten every step
        # many copies of a plain dense spiking net whose first layer's term is its frozen noise: run in
        # blocks of rows, the noise multiplied by the neurons' input gain once (blocked_pair_step)
        blocked = (paired and steps > 1 and const[0] and beta == 0.0 and not keep_inputs
                   and streamable(model, x) and blocked_first_layer(model))
        post_scale = [1.0] * nl  # posts[k] = post_scale[k]⁻¹ × the layer's term (the gained first-layer noise)
        gained = None
        for t in range(steps):
            noise = self.step_noise(model, batch, x, noise, paired=paired)
            if blocked:
                if t == 0:
                    gain = first_layer_gain(model)
                    gained = noise[0] if gain == 1.0 else noise[0].mul_(gain)  # in place: drawn for this sequence
                    post_scale[0] = 1.0 / gain
                    sigmas = self.layer_sigmas(nl)
                out, state, taps = blocked_pair_step(model, x[t], state, gained, [  # a noiseless layer adds none
                    None if sig == 0.0 else n for n, sig in zip(noise, sigmas)], batch, copies, work)
            else:
                out, state, taps = pair_step(model, x[t], state, noise, batch, paired=paired, copies=copies,
                                             inplace=True, work=work)
            if steps == 1:
                output = out.unsqueeze(0)
            else:
                if output is None:
                    output = out.new_empty((steps, *out.shape))
                output[t].copy_(out)
            for k, tp in enumerate(taps):
                xin = tp.input if single else tp.input[:batch]
                if keep_inputs:
                    if raws[k] is None:
                        raws[k] = xin.new_empty((steps, *xin.shape))
                    raws[k][t].copy_(xin)
                if beta != 0.0:  # x̄[t] = β x̄[t-1] + x̃[t], in place
                    if traces[k] is None:
                        traces[k] = xin.clone()
                    else:
                        traces[k].mul_(beta).add_(xin)
                    xin = traces[k]
                if const[k]:
                    if t == 0:
                        posts[k] = noise[k] if single else self.noise_diff(noise[k], batch)
                        inputs[k] = xin.clone()
                    else:
                        inputs[k].add_(xin)
                    continue
                if t == 0:  # the output layer's term is the difference of the output itself: formed at the end
                    from_output[k] = paired and k == nl - 1 and self.post_source(tp, k, nl) is out
                if steps == 1 and not keep_inputs:  # one step (a feed-forward net): no [T, ...] buffers,
                    # no copies; the input is read before anything rewrites it, a fresh ``d`` is scaled in place
                    if not from_output[k]:
                        d = self.post_difference(tp, noise[k] if single else self.noise_diff(noise[k], batch),
                                                 batch, k, nl)
                        posts[k] = d.unsqueeze(0) if d._base is None else d.unsqueeze(0).clone()
                    inputs[k] = xin.unsqueeze(0)
                    continue
                if not from_output[k]:
                    d = self.post_difference(tp, noise[k] if single else self.noise_diff(noise[k], batch), batch, k, nl)
                    if posts[k] is None:
                        posts[k] = d.new_empty((steps, *d.shape))
                    posts[k][t].copy_(d)
                if inputs[k] is None:
                    if k == 0 and beta == 0.0:  # the network's input itself, no copy
                        inputs[k] = x.reshape(steps, batch, *xin.shape[1:])
                    elif binary[k]:
                        inputs[k] = PackedSpikes(steps, xin)
                    else:
                        inputs[k] = xin.new_empty((steps, *xin.shape))
                if binary[k]:
                    inputs[k].store(t, xin)
                elif not (k == 0 and beta == 0.0):
                    inputs[k][t].copy_(xin)
                if tp.rec is not None:  # the recurrent input, filtered like the feed-forward one (trace_tau)
                    if recs[k] is None:
                        recs[k] = tp.rec.new_empty((steps, batch, *tp.rec.shape[1:]))
                    if beta == 0.0 or t == 0:
                        recs[k][t].copy_(tp.rec[:batch])
                    else:
                        torch.add(tp.rec[:batch], recs[k][t - 1], alpha=beta, out=recs[k][t])
        del state, taps, out, work  # the runs are over: their state goes before the estimate's buffers come
        for k in range(nl):
            if from_output[k]:  # [T, K·B, ...]: every noisy copy's output minus the clean one's
                posts[k] = (output[:, batch:].unflatten(1, (-1, batch)) - output[:, :batch].unsqueeze(1)).flatten(1, 2)
        pred = model.decode_output(output)
        yy = y if single else torch.cat([y] * copies, dim=1 if y.dim() == 3 else 0)
        loss = objective.loss(pred, yy)
        dloss = self.reward_signal(loss) if single else noisy_minus_clean(loss, batch)
        span = self.noise_span(steps, model.dt)
        sq = [(steps * f * f) * torch.linalg.vector_norm(p.reshape(p.shape[0], -1), dim=1).square() if c else
              (f * f) * p.reshape(p.shape[0], p.shape[1], -1).square().sum(2).sum(0)
              for p, c, f in zip(posts, const, post_scale)]  # Σ_t ‖d_l[t]‖² per noisy row
        dims = [(p[0].numel() if c else p[0, 0].numel()) * steps / span for p, c in zip(posts, const)]
        # the mean over the batch and the draws is folded into the per-sample scalar (g is linear in δL)
        coefs = self.node_coefficients(exact(dloss) / dloss.shape[0], sq, dims, span, nl,
                                       inputs=math.prod(model.input_shape) * steps / span)
        # b̄[t] = β b̄[t-1] + 1: the bias's constant input, filtered like the other pre-synaptic terms
        bias_trace = (1.0 - beta ** torch.arange(1, steps + 1, dtype=torch.float64)) / (1.0 - beta) if beta else None
        for k, layer in enumerate(model.layers):
            p, c = posts[k], coefs[k] if post_scale[k] == 1.0 else coefs[k] * post_scale[k]
            if const[k]:
                # in place: p is this step's (frozen) noise or a buffer, read no more (a float64 copy: exact_sums)
                gk = sum_draws(exact(p).mul_(c.view(-1, *([1] * (p.dim() - 1)))), batch)
                add_grad(layer.weight, weight_gradient(layer, gk, inputs[k]))
                add_grad(layer.bias, bias_grad(gk) * (steps if bias_trace is None else float(bias_trace.sum())))
                continue
            p = exact(p).mul_(c.view(1, -1, *([1] * (p.dim() - 2))))  # g = d · coefficient, in place (float64: exact_sums)
            gk = sum_draws(p, batch, dim=1)
            gk = gk.reshape(steps * batch, *gk.shape[2:])
            if binary[k]:  # spikes kept as bits: one product per step, each unpacked on its own
                w = weight_gradient(layer, gk[:batch], inputs[k][0].to(gk.dtype))
                for t in range(1, steps):
                    w.add_(weight_gradient(layer, gk[t * batch:(t + 1) * batch], inputs[k][t].to(gk.dtype)))
                add_grad(layer.weight, w)
            else:
                add_grad(layer.weight, weight_gradient(layer, gk, inputs[k].reshape(steps * batch, -1)))
            if beta == 0.0:
                add_grad(layer.bias, bias_grad(gk))
            else:  # the bias's constant input filtered like every other pre-synaptic term: b̄[t] = β b̄[t-1] + 1
                add_grad(layer.bias, bias_grad(gk * bias_trace.to(gk.dtype).repeat_interleave(batch).view(
                    -1, *([1] * (gk.dim() - 1)))))
            if layer.recurrent_weight is not None:
                add_grad(layer.recurrent_weight, gk.t() @ exact(recs[k]).reshape(steps * batch, -1))
        clean = slice(0, batch)
        record = Record(output=output[:, clean])  # the clean run's inputs: what decorrelation learns from
        if free or keep_inputs:
            record.layers.extend(LayerRecord(r, None, None) for r in (inputs if free else raws))
        return StepOutput(loss[clean].detach(), pred[clean].detach(), record)

    def node_coefficients(self, dloss: torch.Tensor, sq: list[torch.Tensor], dims: list[float],
                          span: float, layers: int, inputs: float = 0.0) -> list[torch.Tensor]:
        """Per-layer, per-row coefficients ``c_l`` (``[K·B]``) with ``g_l = c_l · d_l``, from the
        loss differences ``dloss``, each layer's ``Σ_t ‖d_l‖²`` (``sq``) and its count of
        independent perturbed directions ``dims``; ``span``: the steps one draw spans."""
        raise NotImplementedError



class WeightPerturbation(PerturbationRule):
    __doc__ = ("Weight perturbation: ``ΔW ∝ -⟨δL⟩_B ξ / σ²`` with one weight-noise draw ``ξ`` per mini-batch.\n\n"
               "Needs: the synapse's own weight noise and the broadcast scalar δL (no pre/post activity).")
    name = "wp"
    summary = "weight perturbation: loss difference x the weight's own noise / sigma^2"
    requires = Requirements(pre=False, post=False, broadcast_scalar=True)

    def check_options(self) -> None:
        if isinstance(self.sigma, tuple):
            raise ConfigError(f"sigma per layer is for node noise (np, anp); wp takes one number, got {self.sigma!r}")
        if self.noise_tau is not None:
            raise ConfigError("noise_tau sets the correlation time of node noise (np, anp); wp perturbs "
                              "weights, once per sequence: leave noise_tau unset")
        if self.draws > 1:
            raise ConfigError("rule 'wp': draws > 1 needs node noise (np or anp with passes 'clean' or "
                              "'noisy-noisy'); use a larger batch instead")

    def time_step(self, model, x, y, objective, updater) -> StepOutput:
        return perturbation_time.weight_time_step(self, model, x, y, objective, updater)

    # ---------------------------------------------------------------- weight perturbation
    def weight_noise(self, params: list[tuple[int, str, torch.nn.Parameter]]) -> list[torch.Tensor]:
        return [self.draw(tuple(p.shape), p) for _, _, p in params]

    def _run_with(self, model: Network, x: torch.Tensor, params, xi: list[torch.Tensor] | None,
                  record: bool | tuple[str, ...]) -> Record:
        if xi is None:
            return model.run(x, record=record)
        for (_, _, p), e in zip(params, xi):
            p.add_(e)
        try:
            return model.run(x, record=record)
        finally:
            for (_, _, p), e in zip(params, xi):
                p.sub_(e)

    def estimate_gradients(self, model: Network, x: torch.Tensor, y: torch.Tensor,
                           objective: Objective) -> StepOutput:
        with torch.no_grad():
            return self._estimate(model, x, y, objective)

    def _estimate(self, model: Network, x: torch.Tensor, y: torch.Tensor, objective: Objective) -> StepOutput:
        params = layer_params(model)
        xi2 = self.weight_noise(params)
        xi1 = self.weight_noise(params) if self.passes == "noisy-noisy" else None
        if self.passes == "baseline":
            rec = self._run_with(model, x, params, xi2, record=("input",))
            pred = model.decode_output(rec.output)
            loss = objective.loss(pred, y)
            dl = float(self.reward_signal(loss).mean())
            diff = xi2
        else:
            rec = self._run_with(model, x, params, xi1, record=("input",))
            pred = model.decode_output(rec.output)
            loss = objective.loss(pred, y)
            noisy = self._run_with(model, x, params, xi2, record=False)
            dl = float((objective.loss(model.decode_output(noisy.output), y) - loss).mean())
            diff = xi2 if xi1 is None else [b - a for a, b in zip(xi1, xi2)]
        scale = dl / self.noise_diff_var(self.sigma)
        for (_, _, p), d in zip(params, diff):
            add_grad(p, d * scale)
        # scalar-only exchange: the update is d·scale with d the same on every process (drawn
        # from the shared generator), so a data-parallel run exchanges only the scale
        kept = [(p, d) for (_, _, p), d in zip(params, diff) if trainable(p)]
        self._scalar = ScalarUpdate([p for p, _ in kept], torch.tensor([scale], dtype=torch.float64),
                                    lambda k: [d for _, d in kept])
        return StepOutput(loss.detach(), pred.detach(), rec)

    def step(self, model, x, y, objective, updater) -> StepOutput:
        if self.uses_time_domain(model, objective):
            return super().step(model, x, y, objective, updater)
        out = self.estimate_gradients(model, x, y, objective)
        scalar, self._scalar = self.__dict__.get("_scalar"), None
        updater.apply(record=out.record, generator=self.generator,
                      stats=None if scalar is None else {"scalar_update": scalar})
        return out



class NodePerturbation(NodeNoiseRule):
    __doc__ = ("Node perturbation: ``ΔW_l ∝ -δL ε_l x̃_{l-1}ᵀ / σ²`` (noise ``ε`` into the pre-activation).\n\n"
               "Needs: pre-synaptic activity, the neuron's own injected noise, the broadcast scalar δL.")
    name = "np"
    summary = "node perturbation: loss difference x injected node noise / sigma^2 x pre activity"
    requires = Requirements(pre=True, post=True, broadcast_scalar=True)

    def check_options(self) -> None:
        super().check_options()
        if isinstance(self.sigma, tuple) and 0 in self.sigma:
            raise ConfigError(f"np learns a layer from its own noise only; sigma = 0 for layer "
                              f"{list(self.sigma).index(0)} would leave it untrained: give every layer a positive "
                              "sigma (anp learns un-noised layers from their measured activity difference)")

    def node_signal(self, dloss, diffs, noises, steps, span=1.0, inputs=0):
        coefs = self.node_coefficients(dloss, [], [], span, len(noises))
        return [e * c.view(1, -1, *([1] * (e.dim() - 2))) for e, c in zip(noises, coefs)]

    def node_coefficients(self, dloss, sq, dims, span, layers, inputs=0.0):
        """``c_l = δL / (σ_l² m)`` (``2σ_l²`` for two noisy runs; ``m`` the steps a draw spans)."""
        return [dloss / (self.noise_diff_var(sigma) * span) for sigma in self.layer_sigmas(layers)]


class ActivityNodePerturbation(NodeNoiseRule):
    __doc__ = ("Activity-based node perturbation (ANP): ``ΔW_l ∝ -c δL δz_l x̃_{l-1}ᵀ / ‖δz‖²`` with the\n"
               "measured pre-activation difference ``δz`` between a noisy and a clean run.\n\n"
               "Needs: pre-synaptic activity, the neuron's own activity difference, the broadcast scalar δL\n"
               "and the norm ``‖δz‖²`` (network-wide: one more broadcast scalar; ``norm='layer'``: per layer).")
    name = "anp"
    summary = "activity-based node perturbation: c * loss difference x activity difference / |da|^2 x pre"
    requires = Requirements(pre=True, post=True, broadcast_scalar=True)
    Options = ANPOptions

    def scale_for(self, dims: int) -> float:
        """``c`` for a norm over ``dims`` perturbed entries."""
        if self.scale == "n":
            return float(dims)
        if self.scale == "sqrt":
            return math.sqrt(dims)
        return float(self.scale)

    def layer_activity(self, layer: int, layers: int) -> str:
        """What layer ``layer`` measures: ``"pre"`` (its input current) or ``"mem"`` (its membrane)."""
        if isinstance(self.activity, str):
            return self.activity
        if len(self.activity) != layers:
            raise ConfigError(f"rule {self.name!r}: activity has {len(self.activity)} entries but the network has "
                              f"{layers} layers: give one per layer (or one for all)")
        return self.activity[layer]

    def post_difference(self, taps, noise: torch.Tensor, batch: int, layer: int, layers: int) -> torch.Tensor:
        """The measured difference ``δz`` (``activity="mem"``: of the membrane) of the noisy copies
        from the clean one."""
        return noisy_minus_clean(self.post_source(taps, layer, layers), batch)

    def post_source(self, taps, layer: int, layers: int) -> torch.Tensor:
        """The input current ``taps.pre`` or (``activity="mem"``) the membrane ``taps.mem``."""
        mem = self.layer_activity(layer, layers) == "mem"
        return taps.mem if (mem and taps.mem is not None) else taps.pre

    def noise_is_post(self, model: Network, layer: int, paired: bool) -> bool:
        """``δz`` of the first layer is its noise difference when every copy shares its drive and it
        measures its input current (``activity="pre"``)."""
        return (paired and layer == 0 and shares_first_drive(model)
                and self.layer_activity(0, len(model.layers)) == "pre")

    def node_signal(self, dloss, diffs, noises, steps, span=1.0, inputs: int = 0):
        """``inputs``: the network's input units; with ``scale="sqrt"`` and ``norm="layer"`` every
        layer's ``c = √N``, ``N = n_in + Σ_l n_l`` (the whole network's unit count, the ANP RNN
        reference, ALGORITHMS.md 5b; counted over ``steps/span`` independent steps as the norm)."""
        sq = [torch.linalg.vector_norm(d.reshape(d.shape[0], d.shape[1], -1), dim=(0, 2)).square()
              for d in diffs]  # [B] per layer
        dims = [d[0, 0].numel() * steps / span for d in diffs]  # independent perturbed directions
        coefs = self.node_coefficients(dloss, sq, dims, span, len(diffs), inputs=inputs * steps / span)
        return [d * c.view(1, -1, *([1] * (d.dim() - 2))) for d, c in zip(diffs, coefs)]

    def node_coefficients(self, dloss, sq, dims, span, layers, inputs=0.0):
        """``c = scale(N) δL / ‖δz‖²`` (network-wide norm and ``N = Σ_l N_l``, or per layer; with
        ``scale="sqrt"`` and a per-layer norm every layer's ``c = √(inputs + Σ_l N_l)``, ``inputs`` the
        input units counted like ``dims``)."""
        if self.norm == "network":
            total = torch.stack(sq).sum(0).clamp_min(1e-30)
            coef = self.scale_for(sum(dims)) * dloss / total
            return [coef] * len(sq)
        if self.scale == "sqrt":  # the reference: √(n_in + H + n_out) for every layer
            c = math.sqrt(sum(dims) + inputs)
            return [c * dloss / s.clamp_min(1e-30) for s in sq]
        return [self.scale_for(n) * dloss / s.clamp_min(1e-30) for n, s in zip(dims, sq)]


__all__ = ["PerturbationOptions", "ANPOptions", "PerturbationRule", "NodeNoiseRule", "WeightPerturbation",
           "NodePerturbation", "ActivityNodePerturbation", "draw_noise", "bias_grad", "add_grad", "layer_params",
           "noisy_minus_clean", "sum_draws", "pair_step", "pre_traces"]
