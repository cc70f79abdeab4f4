r"""Run a neurolearn network in Brian2 and get back the torch engine's :class:`Record`.

Brian2 is imported lazily (only when a function here runs): ``import neurolearn`` never
imports it.

**What is translated.** A :class:`~neurolearn.network.Network` of :class:`~neurolearn.layers.Dense`
layers (feed-forward or recurrent) whose neurons are any model that declares its Brian2 equations
(:meth:`neurolearn.neurons.Neuron.brian2`: rate units, LIF, CubaLIF, LI, ALIF, Izhikevich, AdEx)
or none (a linear readout), with the network's trained weights and biases. Convolutions and
decorrelated layers are refused with a :class:`~neurolearn.errors.ConfigError` (fold ``R`` into
``W`` first), and so is a neuron model without a translation (its refusal says why).

**Equations** (units checked by Brian2: the membrane is in the model's own scale, time constants
are in seconds). Every layer is a ``NeuronGroup`` with the pre-activation

.. math::  z = I_{ff} + I_{rec} + b + \eta ,\qquad I_{ff} = \sum_i w_{ij}\, a^{pre}_i ,\quad
           I_{rec} = \sum_i w^{rec}_{ij}\, a_i[t-1]

delivered through ``(summed)`` synaptic variables (``noise``, eta, is the node-noise parameter the
plasticity module writes; 0 otherwise), followed by the neuron model's own equations in ``z``
(each model's file writes them down: e.g. LIF ``dv/dt = (v_leak - v + r z)/tau_mem``, threshold
``v > threshold``, reset ``v -= threshold`` or ``v = v_reset``, the spike written into ``s``).

The state updaters use ``method='euler'`` with the network's ``dt``, which is exactly
neurolearn's discretisation (``beta = 1 - dt/tau``, ``r = tau/dt``: one step of input adds
to ``v`` one to one). Operations a model needs outside its differential equations (CubaLIF's
synaptic current before the membrane; ALIF's adaptation decay between threshold and reset) are
``run_regularly`` operations placed in the schedule below.

**Schedule.** Brian2's default order (all state updates, then all thresholds, then synaptic
propagation, then resets) delays every layer by one step and leaks its input once; the
torch engine runs layer after layer inside one step. Here every operation of one time step
is put in the ``groups`` slot with an explicit ``order``, layer by layer:
recurrent input (reads ``a[t-1]``) -> clear ``s`` -> feed-forward input (reads the layer
below at step ``t``) -> the model's operations before its update (CubaLIF's ``i_syn``) -> state
update -> threshold -> the model's operations after the threshold (ALIF's ``a = rho a``) ->
monitors (pre-reset membrane) -> reset (``s = 1``) -> next layer. With this schedule a layer sees
the same numbers at the same step as in the torch engine, so rate networks agree to
floating-point rounding and the spike trains of LIF, CubaLIF, ALIF, Izhikevich and AdEx are
identical (tested in ``tests/test_brian2.py``; the only possible difference is a membrane within ~1e-15 of the
threshold, where Brian2's ``v + dt*(...)/tau`` and torch's ``beta*v + (1-beta)*(...)``
round differently).

**CubaLIF note.** Brian2's own Euler step for the pair of equations ``di/dt``, ``dv/dt``
would update ``v`` with the *old* ``i``; neurolearn updates ``i`` first and drives ``v`` with
the new one. ``cuba_update="neurolearn"`` (the default) reproduces neurolearn's order;
``cuba_update="brian2"`` writes both as differential equations and lets Brian2's Euler
integrate them jointly (one extra step of synaptic delay; measured in
``experiments/brian2_agreement.py``).

**Batches.** Brian2 has no batch dimension: a batch of ``B`` samples is simulated as ``B``
independent copies of the network inside one Brian2 network (block-diagonal synapses), so
one run gives the whole ``[T, B, ...]`` record.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from neurolearn.errors import ConfigError, NeurolearnError, ShapeError, unknown_name
from neurolearn.layers import Dense
from neurolearn.network import LayerRecord, Network, Record
from neurolearn.neurons import Brian2Neuron, Neuron, NotTranslatable

TARGETS = ("numpy", "cython")
CUBA_UPDATES = ("neurolearn", "brian2")


def import_brian2():
    """Import Brian2 or raise a :class:`NeurolearnError` that says how to install it."""
    try:
        import brian2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise NeurolearnError(
            f"the Brian2 backend needs brian2 ({exc}); install it with "
            "`pip install 'neurolearn[brian2]'` (on Python 3.11: brian2 2.9 with numpy<2.4)"
        ) from None
    return brian2


@contextlib.contextmanager
def codegen_target(target: str) -> Iterator[Any]:
    """Set Brian2's code-generation target (``numpy`` or ``cython``) for a block, then restore it."""
    if target not in TARGETS:
        raise unknown_name("Brian2 code-generation target", target, TARGETS)
    b2 = import_brian2()
    old = b2.prefs.codegen.target
    b2.prefs.codegen.target = target
    try:
        yield b2
    finally:
        b2.prefs.codegen.target = old


