r"""snnTorch interop: train an existing snnTorch model with neurolearn's rules, in place,
and turn a neurolearn spiking network into a plain snnTorch model.

:func:`wrap_snntorch` reads an snnTorch model made of ``nn.Linear`` layers each followed by
``snn.Leaky``, ``snn.Synaptic`` or ``snn.RLeaky`` (explicit or hidden state: ``init_hidden``
does not matter) and returns a neurolearn :class:`~neurolearn.network.Network` whose layers
hold **the very same** ``nn.Parameter`` objects (``weight``, ``bias`` and the recurrent
weight). Any neurolearn rule trains the network and the snnTorch model changes with it.
Modules are taken in registration order (``model.modules()``), which is the execution order
of ``nn.Sequential`` and of the usual ``__init__``/``forward`` pairs; check with a test input
if your ``forward`` runs them in another order.

The dynamics map one to one (snnTorch with ``reset_delay=False``, neurolearn's forward Euler
with ``r = tau/dt``):

- ``Leaky(beta)``: ``mem = beta mem + I`` ↔ LIF with ``tau_mem = dt/(1 - beta)``;
- ``Synaptic(alpha, beta)``: ``syn = alpha syn + I; mem = beta mem + syn`` ↔ CubaLIF with
  ``tau_syn = dt/(1 - alpha)``;
- ``RLeaky(beta, all_to_all=True)``: ``+ W_rec spk[t-1]`` ↔ a recurrent LIF layer;
- ``reset_mechanism="zero"`` ↔ ``reset="value", v_reset=0``, exactly, with or without
  ``reset_delay`` for ``Leaky`` (the delayed zero reset lands before the next leak, where
  neurolearn's lands: the same spikes), with ``reset_delay=False`` for the others; a final
  ``Leaky(reset_mechanism="none")`` read through its membrane (``readout="mem"``) ↔ LI.
- ``reset_mechanism="subtract"`` (snnTorch's default) is **refused** unless asked for:
  snnTorch does not compute neurolearn's ``s[t] = H(β v[t-1] + I[t] − θ)``,
  ``v[t] = β v[t-1] + I[t] − s[t] θ``. With ``reset_delay=False`` it tests
  ``β v[t-1] + I[t] − H(v[t-1] − θ) θ > θ`` (it subtracts the threshold a second time from a
  membrane that is still above threshold after its reset), and with the default delayed reset
  the subtraction lands one step late, outside the leak. The two agree only while no membrane
  stays above threshold after a reset, which depends on the input: measured on a tutorial-style
  model, 75 of 2000 spikes and 0.6 in the readout membrane differed. Build the snnTorch model with
  ``reset_mechanism="zero"``, or pass ``subtract="neurolearn"`` to wrap it with neurolearn's
  subtraction knowingly (a warning says so; the snnTorch model's own forward then differs).
  :func:`to_snntorch` refuses subtracting layers the same way unless ``subtract="snntorch"``.

Also refused with a clear error: per-neuron ``beta``/``threshold`` that differ, ``beta >= 1``
(no leak), graded spikes, inhibition, state quantisation, non-zero recurrent biases,
diagonal (``all_to_all=False``) recurrence, conv layers. The surrogate gradient of the
wrapped network is neurolearn's (atan), which only matters for BPTT.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn as nn

from neurolearn.encoders import Encoder
from neurolearn.errors import ConfigError, ShapeError
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams, NotTranslatable

_PASSTHROUGH = (nn.Flatten, nn.Identity)


def _snn():
    try:
        import snntorch as snn
    except ImportError as exc:  # pragma: no cover - snntorch is a declared dependency
        raise ConfigError("snnTorch interop needs the `snntorch` package: pip install snntorch") from exc
    return snn


def _scalar(module: nn.Module, name: str, value) -> float:
    t = torch.as_tensor(value, dtype=torch.float64).detach().reshape(-1)
    if t.numel() == 0:
        raise ConfigError(f"{type(module).__name__}.{name} is empty")
    if not torch.all(t == t[0]):
        raise ConfigError(
            f"{type(module).__name__}.{name} differs between neurons ({t.min().item():g} .. {t.max().item():g}); "
            "neurolearn layers share one value per population"
        )
    return float(t[0])


def _tau(module: nn.Module, name: str, decay: float, dt: float) -> float:
    if not 0.0 <= decay < 1.0:
        raise ConfigError(
            f"{type(module).__name__}.{name} = {decay:g}: neurolearn's neurons leak, so the decay must lie in "
            f"[0, 1) (tau = dt/(1 - {name}))"
        )
    return dt / (1.0 - decay)


SUBTRACT_MODES = ("refuse", "neurolearn")


def _neuron_params(module: nn.Module, dt: float, readout_mem: bool, subtract: str = "refuse") -> LIFParams | LIParams:
    """neurolearn parameters equivalent to one snnTorch neuron module (exactly, or a ConfigError)."""
    snn = _snn()
    kind = type(module).__name__
    beta = _scalar(module, "beta", module.beta.clamp(0, 1))
    tau_mem = _tau(module, "beta", beta, dt)
    mech = module.reset_mechanism
    if readout_mem:
        if not isinstance(module, snn.Leaky) or isinstance(module, snn.RLeaky) or mech != "none":
            raise ConfigError(
                f"a membrane readout must be a snn.Leaky with reset_mechanism='none' (a leaky integrator); "
                f"got {kind} with reset {mech!r}"
            )
        return LIParams(tau=tau_mem, dt=dt)
    if float(torch.as_tensor(module.graded_spikes_factor).reshape(-1)[0]) != 1.0:
        raise ConfigError(f"{kind}: graded spikes (graded_spikes_factor != 1) are not supported")
    if getattr(module, "inhibition", False):
        raise ConfigError(f"{kind}: inhibition=True (winner-take-all) is not supported")
    if getattr(module, "state_quant", False):
        raise ConfigError(f"{kind}: state_quant is not supported (quantise weights with neurolearn.quantize)")
    if mech == "none":
        raise ConfigError(
            f"{kind} has reset_mechanism='none'; as a hidden layer neurolearn needs a reset. For a final layer "
            "read through its membrane, pass readout='mem'"
        )
    delayed = getattr(module, "reset_delay", True)
    if delayed and not (mech == "zero" and type(module) is snn.Leaky):
        raise ConfigError(
            f"{kind}(reset_mechanism={mech!r}) with reset_delay=True resets one step late, which neurolearn "
            "does not model; build it with reset_delay=False (snnTorch's import_from_nir does)"
        )
    if mech == "subtract":
        if subtract != "neurolearn":
            raise ConfigError(
                f"{kind}(reset_mechanism='subtract') spikes differently from neurolearn's subtraction whenever a "
                "membrane stays above threshold after its reset (snnTorch subtracts the threshold again before the "
                "next test); build it with reset_mechanism='zero' (exact), or pass subtract='neurolearn' to train it "
                "with neurolearn's subtraction knowingly"
            )
        warnings.warn(f"{kind}(reset_mechanism='subtract') is wrapped with neurolearn's subtraction "
                      "(subtract='neurolearn'): its spikes differ from the snnTorch model's own forward whenever "
                      "a membrane stays above threshold after a reset", stacklevel=3)
    threshold = _scalar(module, "threshold", module.threshold)
    reset = "subtract" if mech == "subtract" else "value"
    tau_syn = None
    if isinstance(module, snn.Synaptic):
        tau_syn = _tau(module, "alpha", _scalar(module, "alpha", module.alpha.clamp(0, 1)), dt)
    return LIFParams(tau_mem=tau_mem, dt=dt, threshold=threshold, v_reset=0.0, reset=reset, tau_syn=tau_syn)


def _collect(model: nn.Module) -> list[nn.Module]:
    """The Linear and neuron modules of ``model`` in registration order (neurons' insides skipped)."""
    snn = _snn()
    neuron_types = (snn.Leaky, snn.Synaptic, snn.RLeaky)
    found: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        for child in m.children():
            if isinstance(child, neuron_types) or isinstance(child, nn.Linear):
                found.append(child)
            elif isinstance(child, _PASSTHROUGH):
                continue
            elif isinstance(child, (snn.RSynaptic,)):
                raise ConfigError("snn.RSynaptic is not supported yet; use RLeaky or Synaptic")
            elif isinstance(child, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                raise ConfigError(f"{type(child).__name__} layers are not supported by wrap_snntorch (dense only)")
            elif len(list(child.children())) == 0:
                if any(True for _ in child.parameters(recurse=False)) or not isinstance(child, nn.Module):
                    raise ConfigError(f"module {type(child).__name__} has parameters neurolearn cannot map")
                raise ConfigError(
                    f"module {type(child).__name__} is not supported (allowed: nn.Linear, snn.Leaky, snn.Synaptic, "
                    "snn.RLeaky, nn.Flatten, nn.Identity)"
                )
            else:
                visit(child)

    if isinstance(model, neuron_types) or isinstance(model, nn.Linear):
        return [model]
    visit(model)
    return found


def wrap_snntorch(
    model: nn.Module,
    *,
    dt: float = 1e-3,
    readout: str = "spikes",
    encoder: Encoder | None = None,
    decode: str = "last",
    subtract: str = "refuse",
) -> Network:
    """A neurolearn network that shares ``model``'s parameters (see the module docstring).

    ``dt``: the step the snnTorch model stands for (``tau = dt/(1 - beta)``; only a label,
    the spikes do not depend on it). ``readout``: ``"spikes"`` (the last layer's spikes are
    the output) or ``"mem"`` (the last module is a ``Leaky(reset_mechanism='none')`` whose
    membrane is the output). ``encoder``/``decode``: as for :class:`Network`. ``subtract``:
    ``"refuse"`` (a ``reset_mechanism="subtract"`` neuron is a ConfigError: its spikes would
    differ, see the module docstring) or ``"neurolearn"`` (wrap it with neurolearn's
    subtraction, with a warning).
    """
    snn = _snn()
    if subtract not in SUBTRACT_MODES:
        raise ConfigError(f"subtract must be one of {', '.join(SUBTRACT_MODES)}, got {subtract!r}")
    if readout not in ("spikes", "mem"):
        raise ConfigError(f"readout must be 'spikes' or 'mem', got {readout!r}")
    modules = _collect(model)
    if not modules:
        raise ConfigError("the model has no nn.Linear / snn.Leaky / snn.Synaptic / snn.RLeaky modules")
    layers: list[Dense] = []
    i = 0
    while i < len(modules):
        lin = modules[i]
        if not isinstance(lin, nn.Linear):
            raise ConfigError(
                f"{type(lin).__name__} (module {i}) is not preceded by an nn.Linear; neurolearn layers are "
                "weights followed by neurons"
            )
        if layers and lin.in_features != layers[-1].out_shape[0]:
            raise ShapeError(f"shapes do not chain: nn.Linear {lin.in_features} inputs after a layer of "
                             f"{layers[-1].out_shape[0]}")
        i += 1
        neuron_mod = modules[i] if i < len(modules) and not isinstance(modules[i], nn.Linear) else None
        neuron = None
        recurrent = isinstance(neuron_mod, snn.RLeaky)
        if neuron_mod is not None:
            last = i == len(modules) - 1
            neuron = _neuron_params(neuron_mod, dt, readout_mem=(readout == "mem" and last), subtract=subtract)
            i += 1
        layer = Dense(lin.in_features, lin.out_features, neuron, bias=lin.bias is not None, recurrent=recurrent)
        layer.weight = lin.weight  # shared: training the layer trains the snnTorch model
        if lin.bias is not None:
            layer.bias = lin.bias
        if recurrent:
            rec = neuron_mod.recurrent
            if not getattr(neuron_mod, "all_to_all", True) or not isinstance(rec, nn.Linear):
                raise ConfigError("RLeaky with all_to_all=False (diagonal V) is not supported; use all_to_all=True")
            if rec.weight.shape != (lin.out_features, lin.out_features):
                raise ShapeError(f"RLeaky recurrent weight {list(rec.weight.shape)} does not fit "
                                 f"{lin.out_features} neurons")
            if rec.bias is not None and bool(torch.any(rec.bias != 0)):
                raise ConfigError(
                    "RLeaky's recurrent nn.Linear has a non-zero bias, which neurolearn's recurrent layers do not "
                    "have; zero it (rleaky.recurrent.bias.data.zero_()) and fold it into the input layer's bias"
                )
            layer.recurrent_weight = rec.weight
        layers.append(layer)
    if readout == "mem" and (layers[-1].neuron is None or layers[-1].neuron.spiking):
        raise ConfigError("readout='mem' needs the model to end with a snn.Leaky(reset_mechanism='none')")
    return Network(layers, encoder=encoder, decode=decode, dt=dt)


# --------------------------------------------------------------------------------------
# neurolearn -> snnTorch
# --------------------------------------------------------------------------------------


class SNNTorchNet(nn.Module):
    """A plain snnTorch model: ``nn.Linear`` + snnTorch neurons with explicit state.

    ``forward(x)`` takes a time-major input ``[T, B, features]`` and returns the last
    layer's output over time ``[T, B, C]`` (spikes, or the membrane of a leaky readout).
    """

    def __init__(self, linears: Sequence[nn.Linear], neurons: Sequence[nn.Module | None], readouts: Sequence[str]):
        super().__init__()
        # registered in execution order (fc0, lif0, fc1, ...) so wrap_snntorch reads it back
        for k, (lin, neu) in enumerate(zip(linears, neurons)):
            self.add_module(f"fc{k}", lin)
            if neu is not None:
                self.add_module(f"lif{k}", neu)
        self.readouts = list(readouts)  # "spikes", "mem" or "linear" per layer

    @property
    def linears(self) -> list[nn.Linear]:
        return [getattr(self, f"fc{k}") for k in range(len(self.readouts))]

    @property
    def neurons(self) -> list[nn.Module]:
        return [getattr(self, f"lif{k}", nn.Identity()) for k in range(len(self.readouts))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        snn = _snn()
        steps = x.shape[0]
        state: list[tuple | None] = [None] * len(self.linears)
        outs = []
        for t in range(steps):
            h = x[t].flatten(1)
            for k, (lin, neu) in enumerate(zip(self.linears, self.neurons)):
                cur = lin(h)
                if self.readouts[k] == "linear":
                    h = cur
                    continue
                st = state[k]
                if isinstance(neu, snn.RLeaky):
                    spk, mem = st if st is not None else (torch.zeros_like(cur), torch.zeros_like(cur))
                    spk, mem = neu(cur, spk, mem)
                    state[k] = (spk, mem)
                elif isinstance(neu, snn.Synaptic):
                    syn, mem = st if st is not None else (torch.zeros_like(cur), torch.zeros_like(cur))
                    spk, syn, mem = neu(cur, syn, mem)
                    state[k] = (syn, mem)
                else:
                    mem = st[0] if st is not None else torch.zeros_like(cur)
                    spk, mem = neu(cur, mem)
                    state[k] = (mem,)
                h = mem if self.readouts[k] == "mem" else spk
            outs.append(h)
        return torch.stack(outs)


def to_snntorch(net: Network, *, subtract: str = "refuse") -> SNNTorchNet:
    """A copy of a neurolearn spiking network as an snnTorch model (neurons with ``reset_delay=False``).

    A layer that resets by subtraction is refused (``subtract="refuse"``): snnTorch's subtraction
    spikes differently once a membrane stays above threshold after a reset (module docstring);
    ``subtract="snntorch"`` converts it to snnTorch's ``"subtract"`` knowingly, with a warning.

    Needs what snnTorch can express: dense layers; LIF/CubaLIF with ``v_leak = 0``, input
    gain ``r (1 - beta) = 1`` (the default ``r = tau/dt``; CubaLIF also ``w_in = tau_syn/dt``)
    and reset by subtraction or to ``v_reset = 0``; LI readouts with ``v_leak = 0`` and unit
    gain (as ``Leaky(reset_mechanism='none')`` read through its membrane).
    """
    from neurolearn.export.nir import merged

    snn = _snn()
    if subtract not in ("refuse", "snntorch"):
        raise ConfigError(f"subtract must be 'refuse' or 'snntorch', got {subtract!r}")
    net = merged(net)  # decorrelation folded into the weights
    linears, neurons, readouts = [], [], []
    for k, layer in enumerate(net.layers):
        if not isinstance(layer, Dense):
            raise ConfigError(f"layer {k} is a {type(layer).__name__}; to_snntorch converts dense layers only")
        weight = layer.weight.detach()
        lin = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(weight)
            if layer.bias is not None:
                lin.bias.copy_(layer.bias.detach())
        p = layer.neuron
        if p is None:
            if layer.recurrent:
                raise ConfigError(f"layer {k} is recurrent without neurons; not convertible")
            linears.append(lin), neurons.append(None), readouts.append("linear")
            continue
        if getattr(p, "reset", None) == "subtract" and p.spiking:
            if subtract != "snntorch":
                raise ConfigError(
                    f"layer {k} resets by subtraction, which snnTorch computes differently (its spikes differ once a "
                    "membrane stays above threshold after a reset); train with reset = \"value\" (v_reset = 0), "
                    "or pass subtract=\"snntorch\" to convert it knowingly")
            warnings.warn(f"layer {k} resets by subtraction and becomes snnTorch's 'subtract': spikes differ once a "
                          "membrane stays above threshold after a reset", stacklevel=2)
        try:
            neu, kind = p.to_snntorch(snn, k, layer.recurrent, layer.units)
        except NotTranslatable as exc:
            raise ConfigError(str(exc)) from None
        if layer.recurrent:
            with torch.no_grad():
                neu.recurrent.weight.copy_(layer.recurrent_weight.detach())
                if neu.recurrent.bias is not None:
                    neu.recurrent.bias.zero_()
        readouts.append(kind)
        linears.append(lin)
        neurons.append(neu)
    return SNNTorchNet(linears, neurons, readouts)
