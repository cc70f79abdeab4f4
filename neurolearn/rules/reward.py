r"""Rules driven by an environment's reward (reinforcement learning; PLASTICITY.md §2.8, §5.2, §5.3, §6).

The network is a policy: at environment step ``t`` the encoded observation drives it for ``T``
network steps of ``dt`` each (its state carries over from one environment step to the next and
is reset at the start of an episode); the readout's first ``A`` units, averaged over the ``T``
steps, are the action logits ``l_t``, ``π_t = softmax(l_t)``; a readout unit ``A`` (if present)
is a value estimate ``V_t``. The environment loop lives in :mod:`neurolearn.rl`; it calls, per
episode, :meth:`RewardRule.begin_episode`, then per step :meth:`~RewardRule.forward` (the policy's
output for one observation), :meth:`~RewardRule.act` (the action taken) and
:meth:`~RewardRule.reward` (``r_t``, whether the episode terminated, and the next step's output),
and :meth:`~RewardRule.end_episode` (which hands the update to the seam, ``updater.apply``).

Returns (rules that learn from them): ``G_t = Σ_{k≥t} γ^{k−t} r_k`` within the episode, and the
advantage ``A_t = (G_t − b)/s`` against a **running** baseline ``b`` and scale ``s`` (EMA of the
mean and standard deviation of ``G``, decay ``baseline_decay``, updated *after* use; not the
episode's own statistics, which would change the effective learning rate per episode).

The rules (one implementation of each idea: they reuse the perturbation noise, the e-prop
traces and the R-STDP eligibility of the supervised rules):

- :class:`RewardNodePerturbation` (``np-reward``): node noise ``ξ ~ N(0, σ²)`` in every layer's
  input current (one draw per environment step held over its network steps, or one per network
  step); eligibility per environment step ``E_t = Σ_{s∈t} ξ[s] ⊗ pre[s]`` (the change of ``W``
  that would have had the same effect); ``ΔW = η Σ_t A_t E_t / σ²`` (Williams 1992 with node
  noise); the action sampled from the noisy logits (or their argmax: ``action = "greedy"``).
- :class:`RewardEProp` (``eprop-reward``): actor-critic e-prop; per environment step the e-prop
  gradient ``g_t = ∇ log π(a_t) + c_V ∇V_t`` (learning signal ``B^T u``,
  ``u = (1[a_t] − π_t, c_V)``, times the readout-filtered eligibility averaged over the step),
  a trace ``F_t = γλ F_{t−1} + g_t`` and the TD error ``δ_t = ρ r_t + γ V_{t+1} − V_t``
  (``V_{t+1} = 0`` at termination, bootstrapped at truncation);
  ``ΔW = η Σ_t (δ_t F_t + β_H ∇H(π_t))``.
- :class:`RewardSTDP` (``rstdp-reward``): R-STDP of the readout's action units with the chosen
  action as the post-synaptic spike (a winner-take-all action layer fires its winner at the last
  network step of the environment step), pre = hidden spikes; the episode's return minus a running
  baseline arrives as one dopamine pulse at the end, ``Δw = η (R − R̄)/s · e``.
- :class:`Reinforce` (``reinforce``): REINFORCE with the running baseline, gradients of
  ``−Σ_t A_t log π(a_t)`` by BPTT with the surrogate spike derivative (the non-local baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch.utils._pytree import tree_map

from neurolearn.errors import ConfigError
from neurolearn.learning.grads import add_grad, add_update, trainable
from neurolearn.learning.noise import draw_noise
from neurolearn.learning.options import check_bool, check_choice, check_number
from neurolearn.learning.traces import Signals
from neurolearn.network import Network
from neurolearn.rules.base import Requirements, Rule, StepOutput
from neurolearn.rules.eprop import FEEDBACKS, EProp
from neurolearn.rules.eprop_traces import EligibilityTraces
from neurolearn.rules.rstdp import FORMS, RSTDPParams
from neurolearn.rules.stdp import check_plain_sgd


class PolicyOutput(NamedTuple):
    """The policy's output for one observation: logits ``[A]`` and the value (``None``: no value unit)."""

    logits: torch.Tensor
    value: float | None