def check_supported(network: Network) -> None:
    """Raise a :class:`ConfigError` unless every layer can be translated (see module docstring)."""
    for k, layer in enumerate(network.layers):
        if not isinstance(layer, Dense):
            raise ConfigError(
                f"layer {k} is a {type(layer).__name__}: the Brian2 backend translates dense "
                "(feed-forward or recurrent) layers only"
            )
        if layer.decorrelation is not None:
            raise ConfigError(
                f"layer {k} has a decorrelation matrix R: merge it into the weights (W <- W R) "
                "before translating to Brian2"
            )
        p = layer.neuron
        if p is not None:
            try:
                p.brian2()
            except NotTranslatable as exc:
                raise ConfigError(f"layer {k}: {exc}") from None
        dt = getattr(p, "dt", network.dt)
        if p is not None and abs(dt - network.dt) > 1e-15:
            raise ConfigError(
                f"layer {k} has its own dt = {dt:g} s but the network's is {network.dt:g} s: "
                "the Brian2 backend runs all layers on one clock"
            )


class _Orders:
    """Hands out increasing ``order`` numbers inside the ``groups`` scheduling slot."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return self.n


def _schedule(obj: Any, order: int) -> None:
    obj.when = "groups"
    obj.order = order


@dataclass
class LayerSpec:
    """One translated layer: its group, its synapses, the name of its activity variable."""

    group: Any
    act: str  # the variable the next layer reads: x, h, s, v or z
    units: int
    spiking: bool
    ff: Any = None  # feed-forward Synapses
    rec: Any = None  # recurrent Synapses
    monitors: dict[str, Any] = field(default_factory=dict)
    noise_order: int = 0  # the scheduling order reserved for node noise (plasticity module)


@dataclass
class Brian2Net:
    """A neurolearn network translated to Brian2, for one batch of inputs."""

    net: Any
    clock: Any
    inputs: Any
    layers: list[LayerSpec]
    steps: int
    batch: int
    dt: float
    namespace: dict[str, Any]

    def run(self, report: bool = False) -> float:
        """Simulate all ``steps``; returns the wall-clock seconds of ``Network.run``."""
        b2 = import_brian2()
        start = time.perf_counter()
        self.net.run(self.steps * self.dt * b2.second, namespace=self.namespace,
                     report="text" if report else None)
        return time.perf_counter() - start

    @property
    def synapses(self) -> int:
        """Number of synapses (over all copies of the batch)."""
        return sum(len(s) for spec in self.layers for s in (spec.ff, spec.rec) if s is not None)

    def record(self, x: torch.Tensor, dtype: torch.dtype = torch.float32) -> Record:
        """Collect the monitors into a :class:`Record` shaped like the torch engine's."""
        T, B = self.steps, self.batch
        out = Record(output=torch.empty(0))
        prev_act = x.flatten(2).to(dtype)
        for spec in self.layers:
            mon = spec.monitors

            def grab(name: str) -> torch.Tensor:
                values = np.asarray(getattr(mon["state"], name))  # [N, T]
                return torch.as_tensor(values.T.reshape(T, B, spec.units).copy(), dtype=dtype)

            pre = grab("z")
            mem = grab("v") if "v" in mon["state"].record_variables else None
            if spec.spiking:
                act = torch.zeros(T, B * spec.units, dtype=dtype)
                steps = np.round(np.asarray(mon["spikes"].t / self.clock.dt)).astype(int)
                act[torch.as_tensor(steps), torch.as_tensor(np.asarray(mon["spikes"].i, dtype=int))] = 1.0
                act = act.reshape(T, B, spec.units)
            elif spec.act == "z":
                act = pre
            else:
                act = grab(spec.act)
            rec = None
            if spec.rec is not None:
                rec = torch.cat([torch.zeros_like(act[:1]), act[:-1]])
            out.layers.append(LayerRecord(prev_act, pre, act, mem, rec))
            prev_act = act
        out.output = prev_act
        return out


