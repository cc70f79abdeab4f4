r"""Local learning rules as on-synapse plasticity inside Brian2.

The network (dense, feed-forward, static rate hidden layers, linear readout) is translated by
:func:`neurolearn.backends.brian2.build_brian2` and trained *inside* the simulation: every
weight change is Brian2 code that runs on the synapse and reads only the synapse's pre-synaptic
neuron, its post-synaptic neuron and a broadcast signal. Brian2 has no batch dimension, so
trials (samples) follow one another in simulated time: one long ``Network.run`` per epoch,
the samples streamed in through a ``TimedArray``, plain SGD with one update per trial
(online learning, batch size 1).

**Activity-based node perturbation (ANP)** — each trial is two time steps: a clean step
(``noisy = 0``) and a noisy step (``noisy = 1``) on the same sample.

- node noise: a stochastic current ``noise = sigma * randn() * noisy`` added to every
  neuron's pre-activation ``z`` (Brian2's own random numbers, seeded by ``seed``);
- per neuron: ``z_clean`` and ``a_clean`` are stored at the clean step; at the noisy step
  ``dz = z - z_clean`` (the activity difference, including noise from earlier layers);
- per synapse, the eligibility ``elig += noisy * dz_post * a_clean_pre`` (a synaptic variable);
- broadcast: a ``network_operation`` reads the readout at both steps and writes, once per
  trial, the shared variable ``g = c * (L_noisy - L_clean) / sum_k ||dz_k||^2`` (``c = N``,
  the number of perturbed units; ``L`` the cross-entropy of the softmax readout) into every
  layer;
- plasticity: ``w -= lr * g_post * elig; elig = 0`` and ``b -= lr * g * dz`` at the end of the trial.

Needs: pre (clean activity), post (own activity difference), a broadcast scalar. The
normaliser ``sum ||dz||^2`` is network-wide but enters only the broadcast scalar.

**DRTP** (direct random target projection) — one step per trial. A label group (one-hot,
from a ``TimedArray``) projects through fixed random synapses ``B`` onto every hidden layer:
``proj = sum_c B_cj y_c`` (a ``(summed)`` variable), the per-neuron third factor. Hidden:
``delta = proj * f'(z)``; readout: ``delta = sigmoid(z) - y`` (its own label through a
one-to-one synapse; sigmoid + binary cross-entropy, Frenkel et al.'s default). Plasticity
``w -= lr * delta_post * a_pre``, ``b -= lr * delta``. Needs: pre, post, a broadcast vector.

**Decorrelation** (anti-Hebbian lateral plasticity) — an input group ``x`` drives a group
``x~ = R x`` through synapses ``R`` (initialised to the identity). The copi rule
``dR = -lr * offdiag(x~ x~^T) R`` becomes, for the synapse ``k -> j``,
``R_jk -= lr * x~_j * (q_k - x~_j R_jk)`` with ``q_k = sum_i R_ik x~_i`` the decorrelated
activity fed back to the input neuron through the same synapses (a ``(summed)`` variable
on the pre-synaptic side): anti-Hebbian between the lateral unit ``j`` and the others.
Needs: pre, post and the synapse's own backward summed signal; no broadcast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from neurolearn.backends.brian2 import Brian2Net, build_brian2, codegen_target, import_brian2, read_weights
from neurolearn.errors import ConfigError, unknown_name
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import ACTIVATIONS


def rate_derivative_expression(name: str, var: str, negative_slope: float = 0.01) -> str:
    """The Brian2 expression of ``f'(var)`` for neurolearn's rate non-linearities."""
    if name == "identity":
        return "1.0"
    if name == "tanh":
        return f"(1.0 - tanh({var})**2)"
    if name == "relu":
        return f"int({var} > 0)"
    if name == "leaky_relu":
        return f"(int({var} > 0) + {negative_slope!r}*int({var} <= 0))"
    if name == "sigmoid":
        return f"(exp(-{var})/(1.0 + exp(-{var}))**2)"
    raise unknown_name("activation", name, ACTIVATIONS)


def check_plastic_network(network: Network) -> None:
    """The plasticity module trains dense feed-forward nets: static rate hidden layers, linear readout."""
    layers = list(network.layers)
    for k, layer in enumerate(layers):
        if not isinstance(layer, Dense) or layer.recurrent or layer.decorrelation is not None:
            raise ConfigError(f"layer {k}: on-synapse plasticity in Brian2 supports dense feed-forward layers only")
        last = k == len(layers) - 1
        p = layer.neuron
        if last and p is not None:
            raise ConfigError("the last layer must be a linear readout (neuron = none) for the Brian2 plasticity rules")
        if not last and (p is None or p.static_activation is None):
            raise ConfigError(f"layer {k}: hidden layers must be static rate units for the Brian2 plasticity rules")
        if layer.bias is None:
            raise ConfigError(f"layer {k} has no bias; the plasticity rules learn biases")


@dataclass
class PlasticityLog:
    """What a training run inside Brian2 produced: per-epoch figures and timings."""

    rule: str
    epoch_train_acc: list[float] = field(default_factory=list)
    epoch_train_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_eval: list[Any] = field(default_factory=list)
    steps: int = 0


def _stream(x: np.ndarray, y: np.ndarray, order: np.ndarray, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """Samples in ``order``, each held for ``repeat`` steps: ``[S * repeat, d]`` and labels ``[S * repeat]``."""
    return np.repeat(x[order], repeat, axis=0), np.repeat(y[order], repeat)


def _softmax_ce(z: np.ndarray, label: int) -> float:
    z = z - z.max()
    return float(np.log(np.exp(z).sum()) - z[label])


def anp_in_brian2(
    network: Network,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    sigma: float = 1e-3,
    seed: int = 0,
    target: str = "numpy",
    evaluate: Callable[[Network], Any] | None = None,
) -> PlasticityLog:
    """Train ``network`` (in place) by activity-based node perturbation inside Brian2.

    ``x`` is ``[N, features]``, ``y`` ``[N]`` class indices. Samples are shuffled each epoch
    with ``numpy.random.default_rng(seed)`` (the same order :func:`epoch_orders` gives a
    reference implementation). ``evaluate(network)`` runs after each epoch on the learned
    weights copied back into ``network``.
    """
    b2 = import_brian2()
    check_plastic_network(network)
    xs, ys = x.detach().cpu().double().numpy().reshape(len(x), -1), y.cpu().numpy().astype(int)
    n_layers = len(network.layers)
    units = sum(layer.units for layer in network.layers)
    orders = epoch_orders(len(xs), epochs, seed)
    # the stream of all epochs: clean, noisy, clean, noisy, ...
    stream_x, stream_y = _stream(xs, ys, np.concatenate(orders), 2)
    steps_per_epoch = 2 * len(xs)
    extra = ["z_clean : 1\na_clean : 1\ndz : 1\ng : 1 (shared)"] * n_layers
    log = PlasticityLog("anp")
    with codegen_target(target):
        b2.seed(seed)
        model = build_brian2(network, torch.as_tensor(stream_x).unsqueeze(1), record=False, plastic=True,
                             extra_equations=extra, synapse_equations="elig : 1")
        noisy = b2.TimedArray(np.tile([0.0, 1.0], len(stream_x) // 2), dt=model.clock.dt)
        model.namespace.update(noisy_t=noisy, lr=lr, sigma=sigma)
        objs: list[Any] = []
        for k, spec in enumerate(model.layers):
            g = spec.group
            objs.append(g.run_regularly("noise = sigma*randn()*noisy_t(t)", when="groups", order=spec.noise_order,
                                        name=f"nl_anp_noise{k}"))
            act = "z" if spec.act == "z" else spec.act
            objs.append(g.run_regularly(
                f"dz = (z - z_clean)*noisy_t(t)\n"
                f"z_clean = z*(1 - noisy_t(t)) + z_clean*noisy_t(t)\n"
                f"a_clean = {act}*(1 - noisy_t(t)) + a_clean*noisy_t(t)",
                when="end", order=0, name=f"nl_anp_dz{k}"))
            pre_clean = "x" if k == 0 else "a_clean"
            objs.append(spec.ff.run_regularly(f"elig += noisy_t(t)*dz_post*{pre_clean}_pre", when="end", order=1,
                                              name=f"nl_anp_elig{k}"))
            objs.append(spec.ff.run_regularly("w -= lr*g_post*elig\nelig = elig*(1 - noisy_t(t))", when="end", order=3,
                                              name=f"nl_anp_w{k}"))
            objs.append(g.run_regularly("b -= lr*g*dz", when="end", order=4, name=f"nl_anp_b{k}"))
        out_group = model.layers[-1].group
        groups = [spec.group for spec in model.layers]
        state = {"z_clean": None, "loss": 0.0, "correct": 0, "trials": 0, "step": 0}

        def broadcast():
            step = state["step"]  # the operation runs once per time step
            state["step"] += 1
            z = np.asarray(out_group.z[:])
            label = int(stream_y[step])
            if step % 2 == 0:  # clean step: remember the readout, no update this step
                state["z_clean"] = z.copy()
                for grp in groups:
                    grp.g = 0.0
                return
            loss_clean = _softmax_ce(state["z_clean"], label)
            d_loss = _softmax_ce(z, label) - loss_clean
            norm = sum(float(np.sum(np.asarray(grp.dz[:]) ** 2)) for grp in groups)
            value = units * d_loss / norm if norm > 0 else 0.0
            for grp in groups:  # the broadcast scalar, written once per trial
                grp.g = value
            state["loss"] += loss_clean
            state["correct"] += int(np.argmax(state["z_clean"]) == label)
            state["trials"] += 1

        objs.append(b2.NetworkOperation(broadcast, clock=model.clock, when="end", order=2, name="nl_anp_broadcast"))
        model.net.add(*objs)
        _train_epochs(model, network, epochs, steps_per_epoch, state, log, evaluate)
    return log


def _train_epochs(model: Brian2Net, network: Network, epochs: int, steps_per_epoch: int, state: dict,
                  log: PlasticityLog, evaluate: Callable[[Network], Any] | None) -> None:
    b2 = import_brian2()
    for _ in range(epochs):
        state.update(loss=0.0, correct=0, trials=0)
        start = time.perf_counter()
        model.net.run(steps_per_epoch * model.dt * b2.second, namespace=model.namespace)
        log.epoch_seconds.append(time.perf_counter() - start)
        log.steps += steps_per_epoch
        log.epoch_train_acc.append(state["correct"] / max(state["trials"], 1))
        log.epoch_train_loss.append(state["loss"] / max(state["trials"], 1))
        read_weights(model, network)
        read_biases(model, network)
        if evaluate is not None:
            log.epoch_eval.append(evaluate(network))


def read_biases(model: Brian2Net, network: Network) -> None:
    """Copy the learned biases of sample copy 0 back into ``network``."""
    with torch.no_grad():
        for spec, layer in zip(model.layers, network.layers):
            if layer.bias is not None:
                layer.bias.copy_(torch.as_tensor(np.asarray(spec.group.b[: spec.units]), dtype=layer.bias.dtype))


def epoch_orders(n: int, epochs: int, seed: int) -> list[np.ndarray]:
    """The sample order of every epoch (shared by the Brian2 rules and their references)."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(epochs)]