def discounted_returns(rewards: list[float], gamma: float) -> list[float]:
    r"""``G_t = r_t + γ G_{t+1}``, ``G_T = 0`` (the episode's rewards to go)."""
    out, g = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


class RunningBaseline:
    r"""EMA of the mean ``b`` and variance of the returns it sees: ``A = (G − b)/s``, ``s = √var``
    (1 until two batches have been seen). :meth:`advantage` uses the statistics *before* adding
    ``G`` (the baseline must not depend on the sample it judges)."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.mean: float | None = None
        self.var = 0.0

    def advantage(self, values: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            adv = values - values.mean()
            scale = float(values.std()) if values.numel() > 1 else 1.0
        else:
            adv = values - self.mean
            scale = math.sqrt(self.var)
        out = adv / max(scale, 1e-6) if scale > 0 else adv
        m, v = float(values.mean()), float(values.var()) if values.numel() > 1 else 0.0
        if self.mean is None:
            self.mean, self.var = m, v
        else:
            d = self.decay
            self.var = d * self.var + (1 - d) * (v + (m - self.mean) ** 2)
            self.mean = d * self.mean + (1 - d) * m
        return out

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var}


def detach_state(state: Any) -> Any:
    """Every tensor of a network state detached (truncates BPTT at an environment step)."""
    return tree_map(lambda t: t.detach() if isinstance(t, torch.Tensor) else t, state)


class RewardRule(Rule):
    """A rule that learns from an environment's reward (module docstring). Subclasses implement
    :meth:`forward`, :meth:`act`, :meth:`reward`, :meth:`end_episode`."""

    greedy: ClassVar[bool] = False  # action = argmax of the logits (the rule's noise explores)
    bootstraps: ClassVar[bool] = False  # needs the value of the observation at truncation
    needs_value: ClassVar[bool] = False  # needs a value unit in the readout

    def __init__(self, options: Any = None, **params: Any) -> None:
        super().__init__(options, **params)
        self.n_actions = 0
        self.gamma = 0.99
        self.state: Any = None

    def step(self, model, x, y, objective, updater) -> StepOutput:
        raise ConfigError(f"rule {self.name!r} learns from an environment's reward: train a model with an [env] "
                          "table (e.g. --model snn-cartpole)")

    def bind(self, model: Network, n_actions: int, gamma: float, generator: torch.Generator) -> None:
        """Before training: the environment's number of actions, the discount, the rule's noise generator."""
        units = model.output_size
        need = n_actions + (1 if self.needs_value else 0)
        if units < need:
            raise ConfigError(f"rule {self.name!r} needs a readout of {need} units ({n_actions} action logits"
                              f"{' + 1 value' if self.needs_value else ''}); the model's has {units}")
        self.n_actions, self.gamma, self.generator = n_actions, float(gamma), generator

    def begin_episode(self, model: Network) -> None:
        p = next(model.parameters())
        self.state = model.init_state(1, p.device, p.dtype)

    def policy_output(self, outputs: list[torch.Tensor]) -> PolicyOutput:
        """Logits and value from the readout over one environment step (mean over its network steps)."""
        y = torch.stack(outputs).mean(0)[0]
        value = float(y[self.n_actions]) if y.shape[0] > self.n_actions else None
        return PolicyOutput(y[:self.n_actions], value)

    def forward(self, model: Network, x: torch.Tensor) -> PolicyOutput:
        """Run ``x`` ``[T, 1, n_in]`` (one observation, encoded) from the current state."""
        raise NotImplementedError

    def act(self, action: int, out: PolicyOutput) -> None:
        """The action taken after ``out``."""

    def reward(self, r: float, terminated: bool, next_out: PolicyOutput | None) -> None:
        """The reward of the last action; ``next_out``: the policy at the next observation (``None`` at termination)."""

    def end_episode(self, model: Network, updater) -> dict[str, float]:
        raise NotImplementedError


def _check_sigma(sigma: Any) -> None:
    values = sigma if isinstance(sigma, (list, tuple)) else [sigma]
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                             for v in values) or not any(v > 0 for v in values):
        raise ConfigError(f"sigma must be a positive number or a list of numbers >= 0 (one per layer), got {sigma!r}")


# ---------------------------------------------------------------------------------------------- node perturbation
@dataclass(frozen=True)
class RewardNPOptions:
    """``sigma`` (node-noise std, one number or one per layer; in units of the input current),
    ``noise`` (gaussian, bernoulli), ``baseline_decay``, ``hold`` (true: one draw per environment
    step, held over its ``T`` network steps, so ``E_t = ξ_t ⊗ Σ_s pre[s]``; false: a draw per
    network step), ``action`` (sample: from ``softmax`` of the noisy logits; greedy: their argmax,
    the noise alone explores)."""

    sigma: float | tuple[float, ...] = 0.5
    noise: str = "gaussian"
    baseline_decay: float = 0.95
    hold: bool = True
    action: str = "sample"

    def __post_init__(self) -> None:
        _check_sigma(self.sigma)
        check_choice("action", self.action, ("sample", "greedy"))
        if isinstance(self.sigma, list):
            object.__setattr__(self, "sigma", tuple(float(v) for v in self.sigma))
        check_choice("noise", self.noise, ("gaussian", "bernoulli"))
        check_number("baseline_decay", self.baseline_decay, low=0.0, high=1.0, high_open=True)
        check_bool("hold", self.hold)


class RewardNodePerturbation(RewardRule):
    """Reward-modulated node perturbation (module docstring; PLASTICITY.md §5.3)."""

    name = "np-reward"
    summary = "reward-modulated node perturbation: (return - running baseline) x noise x pre, per episode"
    requires = Requirements(pre=True, post=True, broadcast_scalar=True)
    Options = RewardNPOptions

    @property
    def greedy(self) -> bool:  # type: ignore[override]
        return self.options.action == "greedy"

    def bind(self, model, n_actions, gamma, generator) -> None:
        super().bind(model, n_actions, gamma, generator)
        n = len(model.layers)
        sigma = self.options.sigma
        if isinstance(sigma, tuple) and len(sigma) != n:
            raise ConfigError(f"np-reward: sigma has {len(sigma)} entries, the model has {n} layers")
        self.sigmas = list(sigma) if isinstance(sigma, tuple) else [float(sigma)] * n
        self.baseline = RunningBaseline(self.options.baseline_decay)

    def begin_episode(self, model) -> None:
        super().begin_episode(model)
        self.elig: list[list[dict[str, torch.Tensor]]] = []  # per env step, per layer: Σ ξ ⊗ pre
        self.rewards: list[float] = []

    @torch.no_grad()
    def forward(self, model, x) -> PolicyOutput:
        layers = list(model.layers)
        step_e: list[dict[str, torch.Tensor]] = [{} for _ in layers]
        outputs = []
        noise: list[torch.Tensor | None] = []
        for s in range(x.shape[0]):
            if s == 0 or not self.options.hold:
                noise = [draw_noise(layer.pre_shape(1), sig, self.options.noise, self.generator, x) if sig > 0
                         else None for layer, sig in zip(layers, self.sigmas)]
            out, self.state, taps = model.step(x[s], self.state, noise)
            outputs.append(out)
            for k, (layer, tap) in enumerate(zip(layers, taps)):
                if noise[k] is not None:
                    add_update(layer, noise[k] / self.sigmas[k] ** 2, Signals(tap.input, tap.rec, 1.0, None, None),
                               step_e[k], 1.0)
        self.elig.append(step_e)
        return self.policy_output(outputs)

    def reward(self, r, terminated, next_out) -> None:
        self.rewards.append(float(r))

    def end_episode(self, model, updater) -> dict[str, float]:
        returns = torch.tensor(discounted_returns(self.rewards, self.gamma), dtype=torch.float64)
        adv = self.baseline.advantage(returns)
        layers = list(model.layers)
        for k, layer in enumerate(layers):
            total: dict[str, torch.Tensor] = {}
            for a, step_e in zip(adv.tolist(), self.elig):
                for name, e in step_e[k].items():
                    total[name] = -a * e if name not in total else total[name].add_(e, alpha=-a)
            for name, g in total.items():  # descent on −return: .grad = −Σ_t A_t E_t
                add_grad(getattr(layer, name), g.reshape(getattr(layer, name).shape))
        updater.apply(generator=self.generator, stats={"baseline": self.baseline.state()})
        return {"return": sum(self.rewards)}


# ---------------------------------------------------------------------------------------------- e-prop
@dataclass(frozen=True)
class RewardEPropOptions:
    """``feedback`` (random, symmetric), ``gamma_pd`` (pseudo-derivative height), ``lam`` (λ of the
    trace F, decay γλ), ``value_weight`` c_V, ``reward_scale`` ρ, ``entropy`` β_H (the policy's
    entropy bonus, ``β_H ∇H(π_t)`` added per step, not multiplied by δ: keeps the policy from
    collapsing onto one action)."""

    feedback: str = "random"
    gamma_pd: float = 0.3
    lam: float = 0.9
    value_weight: float = 0.5
    reward_scale: float = 0.1
    entropy: float = 0.01

    def __post_init__(self) -> None:
        check_choice("feedback", self.feedback, FEEDBACKS)
        check_number("gamma_pd", self.gamma_pd, low=0.0, low_open=True)
        check_number("lam", self.lam, low=0.0, high=1.0)
        check_number("value_weight", self.value_weight, low=0.0)
        check_number("reward_scale", self.reward_scale, low=0.0, low_open=True)
        check_number("entropy", self.entropy, low=0.0)


class RewardEProp(RewardRule):
    """Reward-based e-prop, actor-critic with the TD error as the broadcast signal (module docstring)."""

    name = "eprop-reward"
    summary = "reward-based e-prop (actor-critic): TD error x filtered eligibility x feedback (recurrent LIF/ALIF)"
    requires = Requirements(pre=True, post=True, broadcast_scalar=True, broadcast_vector=True)
    Options = RewardEPropOptions
    bootstraps = True
    needs_value = True

    def __init__(self, options: Any = None, **params: Any) -> None:
        super().__init__(options, **params)
        self.requires = Requirements(pre=True, post=True, broadcast_scalar=True, broadcast_vector=True,
                                     weight_transport=self.options.feedback == "symmetric")
        self.B: torch.Tensor | None = None

    def bind(self, model, n_actions, gamma, generator) -> None:
        super().bind(model, n_actions, gamma, generator)
        hidden, readout, self.dyn, (self.kappa, self.gain_o) = EProp.check_model(model)
        self.readout = readout
        if hidden.recurrent:
            with torch.no_grad():
                hidden.recurrent_weight.fill_diagonal_(0.0)  # no autapses (PLASTICITY.md §2.2)
        if self.options.feedback == "random" and self.B is None:
            self.B = EProp._draw_feedback(readout, generator)

    def begin_episode(self, model) -> None:
        super().begin_episode(model)
        hidden, readout = model.layers[0], model.layers[1]
        p = hidden.weight
        self.n_in = hidden.weight.shape[1]
        self.n_rec = hidden.out_shape[0]
        self.use_bias = hidden.bias is not None
        n_pre = self.n_in + (self.n_rec if hidden.recurrent else 0) + int(self.use_bias)
        z = dict(device=p.device, dtype=p.dtype)
        self.traces = EligibilityTraces(self.dyn, 1, self.n_rec, n_pre, p.device, p.dtype)
        self.ebar = torch.zeros(self.n_rec, n_pre, **z)
        self.zbar = torch.zeros(self.n_rec, **z)
        self.bbar = 0.0
        self.F = [torch.zeros(self.n_rec, n_pre, **z), torch.zeros_like(readout.weight),
                  torch.zeros(readout.weight.shape[0], **z)]  # trace of g: hidden [W_in|W_rec|b], W_out, b_out
        self.G = [torch.zeros_like(f) for f in self.F]
        self.value: float | None = None
        self.pending = False
        self.total = 0.0
        self.td2 = 0.0
        self.steps = 0

    @torch.no_grad()
    def forward(self, model, x) -> PolicyOutput:
        hidden = model.layers[0]
        steps = x.shape[0]
        acc_e = torch.zeros_like(self.ebar)
        acc_z = torch.zeros_like(self.zbar)
        acc_b = 0.0
        outputs = []
        one = torch.ones(1, 1, dtype=x.dtype, device=x.device)
        for s in range(steps):
            before = self.state[0].neuron
            out, self.state, taps = model.step(x[s], self.state)
            outputs.append(out)
            tap = taps[0]
            parts = [tap.input] + ([tap.rec] if hidden.recurrent else []) + ([one] if self.use_bias else [])
            pre = torch.cat(parts, 1)
            psi = self.dyn.pseudo_derivative(before, tap.state, self.options.gamma_pd)
            e = self.traces.step(pre, psi)[0]
            self.ebar.mul_(self.kappa).add_(e, alpha=self.gain_o)
            self.zbar.mul_(self.kappa).add_(taps[1].input[0], alpha=self.gain_o)
            self.bbar = self.kappa * self.bbar + self.gain_o
            acc_e.add_(self.ebar, alpha=1.0 / steps)
            acc_z.add_(self.zbar, alpha=1.0 / steps)
            acc_b += self.bbar / steps
        self.acc = (acc_e, acc_z, acc_b)
        return self.policy_output(outputs)

    @torch.no_grad()
    def act(self, action, out) -> None:
        acc_e, acc_z, acc_b = self.acc
        n_out = self.F[1].shape[0]
        u = torch.zeros(n_out, dtype=acc_z.dtype, device=acc_z.device)
        pi = torch.softmax(out.logits, 0)
        u[:self.n_actions] = -pi
        u[action] += 1.0
        u[self.n_actions] = self.options.value_weight  # ∇V
        B = self.B if self.options.feedback == "random" else self.readout.weight.detach()  # symmetric: current W_out
        signal = u @ B                                                     # [n_rec]
        decay = self.gamma * self.options.lam
        self.F[0].mul_(decay).add_(signal[:, None] * acc_e)
        self.F[1].mul_(decay).add_(torch.outer(u, acc_z))
        self.F[2].mul_(decay).add_(u * acc_b)
        if self.options.entropy > 0:  # ∂H/∂l_k = −π_k (log π_k + H)
            logp = torch.log_softmax(out.logits, 0)
            h = -(pi * logp).sum()
            u_h = torch.zeros_like(u)
            u_h[:self.n_actions] = -pi * (logp + h) * self.options.entropy
            self.G[0].add_((u_h @ B)[:, None] * acc_e)
            self.G[1].add_(torch.outer(u_h, acc_z))
            self.G[2].add_(u_h * acc_b)
        self.value = out.value
        self.pending = True

    @torch.no_grad()
    def reward(self, r, terminated, next_out) -> None:
        v_next = 0.0 if terminated or next_out is None else float(next_out.value)
        delta = self.options.reward_scale * r + self.gamma * v_next - float(self.value)
        for G, F in zip(self.G, self.F):
            G.add_(F, alpha=delta)
        self.total += r
        self.td2 += delta * delta
        self.steps += 1
        self.pending = False

    def end_episode(self, model, updater) -> dict[str, float]:
        hidden, readout = model.layers[0], model.layers[1]
        g_h = -self.G[0]  # ascent on the return: .grad = −Σ δ F
        grads = [(hidden.weight, g_h[:, :self.n_in])]
        if hidden.recurrent:
            g_rec = g_h[:, self.n_in:self.n_in + self.n_rec].clone()
            g_rec.fill_diagonal_(0.0)
            grads.append((hidden.recurrent_weight, g_rec))
        if self.use_bias:
            grads.append((hidden.bias, g_h[:, -1]))
        grads.append((readout.weight, -self.G[1]))
        if readout.bias is not None:
            grads.append((readout.bias, -self.G[2]))
        for p, g in grads:
            add_grad(p, g.clone().reshape(p.shape))
        updater.apply(generator=self.generator)
        return {"return": self.total, "td_rms": math.sqrt(self.td2 / max(1, self.steps))}

    def state_dict(self) -> dict[str, Any]:
        return {"B": self.B} if self.B is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.B = state.get("B")


# ---------------------------------------------------------------------------------------------- R-STDP
@dataclass(frozen=True)
class RewardSTDPOptions:
    """The R-STDP parameters of :class:`~neurolearn.rules.rstdp.RSTDPParams` (``form``, ``a_plus``,
    ``a_minus``, ``tau_plus``, ``tau_minus``, ``tau_c``, ``lr``, ``w_max``) and ``baseline_decay``."""

    form: str = "mstdpet"
    a_plus: float = 1.0
    a_minus: float = 1.0
    tau_plus: float = 20e-3
    tau_minus: float = 20e-3
    tau_c: float = 1.0
    lr: float = 0.05
    w_max: float = 1.0
    baseline_decay: float = 0.95

    def __post_init__(self) -> None:
        check_choice("form", self.form, FORMS)
        check_number("baseline_decay", self.baseline_decay, low=0.0, high=1.0, high_open=True)
        self.params  # validates the rest

    @property
    def params(self) -> RSTDPParams:
        return RSTDPParams(form=self.form, a_plus=self.a_plus, a_minus=self.a_minus, tau_plus=self.tau_plus,
                           tau_minus=self.tau_minus, tau_c=self.tau_c, lr=self.lr, w_max=self.w_max)


class RewardSTDP(RewardRule):
    """R-STDP of the readout's action units, the chosen action as their spike (module docstring)."""

    name = "rstdp-reward"
    summary = "R-STDP of the action readout: (return - running baseline) x STDP eligibility (action = post spike)"
    requires = Requirements(pre=True, post=True, broadcast_scalar=True)
    Options = RewardSTDPOptions

    def bind(self, model, n_actions, gamma, generator) -> None:
        super().bind(model, n_actions, gamma, generator)
        readout = model.layers[-1]
        if len(model.layers) < 2 or not model.layers[-2].spiking:
            raise ConfigError("rstdp-reward trains the readout from the spikes of the layer before it: the model "
                              "needs a spiking hidden layer")
        self.p = self.options.params
        with torch.no_grad():  # excitatory synapses in [0, w_max]
            w = readout.weight[:n_actions]
            w.copy_(w.abs().clamp(0.0, self.p.w_max))
        self.baseline = RunningBaseline(self.options.baseline_decay)

    def begin_episode(self, model) -> None:
        super().begin_episode(model)
        readout = model.layers[-1]
        w = readout.weight[:self.n_actions]
        self.st = self.p.init_state((w.shape[1],), (self.n_actions,), w.shape, w.device, w.dtype)
        self.zeta_sum = torch.zeros_like(w)  # MSTDP: the episode's summed ζ
        self.total = 0.0
        self.dt = float(model.dt)

    @torch.no_grad()
    def forward(self, model, x) -> PolicyOutput:
        outputs, self.pre = [], []
        for s in range(x.shape[0]):
            out, self.state, taps = model.step(x[s], self.state)
            outputs.append(out)
            self.pre.append(taps[-1].input[0])
        return self.policy_output(outputs)

    @torch.no_grad()
    def act(self, action, out) -> None:
        stdp, p = self.p.stdp, self.p
        for s, pre in enumerate(self.pre):
            post = torch.zeros(self.n_actions, dtype=pre.dtype, device=pre.device)
            if s == len(self.pre) - 1:
                post[action] = 1.0
            pair, traces = stdp.step(pre, post, self.st.traces, self.dt)
            zeta = torch.outer(pair.ltp_post, pair.ltp_pre) - torch.outer(pair.ltd_post, pair.ltd_pre)
            if p.form == "mstdp":
                self.zeta_sum += zeta
                elig = None
            else:
                elig = p.eligibility(zeta, self.st.elig, self.dt)
            self.st = self.st._replace(traces=traces, elig=elig)

    def reward(self, r, terminated, next_out) -> None:
        self.total += float(r)

    def end_episode(self, model, updater) -> dict[str, float]:
        check_plain_sgd(updater.optimizer, self.name)
        adv = float(self.baseline.advantage(torch.tensor([self.total], dtype=torch.float64))[0])
        elig = self.zeta_sum if self.p.form == "mstdp" else self.st.elig
        readout = model.layers[-1]
        w = readout.weight.detach()
        grad = torch.zeros_like(w)
        rows = w[:self.n_actions]
        grad[:self.n_actions] = rows - (rows + self.p.lr * adv * elig).clamp(0.0, self.p.w_max)
        if trainable(readout.weight):
            add_grad(readout.weight, grad)
        updater.apply(params=[readout.weight], generator=self.generator)
        return {"return": self.total}