def _neuron_equations(p: Neuron | None, recurrent: bool) -> tuple[str, Brian2Neuron]:
    """The layer's equations (its pre-activation ``z`` and the neuron model's own) and the model's spec."""
    base = ["I_ff : 1", "b : 1 (constant)", "noise : 1"]
    z = "I_ff + b + noise"
    if recurrent:
        base.append("I_rec : 1")
        z = "I_ff + I_rec + b + noise"
    base.append(f"z = {z} : 1")
    spec = Brian2Neuron("", "z") if p is None else p.brian2()
    if spec.equations:
        base.append(spec.equations)
    return "\n".join(base), spec


def build_brian2(
    network: Network,
    x: torch.Tensor,
    *,
    cuba_update: str = "neurolearn",
    record: bool = True,
    plastic: bool = False,
    extra_equations: Sequence[str] | None = None,
    synapse_equations: str = "",
) -> Brian2Net:
    """Translate ``network`` (weights copied) into a Brian2 network driven by ``x`` (``[T, B, ...]``).

    ``plastic=True`` declares the weights and biases as ordinary (writable) variables for the
    plasticity module; otherwise they are ``(constant)``. ``extra_equations[k]`` is appended
    to layer ``k``'s neuron equations and ``synapse_equations`` to every feed-forward synapse
    model (the plasticity module declares its traces there). ``record=False`` keeps only
    spike monitors (for throughput measurements).
    """
    b2 = import_brian2()
    check_supported(network)
    if cuba_update not in CUBA_UPDATES:
        raise unknown_name("CubaLIF update order", cuba_update, CUBA_UPDATES)
    network.check_input(x)
    if x.shape[0] < 1:
        raise ShapeError("the input needs at least one time step")
    T, B = int(x.shape[0]), int(x.shape[1])
    dt = float(network.dt)
    clock = b2.Clock(dt=dt * b2.second)
    orders = _Orders()
    xin = x.detach().flatten(2).cpu().double().numpy().reshape(T, -1)
    stim = b2.TimedArray(xin, dt=dt * b2.second)
    # the input's TimedArray lives in the run namespace: synapses reading x_pre resolve it there
    inputs = b2.NeuronGroup(xin.shape[1], "x = stim(t, i) : 1", clock=clock, name="nl_input")
    objects: list[Any] = [inputs]
    pre_group, pre_act, pre_units = inputs, "x", xin.shape[1] // B
    specs: list[LayerSpec] = []
    wdecl = "w : 1" if plastic else "w : 1 (constant)"
    for k, layer in enumerate(network.layers):
        p = layer.neuron
        units = layer.units
        eqs, nspec = _neuron_equations(p, layer.recurrent)
        act, ns = nspec.activity, dict(nspec.namespace)
        if plastic:
            eqs = eqs.replace("b : 1 (constant)", "b : 1")
        if extra_equations is not None and extra_equations[k]:
            eqs = eqs + "\n" + extra_equations[k]
        before_update = list(nspec.before_update)
        if before_update and cuba_update == "brian2" and "i_syn : 1" in eqs:
            # CubaLIF integrated jointly by Brian2's Euler (v sees the old i_syn: one more step of delay)
            eqs = eqs.replace("i_syn : 1", "di_syn/dt = (w_in*z - i_syn)/tau_syn : 1")
            before_update = []
        kwargs: dict[str, Any] = {}
        spiking = nspec.threshold is not None
        if spiking:
            kwargs["threshold"] = nspec.threshold
            kwargs["reset"] = nspec.reset
            if nspec.refractory is not None:
                kwargs["refractory"] = nspec.refractory
        g = b2.NeuronGroup(B * units, eqs, method="euler", clock=clock, namespace=ns, name=f"nl_layer{k}", **kwargs)
        for var, value in nspec.initial.items():
            setattr(g, var, value)
        with torch.no_grad():
            if layer.bias is not None:
                g.b = np.tile(layer.bias.detach().cpu().double().numpy(), B)
        spec = LayerSpec(g, act, units, spiking)
        objects.append(g)
        # (1) recurrent input from the previous step
        if layer.recurrent:
            rec = b2.Synapses(g, g, f"{wdecl}\nI_rec_post = w*{act}_pre : 1 (summed)", clock=clock,
                              name=f"nl_rec{k}")
            _connect_blocks(rec, layer.recurrent_weight, units, units, B)
            _schedule(rec.summed_updaters["I_rec_post"], orders())
            spec.rec = rec
            objects.append(rec)
        # (2) clear last step's spikes
        if spiking:
            objects.append(g.run_regularly("s = 0", when="groups", order=orders(), name=f"nl_clear{k}"))
        # (3) feed-forward input from the layer below, at this step
        ff = b2.Synapses(pre_group, g, f"{wdecl}\nI_ff_post = w*{pre_act}_pre : 1 (summed)\n{synapse_equations}", clock=clock,
                         name=f"nl_ff{k}")
        _connect_blocks(ff, layer.weight, pre_units, units, B)
        _schedule(ff.summed_updaters["I_ff_post"], orders())
        spec.ff = ff
        objects.append(ff)
        spec.noise_order = orders()  # slot for node noise (plasticity module)
        # (4) the model's operations before its state update (CubaLIF: the synaptic current, neurolearn's order)
        for j, code in enumerate(before_update):
            objects.append(g.run_regularly(code, when="groups", order=orders(), name=f"nl_pre{k}_{j}"))
        # (5) membrane update, (6) threshold, then the model's operations between threshold and reset
        _schedule(g.state_updater, orders())
        if spiking:
            _schedule(g.thresholder["spike"], orders())
        for j, code in enumerate(nspec.after_threshold):
            objects.append(g.run_regularly(code, when="groups", order=orders(), name=f"nl_post{k}_{j}"))
        # (7) monitors see the pre-reset membrane
        mon_order = orders()
        if record:
            variables = ["z"] + ([nspec.membrane] if nspec.membrane else [])
            if act not in ("z", "s") and act not in variables:
                variables.append(act)
            sm = b2.StateMonitor(g, variables, record=True, clock=clock, when="groups", order=mon_order,
                                 name=f"nl_state{k}")
            spec.monitors["state"] = sm
            objects.append(sm)
        if spiking:
            spk = b2.SpikeMonitor(g, when="groups", order=mon_order, name=f"nl_spikes{k}")
            spec.monitors["spikes"] = spk
            objects.append(spk)
            # (8) reset, which also writes s = 1
            _schedule(g.resetter["spike"], orders())
        specs.append(spec)
        pre_group, pre_act, pre_units = g, act, units
    net = b2.Network(*objects)
    return Brian2Net(net, clock, inputs, specs, T, B, dt, {"stim": stim})