def drtp_feedback(network: Network, classes: int, seed: int = 0, scale: float = 1.0) -> list[np.ndarray]:
    """Fixed random projections ``B_k`` (``[classes, units_k]``) for every hidden layer, Kaiming-uniform."""
    rng = np.random.default_rng(seed + 7919)
    mats = []
    for layer in list(network.layers)[:-1]:
        bound = scale * np.sqrt(6.0 / classes)
        mats.append(rng.uniform(-bound, bound, size=(classes, layer.units)))
    return mats


def drtp_in_brian2(
    network: Network,
    x: torch.Tensor,
    y: torch.Tensor,
    feedback: Sequence[np.ndarray],
    *,
    epochs: int,
    lr: float,
    seed: int = 0,
    target: str = "numpy",
    evaluate: Callable[[Network], Any] | None = None,
) -> PlasticityLog:
    """Train ``network`` (in place) by DRTP inside Brian2 (see module docstring); one step per trial."""
    b2 = import_brian2()
    check_plastic_network(network)
    xs, ys = x.detach().cpu().double().numpy().reshape(len(x), -1), y.cpu().numpy().astype(int)
    classes = network.output_size
    layers = list(network.layers)
    if len(feedback) != len(layers) - 1:
        raise ConfigError(f"DRTP needs one feedback matrix per hidden layer ({len(layers) - 1}), got {len(feedback)}")
    orders = epoch_orders(len(xs), epochs, seed)
    stream_x, stream_y = _stream(xs, ys, np.concatenate(orders), 1)
    extra = []
    for k, layer in enumerate(layers):
        if k < len(layers) - 1:
            p = layer.neuron
            extra.append("proj : 1\ndelta = proj*" + rate_derivative_expression(p.activation, "z", p.negative_slope)
                         + " : 1")
        else:
            extra.append("ylab : 1\ndelta = 1.0/(1.0 + exp(-z)) - ylab : 1")
    log = PlasticityLog("drtp")
    with codegen_target(target):
        model = build_brian2(network, torch.as_tensor(stream_x).unsqueeze(1), record=False, plastic=True,
                             extra_equations=extra)
        onehot = np.eye(classes)[stream_y]
        model.namespace.update(label_t=b2.TimedArray(onehot, dt=model.clock.dt), lr=lr)
        labels = b2.NeuronGroup(classes, "y = label_t(t, i) : 1", clock=model.clock, name="nl_labels")
        objs: list[Any] = [labels]
        for k, spec in enumerate(model.layers):
            if k < len(model.layers) - 1:
                fb = b2.Synapses(labels, spec.group, "Bfb : 1 (constant)\nproj_post = Bfb*y_pre : 1 (summed)",
                                 clock=model.clock, name=f"nl_drtp_fb{k}")
                fb.connect()
                fb.Bfb = np.asarray(feedback[k])[np.asarray(fb.i[:]), np.asarray(fb.j[:])]
                summed = fb.summed_updaters["proj_post"]
            else:
                fb = b2.Synapses(labels, spec.group, "ylab_post = y_pre : 1 (summed)", clock=model.clock,
                                 name="nl_drtp_label")
                fb.connect(j="i")
                summed = fb.summed_updaters["ylab_post"]
            summed.when, summed.order = "end", 0
            objs.append(fb)
            pre = "x" if k == 0 else model.layers[k - 1].act
            objs.append(spec.ff.run_regularly(f"w -= lr*delta_post*{pre}_pre", when="end", order=1,
                                              name=f"nl_drtp_w{k}"))
            objs.append(spec.group.run_regularly("b -= lr*delta", when="end", order=2, name=f"nl_drtp_b{k}"))
        out_group = model.layers[-1].group
        state = {"loss": 0.0, "correct": 0, "trials": 0, "step": 0}

        def tally():  # statistics only; the rule itself needs no broadcast scalar
            step = state["step"]
            state["step"] += 1
            z = np.asarray(out_group.z[:])
            state["loss"] += _softmax_ce(z, int(stream_y[step]))
            state["correct"] += int(np.argmax(z) == stream_y[step])
            state["trials"] += 1

        objs.append(b2.NetworkOperation(tally, clock=model.clock, when="end", order=0, name="nl_drtp_tally"))
        model.net.add(*objs)
        _train_epochs(model, network, epochs, len(xs), state, log, evaluate)
    return log