# ---------------------------------------------------------------------------------------------- REINFORCE (BPTT)
@dataclass(frozen=True)
class ReinforceOptions:
    """``baseline_decay``; ``truncate`` (true: BPTT within each environment step, the state detached
    between steps; false: through the whole episode)."""

    baseline_decay: float = 0.95
    truncate: bool = True

    def __post_init__(self) -> None:
        check_number("baseline_decay", self.baseline_decay, low=0.0, high=1.0, high_open=True)
        check_bool("truncate", self.truncate)


class Reinforce(RewardRule):
    """REINFORCE with a running baseline, by BPTT with surrogate gradients (module docstring)."""

    name = "reinforce"
    summary = "REINFORCE with a running baseline, gradients by BPTT (surrogate spikes): the RL baseline"
    requires = Requirements(pre=True, post=True, weight_transport=True, through_time=True)
    Options = ReinforceOptions

    def bind(self, model, n_actions, gamma, generator) -> None:
        super().bind(model, n_actions, gamma, generator)
        self.baseline = RunningBaseline(self.options.baseline_decay)

    def begin_episode(self, model) -> None:
        super().begin_episode(model)
        self.logps: list[torch.Tensor] = []
        self.rewards: list[float] = []

    def forward(self, model, x) -> PolicyOutput:
        if self.options.truncate:
            self.state = detach_state(self.state)
        with torch.enable_grad():
            outputs = []
            for s in range(x.shape[0]):
                out, self.state, _ = model.step(x[s], self.state)
                outputs.append(out)
            y = torch.stack(outputs).mean(0)[0]
        self.logits = y[:self.n_actions]
        return PolicyOutput(self.logits.detach(), None)

    def act(self, action, out) -> None:
        self.logps.append(torch.log_softmax(self.logits, 0)[action])

    def reward(self, r, terminated, next_out) -> None:
        self.rewards.append(float(r))

    def end_episode(self, model, updater) -> dict[str, float]:
        returns = torch.tensor(discounted_returns(self.rewards, self.gamma), dtype=torch.float64)
        adv = self.baseline.advantage(returns).to(self.logps[0].dtype)
        loss = -(adv * torch.stack(self.logps)).sum()
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            if g is not None:
                add_grad(p, g)
        self.logps, self.state = [], None
        updater.apply(generator=self.generator)
        return {"return": sum(self.rewards)}


REWARD_RULES = (RewardNodePerturbation, RewardEProp, RewardSTDP, Reinforce)

__all__ = ["RewardRule", "PolicyOutput", "RewardNodePerturbation", "RewardEProp", "RewardSTDP", "Reinforce",
           "RewardNPOptions", "RewardEPropOptions", "RewardSTDPOptions", "ReinforceOptions", "RunningBaseline",
           "discounted_returns", "detach_state", "REWARD_RULES"]
