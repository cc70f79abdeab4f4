r"""STDP as Brian2 synapses: event-driven traces and ``on_pre`` / ``on_post`` updates.

One plastic feed-forward layer: ``n_in`` input spike trains (a ``[T, n_in]`` 0/1 array, given as a
``TimedArray`` group whose threshold ``x > 0.5`` emits the spike events) drive ``n_out`` neurons of
any model that declares its Brian2 equations (the neuron contract: LIF, CubaLIF, ALIF, Izhikevich,
AdEx) through all-to-all synapses ``I_ff = Σ w x_pre`` (a ``(summed)`` variable, one step of input
added one to one, as in :mod:`neurolearn.backends.brian2`, whose schedule this module follows).

**Synapse model** (:func:`stdp_synapse_model`; the rule of :mod:`neurolearn.rules.stdp`)::

    w : 1
    dr1/dt = -r1/tau_r1 : 1 (event-driven)      # pre trace,  tau_plus
    do1/dt = -o1/tau_o1 : 1 (event-driven)      # post trace, tau_minus
    (dr2/dt, do2/dt with tau_x, tau_y for the triplet rule)

and four pathways, in this order within a time step (``when='synapses'``, explicit ``order``)::

    ltp      (on_post): w = clip(w + f+(w) * (A2+ + A3+ o2) * r1, 0, w_max)
    ltd      (on_pre):  w = clip(w - f-(w) * (A2- + A3- r2) * o1, 0, w_max)
    pre_inc  (on_pre):  r1 += 1  (nearest: r1 = 1), r2 likewise
    post_inc (on_post): o1 += 1  (nearest: o1 = 1), o2 likewise

so the updates read the traces *before* this step's spikes (no same-step pairing) and LTP comes
before LTD, exactly the torch rule. With ``same_step="ltp"`` the ``ltp`` pathway reads the pre trace
as it is after this step's pre spike, ``r1 + x_pre`` (nearest: ``r1 + x_pre (1 − r1)``; ``x_pre`` is
the input's spike indicator of this step), as the torch rule does. **Decay.** The torch traces decay by the Euler factor
``1 − dt/τ`` per step; an event-driven trace decays by ``exp(−Δt/τ_b)``. With
``τ_b = −dt / ln(1 − dt/τ)`` both agree at every step (:func:`matched_tau`), so the two engines
give the same weights on the same spikes up to floating-point rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from neurolearn.backends.brian2 import _neuron_equations, codegen_target, import_brian2
from neurolearn.errors import ConfigError, ShapeError
from neurolearn.neurons import Neuron
from neurolearn.rules.stdp import STDPParams


def matched_tau(tau: float, dt: float) -> float:
    """The time constant whose exact exponential decay per step equals the Euler factor ``1 − dt/τ``."""
    if not 0 < dt < tau:
        raise ConfigError(f"dt = {dt:g} s must be positive and below the trace time constant {tau:g} s")
    return -dt / math.log(1.0 - dt / tau)


def _factor(mu: float, expr: str) -> str:
    if mu == 0.0:
        return ""
    return f"*({expr})" if mu == 1.0 else f"*({expr})**{mu!r}"


def stdp_synapse_model(p: STDPParams, dt: float) -> tuple[str, dict[str, str], dict[str, str], dict[str, float]]:
    """The synapse equations, the ``on_pre`` and ``on_post`` pathway codes and their namespace."""
    b2 = import_brian2()
    ns = {"tau_r1": matched_tau(p.tau_plus, dt) * b2.second, "tau_o1": matched_tau(p.tau_minus, dt) * b2.second,
          "a2_plus": p.a_plus, "a2_minus": p.a_minus, "w_max": p.w_max}
    eqs = ["w : 1", "dr1/dt = -r1/tau_r1 : 1 (event-driven)", "do1/dt = -o1/tau_o1 : 1 (event-driven)"]
    ltp_gain, ltd_gain = "a2_plus", "a2_minus"
    inc = (lambda v: f"{v} += 1") if p.pairing == "all" else (lambda v: f"{v} = 1")
    pre_inc, post_inc = [inc("r1")], [inc("o1")]
    if p.triplet:
        ns.update(tau_r2=matched_tau(p.tau_x, dt) * b2.second, tau_o2=matched_tau(p.tau_y, dt) * b2.second,
                  a3_plus=p.a3_plus, a3_minus=p.a3_minus)
        eqs += ["dr2/dt = -r2/tau_r2 : 1 (event-driven)", "do2/dt = -o2/tau_o2 : 1 (event-driven)"]
        ltp_gain, ltd_gain = "(a2_plus + a3_plus*o2)", "(a2_minus + a3_minus*r2)"
        pre_inc.append(inc("r2"))
        post_inc.append(inc("o2"))
    r1 = "r1"
    if p.same_step == "ltp":  # LTP sees this step's pre spike (x_pre: the input's 0/1 of this step)
        r1 = "(r1 + x_pre)" if p.pairing == "all" else "(r1 + x_pre*(1 - r1))"
    fplus = _factor(p.mu_plus, "clip(1 - w/w_max, 0, 1)")
    fminus = _factor(p.mu_minus, "clip(w/w_max, 0, 1)")
    on_post = {"ltp": f"w = clip(w + {ltp_gain}*{r1}{fplus}, 0, w_max)", "post_inc": "\n".join(post_inc)}
    on_pre = {"ltd": f"w = clip(w - {ltd_gain}*o1{fminus}, 0, w_max)", "pre_inc": "\n".join(pre_inc)}
    return "\n".join(eqs), on_pre, on_post, ns


@dataclass
class STDPRun:
    """What a Brian2 STDP run returns: final weights ``[n_out, n_in]``, post spikes ``[T, n_out]``,
    and the wall-clock seconds of ``Network.run``."""

    weight: torch.Tensor
    spikes: torch.Tensor
    seconds: float


def run_stdp_brian2(neuron: Neuron, weight: torch.Tensor, spikes: torch.Tensor, params: STDPParams, dt: float,
                    bias: torch.Tensor | None = None, target: str = "numpy") -> STDPRun:
    """Simulate one plastic layer (``weight`` ``[n_out, n_in]``, optional ``bias``) of ``neuron`` driven by
    the input ``spikes`` (``[T, n_in]``, 0/1) for ``T`` steps of ``dt`` seconds, with STDP on the synapses."""
    import time

    b2 = import_brian2()
    if not neuron.spiking:
        raise ConfigError("STDP in Brian2 needs a spiking neuron model")
    if spikes.dim() != 2 or weight.dim() != 2 or spikes.shape[1] != weight.shape[1]:
        raise ShapeError(f"spikes must be [T, n_in] and weight [n_out, n_in]; got {list(spikes.shape)} and "
                         f"{list(weight.shape)}")
    T, n_in = spikes.shape
    n_out = weight.shape[0]
    with codegen_target(target):
        clock = b2.Clock(dt=dt * b2.second)
        stim = b2.TimedArray(spikes.detach().cpu().double().numpy(), dt=dt * b2.second)
        inputs = b2.NeuronGroup(n_in, "x = stim(t, i) : 1", threshold="x > 0.5", reset="",
                                clock=clock, name="stdp_input")
        eqs, nspec = _neuron_equations(neuron, False)
        g = b2.NeuronGroup(n_out, eqs, method="euler", clock=clock, namespace=dict(nspec.namespace),
                           threshold=nspec.threshold, reset=nspec.reset, name="stdp_post",
                           **({} if nspec.refractory is None else {"refractory": nspec.refractory}))
        for var, value in nspec.initial.items():
            setattr(g, var, value)
        if bias is not None:
            g.b = bias.detach().cpu().double().numpy()
        model, on_pre, on_post, ns = stdp_synapse_model(params, dt)
        syn = b2.Synapses(inputs, g, model + "\nI_ff_post = w*x_pre : 1 (summed)", on_pre=on_pre, on_post=on_post,
                          clock=clock, namespace=ns, name="stdp_syn")
        syn.connect(i=np.arange(n_in).repeat(n_out), j=np.tile(np.arange(n_out), n_in))
        w = weight.detach().cpu().double().numpy()
        syn.w = w[np.asarray(syn.j[:]), np.asarray(syn.i[:])]
        # the torch engine's step, in the 'groups' slot (neurolearn.backends.brian2's schedule):
        # clear s -> input (with this step's weights) -> model's pre-update ops -> update -> threshold
        # -> model's post-threshold ops -> reset; plasticity follows in the 'synapses' slot
        objects = [inputs, g, syn]
        order = iter(range(1, 100))
        objects.append(g.run_regularly("s = 0", when="groups", order=next(order), name="stdp_clear"))
        syn.summed_updaters["I_ff_post"].when, syn.summed_updaters["I_ff_post"].order = "groups", next(order)
        for j, code in enumerate(nspec.before_update):
            objects.append(g.run_regularly(code, when="groups", order=next(order), name=f"stdp_pre{j}"))
        g.state_updater.when, g.state_updater.order = "groups", next(order)
        g.thresholder["spike"].when, g.thresholder["spike"].order = "groups", next(order)
        for j, code in enumerate(nspec.after_threshold):
            objects.append(g.run_regularly(code, when="groups", order=next(order), name=f"stdp_post{j}"))
        g.resetter["spike"].when, g.resetter["spike"].order = "groups", next(order)
        for k, pathway in enumerate(("ltp", "ltd", "pre_inc", "post_inc")):
            getattr(syn, pathway).order = k + 1
        mon = b2.SpikeMonitor(g, name="stdp_spikes")
        objects.append(mon)
        net = b2.Network(*objects)
        start = time.perf_counter()
        net.run(T * dt * b2.second, namespace={"stim": stim})
        seconds = time.perf_counter() - start
    out = np.zeros((n_out, n_in))
    out[np.asarray(syn.j[:]), np.asarray(syn.i[:])] = np.asarray(syn.w[:])
    post = torch.zeros(T, n_out, dtype=weight.dtype)
    steps = np.round(np.asarray(mon.t / clock.dt)).astype(int)
    post[torch.as_tensor(steps), torch.as_tensor(np.asarray(mon.i, dtype=int))] = 1.0
    return STDPRun(torch.as_tensor(out, dtype=weight.dtype), post, seconds)


__all__ = ["matched_tau", "stdp_synapse_model", "run_stdp_brian2", "STDPRun"]