def decorrelation_in_brian2(
    x: np.ndarray,
    *,
    lr: float,
    epochs: int = 1,
    seed: int = 0,
    target: str = "numpy",
    dt: float = 1e-3,
) -> tuple[np.ndarray, list[float]]:
    """Learn a decorrelating matrix ``R`` (``x~ = R x``) by anti-Hebbian plasticity inside Brian2.

    One sample per step (online, ``dR = -lr * offdiag(x~ x~^T) R``). Returns ``R`` and the
    decorrelation loss ``mean_offdiag(C^2)`` of ``x~`` over the data after every epoch
    (``C`` the sample correlation matrix ``<x~ x~^T>``, diagonal excluded).
    """
    b2 = import_brian2()
    xs = np.asarray(x, dtype=float).reshape(len(x), -1)
    d = xs.shape[1]
    orders = epoch_orders(len(xs), epochs, seed)
    losses = []
    with codegen_target(target):
        clock = b2.Clock(dt=dt * b2.second)
        stim = b2.TimedArray(xs[np.concatenate(orders)], dt=dt * b2.second)
        inp = b2.NeuronGroup(d, "x = stim(t, i) : 1\nq : 1", clock=clock, name="nl_decor_in")
        out = b2.NeuronGroup(d, "xt : 1", clock=clock, name="nl_decor_out")
        syn = b2.Synapses(inp, out, "R : 1\nxt_post = R*x_pre : 1 (summed)\nq_pre = R*xt_post : 1 (summed)",
                          clock=clock, name="nl_decor_R")
        syn.connect()
        syn.R = (np.asarray(syn.i[:]) == np.asarray(syn.j[:])).astype(float)
        syn.summed_updaters["xt_post"].when, syn.summed_updaters["xt_post"].order = "groups", 1
        syn.summed_updaters["q_pre"].when, syn.summed_updaters["q_pre"].order = "groups", 2
        plast = syn.run_regularly("R -= lr*xt_post*(q_pre - xt_post*R)", when="groups", order=3, name="nl_decor_dR")
        net = b2.Network(inp, out, syn, plast)
        ns = {"stim": stim, "lr": lr}
        for _ in range(epochs):
            net.run(len(xs) * dt * b2.second, namespace=ns)
            mat = np.zeros((d, d))
            mat[np.asarray(syn.j[:]), np.asarray(syn.i[:])] = np.asarray(syn.R[:])
            losses.append(decorrelation_loss(xs @ mat.T))
    return mat, losses


def decorrelation_loss(xt: np.ndarray) -> float:
    """Mean squared off-diagonal entry of ``<x~ x~^T>`` over the samples."""
    c = xt.T @ xt / len(xt)
    off = c - np.diag(np.diag(c))
    d = c.shape[0]
    return float((off**2).sum() / (d * d))