def _connect_blocks(syn: Any, weight: torch.Tensor, n_in: int, n_out: int, batch: int) -> None:
    """All-to-all synapses within each sample's copy; ``w`` from the (out x in) weight matrix."""
    pre = np.arange(n_in).repeat(n_out)
    post = np.tile(np.arange(n_out), n_in)
    offs_in = (np.arange(batch) * n_in).repeat(n_in * n_out)
    offs_out = (np.arange(batch) * n_out).repeat(n_in * n_out)
    syn.connect(i=np.tile(pre, batch) + offs_in, j=np.tile(post, batch) + offs_out)
    w = weight.detach().cpu().double().numpy()
    syn.w = w[np.asarray(syn.j[:]) % n_out, np.asarray(syn.i[:]) % n_in]


def run_brian2(
    network: Network,
    x: torch.Tensor,
    *,
    target: str = "numpy",
    cuba_update: str = "neurolearn",
) -> Record:
    """Run ``network`` in Brian2 on the encoded input ``x`` (``[T, B, ...]``) and return its :class:`Record`.

    The record has the torch engine's layout (taps ``[T, B, ...]`` per layer, output
    ``[T, B, C]``) in the network's dtype.
    """
    with codegen_target(target):
        model = build_brian2(network, x, cuba_update=cuba_update)
        model.run()
    dtype = next(network.parameters()).dtype
    return model.record(x, dtype)


def read_weights(model: Brian2Net, network: Network) -> None:
    """Copy the (learned) Brian2 weights of sample copy 0 back into ``network``'s parameters."""
    with torch.no_grad():
        for spec, layer in zip(model.layers, network.layers):
            for syn, param in ((spec.ff, layer.weight), (spec.rec, layer.recurrent_weight)):
                if syn is None:
                    continue
                i, j, w = (np.asarray(a) for a in (syn.i[:], syn.j[:], syn.w[:]))
                n_out, n_in = param.shape
                first = (i < n_in) & (j < n_out)
                mat = np.zeros((n_out, n_in))
                mat[j[first], i[first]] = w[first]
                param.copy_(torch.as_tensor(mat, dtype=param.dtype))
