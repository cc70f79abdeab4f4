r"""Export spiking networks to NIR (the Neuromorphic Intermediate Representation) and back.

NIR describes neurons in continuous time, ``tau dv/dt = (v_leak - v) + r I``, and stores no
time step, no units and no reset mode; every reader discretises with its own ``dt``. The
graphs written here are made so that a reader that discretises with **forward Euler at the
step ``dt`` named in the metadata** reproduces neurolearn's spikes exactly:

.. math::  v[t] = (1 - dt/\tau)\, v[t-1] + (dt/\tau)\,(v_{leak} + r\, I[t])

    i[t] = (1 - dt/\tau_{syn})\, i[t-1] + (dt/\tau_{syn})\, w_{in}\, x[t]      (CubaLIF)

    s[t] = H(v[t] - v_{threshold}),\ \text{then}\ v[t] \leftarrow v_{reset}\ \text{where}\ s[t] = 1

and a recurrent edge ``lif -> rec -> lif`` carries the spikes of the previous step.

**Time scale.** neurolearn's layers hold ``beta = 1 - dt_model/tau``. The graph is written
for a step ``dt`` (default :data:`NIR_DT` = 1e-4 s, the step snnTorch hard-codes in
``import_from_nir``) by rescaling every time constant, ``tau_written = tau * dt / dt_model``,
which keeps ``beta``, ``r = tau/dt`` (input adds 1:1 to the membrane) and ``w_in = tau_syn/dt``
unchanged. snnTorch (``beta = 1 - 1e-4/tau``) thus reproduces the spikes without reading the
metadata. Pass ``dt=net.dt`` to write the model's own time constants (physical seconds)
instead; the metadata always records ``dt``, the model's ``dt`` and the scale between them,
so :func:`from_nir` restores the original time constants.

**What NIR cannot express** is refused with a :class:`NIRError` that says what to change:
rate units (tanh, relu, ...), max pooling (NIR has AvgPool2d and SumPool2d only), recurrent layers
without spiking neurons, and reset by subtraction (NIR's ``v_reset`` means reset to a value).
``subtract="as_value"`` exports a subtracting layer as reset-to-value anyway, with a
warning, for hardware that only has reset-to-value; its spikes then differ.

Graph layout (node names): ``input -> fc0 -> lif0 -> fc1 -> li1 -> output`` with ``rec{k}``
(a ``Linear``) in a cycle ``lif{k} -> rec{k} -> lif{k}`` for recurrent layers; CubaLIF
layers are named ``cubalif{k}``. Spiking conv layers: ``conv{k} (Conv2d) -> lif{k} -> pool{k}
(AvgPool2d | SumPool2d)``, the Input node has the image shape ``[C, H, W]``, per-neuron parameters
have the feature maps' shape, and a dense layer after a conv gets ``flat{k}`` (Flatten over the
sample's dimensions, ``start_dim = 0``) before its ``fc{k}``. Decorrelation is merged into the weights
(``W R``).

Import (:func:`from_nir`) reads the same subset (Input, Output, Affine, Linear, LIF, CubaLIF,
LI, Flatten, Conv2d followed by its neurons and an optional AvgPool2d/SumPool2d, and nested sub-graphs as snnTorch writes them for ``RLeaky``/``RSynaptic``) so
that graphs written by snnTorch, Norse or Sinabs can be trained further. Without neurolearn
metadata the step is ``dt`` if given, else :data:`NIR_DT` (snnTorch's convention; Norse
writes ``r = 1`` and tau in seconds: pass the ``dt`` you simulate it with).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurolearn.encoders import Encoder
from neurolearn.errors import ConfigError, NIRError, ShapeError
from neurolearn.layers import Conv2d, Dense
from neurolearn.network import DECODES, Network
from neurolearn.neurons import LIFParams, LIParams, NotTranslatable

NIR_DT = 1e-4
"""Default step the graph is written for: snnTorch's hard-coded ``dt`` (seconds)."""

FORMAT = "neurolearn-nir-1"
CONVENTION = (
    "forward Euler at step dt: v[t] = (1 - dt/tau) v[t-1] + (dt/tau) (v_leak + r I[t]); "
    "CubaLIF i[t] = (1 - dt/tau_syn) i[t-1] + (dt/tau_syn) w_in x[t] drives I; "
    "spike s[t] = H(v[t] - v_threshold) and reset v = v_reset in the same step; "
    "recurrent edges carry the previous step's spikes; r = tau/dt means input adds 1:1 to v"
)
SUPPORTED_NODES = ("Input", "Output", "Affine", "Linear", "LIF", "CubaLIF", "LI", "Flatten", "NIRGraph", "Conv2d",
                   "AvgPool2d", "SumPool2d")


WRITERS = ("auto", "neurolearn", "snntorch", "spikingjelly", "norse", "sinabs", "rockpool")
"""Libraries whose NIR files :func:`from_nir` knows the conventions of (``writer=``)."""


def _nir():
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - nir is a declared dependency
        raise NIRError("NIR export needs the `nir` package: pip install nir") from exc
    check_nir_version(nir)
    return nir


def check_nir_version(nir: Any) -> None:
    """Refuse, in one line, a ``nir`` package whose LIF has no ``v_reset`` (nir 1.0.4 and older).

    Those versions mean reset by subtraction and cannot hold reset-to-value graphs: neurolearn can
    neither write nor read with them (it used to fail with a raw TypeError about ``v_reset``).
    """
    import dataclasses

    lif = getattr(nir, "LIF", None)
    names = {f.name for f in dataclasses.fields(lif)} if lif is not None and dataclasses.is_dataclass(lif) else set()
    if "v_reset" not in names:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("nir")
        except PackageNotFoundError:  # pragma: no cover
            v = "unknown"
        raise NIRError(
            f"the installed nir {v} has no v_reset in its LIF node (NIR up to 1.0.4 resets by subtraction), so "
            "neurolearn can neither write nor read its graphs with it: install nir >= 1.0.5 (tested: 1.0.8, "
            "pip install 'nir==1.0.8'); readers that pin nir <= 1.0.4 (Sinabs, Rockpool) belong in a second "
            "environment (docs/results/nir.md)")


# ======================================================================================
# Export
# ======================================================================================


def merged(net: Network) -> Network:
    """``net`` with every decorrelation folded into its weights (``W R``, ``b - W mu``): same outputs.

    Uses :func:`neurolearn.decorrelation.merge_decorrelation`; returns ``net`` itself when no
    layer decorrelates.
    """
    if all(getattr(layer, "decorrelation", None) is None for layer in net.layers):
        return net
    from neurolearn.decorrelation import merge_decorrelation

    return merge_decorrelation(net)


def _check_exportable(net: Network) -> None:
    for k, layer in enumerate(net.layers):
        if isinstance(layer, Conv2d):
            if not layer.spiking:
                raise NIRError(f"layer {k} is a conv layer without spiking neurons; NIR export is for spiking conv "
                               "layers (neuron = lif / cuba_lif)")
            if layer.pool > 1 and layer.pool_mode == "max":
                raise NIRError(f"layer {k} max-pools its spikes; NIR has AvgPool2d and SumPool2d but no max "
                               "pooling: train it with pool_mode = \"avg\" (or \"sum\")")
        elif not isinstance(layer, Dense):
            raise NIRError(f"layer {k} is a {type(layer).__name__} layer; NIR export supports dense, recurrent and "
                           "conv2d layers")
        p = layer.neuron
        if p is not None:
            try:  # the neuron model says whether NIR has a node for it (the reset is checked at export)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    p.to_nir(_nir(), 1, 1.0, k, subtract="as_value")
            except NotTranslatable as exc:
                raise NIRError(str(exc)) from None
        if layer.recurrent and not layer.spiking:
            raise NIRError(f"layer {k} is recurrent without spiking neurons; only recurrent spiking layers "
                           "are exported")
    if not net.spiking:
        raise NIRError("the network has no spiking layer; NIR export is for spiking networks")


def to_nir(net: Network, *, dt: float | None = None, subtract: str = "refuse", reader: str = "neurolearn"):
    """A ``nir.NIRGraph`` of a spiking network (see the module docstring for the convention).

    ``reader``: the library the graph is written for (:data:`~neurolearn.export.readers.READERS`):
    ``"neurolearn"`` (default, the most portable form: also exact in snnTorch and SpikingJelly for
    what they can represent) or a library whose conventions the graph is rewritten to
    (:mod:`neurolearn.export.readers`); what it cannot represent raises :class:`NIRError`.
    ``dt``: the step the graph is written for (default: the reader's own, 1e-4 s; Norse 1e-3 s);
    time constants are rescaled by ``dt/net.dt``.
    ``subtract``: ``"refuse"`` (default) or ``"as_value"`` for layers that reset by subtraction.
    """
    from neurolearn.export.readers import adapt
    from neurolearn.export.readers import reader as reader_of

    nir = _nir()
    rd = reader_of(reader)
    if dt is None:
        dt = rd.dt
    elif dt != rd.dt and rd.name != "neurolearn":
        from dataclasses import replace

        rd = replace(rd, dt=float(dt))
    if subtract not in ("refuse", "as_value"):
        raise ConfigError(f"subtract must be 'refuse' or 'as_value', got {subtract!r}")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ConfigError(f"dt must be a positive number of seconds, got {dt!r}")
    _check_exportable(net)
    net = merged(net)
    scale = dt / net.dt
    conv = any(isinstance(layer, Conv2d) for layer in net.layers)
    in_shape = [int(d) for d in net.input_shape] if conv else [math.prod(net.input_shape)]
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array(in_shape))}
    edges: list[tuple[str, str]] = []
    prev = "input"
    shape = tuple(in_shape)
    for k, layer in enumerate(net.layers):
        w = layer.weight.detach().cpu().numpy().astype(np.float32)
        fc = f"fc{k}"
        if isinstance(layer, Dense) and len(shape) > 1:  # a dense layer after a conv: flatten [C, H, W]
            nodes[f"flat{k}"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
            edges.append((prev, f"flat{k}"))
            prev = f"flat{k}"
        if isinstance(layer, Conv2d):
            fc = f"conv{k}"
            b = (layer.bias.detach().cpu().numpy() if layer.bias is not None
                 else np.zeros(w.shape[0])).astype(np.float32)
            nodes[fc] = nir.Conv2d(input_shape=tuple(shape[1:]), weight=w, stride=layer.stride,
                                   padding=layer.padding, dilation=1, groups=1, bias=b)
        elif layer.bias is not None:
            nodes[fc] = nir.Affine(weight=w, bias=layer.bias.detach().cpu().numpy().astype(np.float32))
        else:
            nodes[fc] = nir.Linear(weight=w)
        edges.append((prev, fc))
        prev = fc
        shape = tuple(layer.out_shape)
        if layer.neuron is None:
            continue
        p = layer.neuron
        if abs(p.dt - net.dt) > 1e-12 * net.dt:
            raise NIRError(f"layer {k} has its own dt = {p.dt:g} s, different from the network's {net.dt:g} s; "
                           "NIR graphs have one time step")
        try:
            name, node = p.to_nir(nir, layer.units, scale, k, subtract)
        except NotTranslatable as exc:
            raise NIRError(str(exc)) from None
        if isinstance(layer, Conv2d):  # per-neuron parameters in the shape of the feature maps
            node = _reshaped(node, layer.pre_features_shape)
        nodes[name] = node
        edges.append((prev, name))
        if isinstance(layer, Conv2d) and layer.pool > 1:
            pool = (nir.AvgPool2d if layer.pool_mode == "avg" else nir.SumPool2d)(
                kernel_size=np.array([layer.pool] * 2), stride=np.array([layer.pool] * 2), padding=np.array([0, 0]))
            nodes[f"pool{k}"] = pool
            edges.append((name, f"pool{k}"))
            name = f"pool{k}"
        if layer.recurrent:
            rec = f"rec{k}"
            nodes[rec] = nir.Linear(weight=layer.recurrent_weight.detach().cpu().numpy().astype(np.float32))
            edges += [(name, rec), (rec, name)]
        prev = name
    nodes["output"] = nir.Output(output_type=np.array([net.output_size]))
    edges.append((prev, "output"))
    nodes, reader_meta = adapt(nodes, edges, rd, nir, net.dt)
    enc = net.encoder
    metadata = {
        "format": FORMAT,
        "dt": float(dt),
        "discretisation": CONVENTION,
        "reset": "to value (v_reset), same step as the spike",
        "neurolearn.model_dt": float(net.dt),
        "neurolearn.time_scale": float(scale),
        "neurolearn.decode": net.decode,
        "neurolearn.encoder": json.dumps({f: getattr(enc, f) for f in ("kind", "steps", "gain", "threshold")}),
        "neurolearn.reader": rd.name,
        **reader_meta,
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _reshaped(node: Any, shape: tuple[int, ...]) -> Any:
    """A neuron node whose per-neuron parameter arrays have ``shape`` (a conv layer's feature maps)."""
    import dataclasses

    changes = {f.name: np.asarray(getattr(node, f.name)).reshape(shape) for f in dataclasses.fields(node)
               if isinstance(getattr(node, f.name), np.ndarray) and getattr(node, f.name).size == math.prod(shape)}
    return dataclasses.replace(node, **changes)


def write(path: str | Path, net: Network, **kwargs: Any) -> None:
    """Export ``net`` (see :func:`to_nir` for the options) to a ``.nir`` (HDF5) file."""
    write_graph(path, to_nir(net, **kwargs))


def write_graph(path: str | Path, graph: Any) -> None:
    """Write a ``nir.NIRGraph`` to ``path`` atomically (beside the target, then rename)."""
    import os
    import tempfile

    nir = _nir()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:  # never a half-written .nir
        nir.write(tmp, graph)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ======================================================================================
# Import
# ======================================================================================


def read(path: str | Path, **kwargs: Any) -> Network:
    """Read a ``.nir`` file into a neurolearn network (see :func:`from_nir`)."""
    return from_nir(read_graph(path), **kwargs)


def read_graph(path: str | Path):
    """``nir.read`` with one clear line for every file it cannot turn into a graph.

    A file HDF5 cannot open or read (missing, truncated, flipped bytes, not HDF5) is "corrupt";
    an HDF5 file whose content is not a NIR graph (unknown node type, missing fields, NIR's type
    check failing) is "not a valid NIR graph: reason".
    """
    nir = _nir()
    import h5py

    path = Path(path)
    if not path.is_file():
        raise NIRError(f"no NIR file at {path}")

    def corrupt(exc: BaseException) -> NIRError:
        return NIRError(f"{path} is not a readable NIR graph: the file is corrupt, truncated or not NIR "
                        f"({type(exc).__name__}: {_first_line(exc)}); export it again")

    try:
        with h5py.File(path, "r"):
            pass
    except Exception as exc:  # h5py raises OSError, and other kinds for damaged superblocks
        raise corrupt(exc) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's casting warnings on nonsense content
            return nir.read(path)
    except OSError as exc:  # HDF5 could open the file but not read a dataset: damaged
        raise corrupt(exc) from None
    except Exception as exc:  # nir raises many kinds for content that is not a graph
        msg = _first_line(exc)
        if isinstance(exc, TypeError) and "unexpected keyword" in msg:
            raise NIRError(
                f"{path} was written by a different NIR version than the installed one ({msg}); "
                "read it with the nir version that wrote it (neurolearn needs nir >= 1.0.5)") from None
        hint = ""
        if "type mismatch" in msg.lower() or "type check" in msg.lower():
            hint = ("; a node's parameters do not have the shapes its neighbours expect (e.g. 0-d scalars instead "
                    "of per-neuron arrays, as Sinabs writes): re-export it with 1-d parameter arrays")
        raise NIRError(f"{path} is not a valid NIR graph: {type(exc).__name__}: {msg}{hint}") from None


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "")[:limit]


def _flatten_subgraphs(nodes: dict[str, Any], edges: list[tuple[str, str]]):
    """Inline nested ``NIRGraph`` nodes (snnTorch writes RLeaky as one): names become ``outer.inner``."""
    nir = _nir()
    nodes, edges = dict(nodes), list(edges)
    while any(isinstance(n, nir.NIRGraph) for n in nodes.values()):
        name = next(k for k, n in nodes.items() if isinstance(n, nir.NIRGraph))
        sub = nodes.pop(name)
        inputs = [k for k, n in sub.nodes.items() if isinstance(n, nir.Input)]
        outputs = [k for k, n in sub.nodes.items() if isinstance(n, nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise NIRError(f"sub-graph {name!r} needs exactly one Input and one Output node, has "
                           f"{len(inputs)} and {len(outputs)}")
        inner = {f"{name}.{k}": n for k, n in sub.nodes.items() if k not in (inputs[0], outputs[0])}
        sub_in = [f"{name}.{d}" for s, d in sub.edges if s == inputs[0]]
        sub_out = [f"{name}.{s}" for s, d in sub.edges if d == outputs[0]]
        new_edges = [(f"{name}.{s}", f"{name}.{d}") for s, d in sub.edges if s != inputs[0] and d != outputs[0]]
        for s, d in edges:
            if d == name and s == name:
                raise NIRError(f"sub-graph {name!r} is connected to itself")
            if d == name:
                new_edges += [(s, t) for t in sub_in]
            elif s == name:
                new_edges += [(f, d) for f in sub_out]
            else:
                new_edges.append((s, d))
        nodes.update(inner)
        edges = new_edges
    return nodes, edges


MAX_IDENTITY = 4096
"""Largest population a neuron node without weights before it may have (it gets an N x N identity)."""
DT_RANGE = (1e-9, 10.0)
"""Steps (seconds) a graph may be simulated with: outside is not a neuromorphic time step."""
MAX_ENCODER_BYTES = 2**30
"""The encoded input of one sample (steps x inputs x 4 bytes) a graph's metadata may ask for."""
POSITIVE_FIELDS = ("tau", "tau_mem", "tau_syn", "r", "w_in")
"""Neuron fields that must be > 0 (time constants and gains)."""
METADATA_KEYS = ("format", "dt", "discretisation", "reset", "neurolearn.model_dt", "neurolearn.time_scale",
                 "neurolearn.decode", "neurolearn.encoder", "neurolearn.reader", "neurolearn.readout")
"""The metadata neurolearn writes; other ``neurolearn.*`` keys are refused (a typo or another format)."""


def _real_array(node_name: str, field: str, value: Any) -> np.ndarray:
    """``value`` as a float64 array, refusing non-numeric, complex, NaN and infinite values."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and other shapes numpy cannot hold
        raise NIRError(f"node {node_name!r}: {field} is not an array of numbers ({_first_line(exc)})") from None
    if arr.dtype.kind == "c":
        raise NIRError(f"node {node_name!r}: {field} is complex ({arr.dtype}); NIR parameters are real numbers")
    if arr.dtype.kind not in "biuf":
        raise NIRError(f"node {node_name!r}: {field} must be numbers, got {arr.dtype} values")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)].reshape(-1)[0]
        raise NIRError(f"node {node_name!r}: {field} holds {bad} (not finite); the graph is damaged or was "
                       "exported from a diverged network")
    return arr


def _uniform(node_name: str, field: str, value: Any, n: int) -> float:
    """One value for a population from a per-neuron NIR array (which must be uniform)."""
    arr = _real_array(node_name, field, value).reshape(-1)
    if arr.size not in (1, n):
        raise ShapeError(f"node {node_name!r}: {field} has {arr.size} values but the population has {n} neurons")
    if not np.all(arr == arr[0]):
        raise NIRError(
            f"node {node_name!r}: {field} differs between neurons ({arr.min():g} .. {arr.max():g}); neurolearn "
            "layers share one value per population. Split the population or make the values equal"
        )
    return float(arr[0])


def _neuron_from_node(nir, name: str, node: Any, n: int, dt: float, scale: float,
                      readout: bool = False) -> LIFParams | LIParams:
    """neurolearn neuron parameters of a NIR neuron node, discretised at ``dt`` (model time: / scale).

    ``readout``: the node is an LI readout written as a never-firing LIF (metadata ``neurolearn.readout``).
    """
    def u(f: str) -> float:
        if not hasattr(node, f):
            raise NIRError(f"node {name!r} ({type(node).__name__}) has no {f!r}; the graph is not valid NIR")
        v = _uniform(name, f, getattr(node, f), n)
        if f in POSITIVE_FIELDS and not v > 0:
            raise NIRError(f"node {name!r} ({type(node).__name__}): {f} = {v:g} must be > 0")
        return v

    dt_model = dt / scale
    try:
        if readout and isinstance(node, nir.LIF):
            return LIParams(tau=u("tau") / scale, dt=dt_model, v_leak=u("v_leak"), r=u("r"))
        if isinstance(node, nir.LI):
            return LIParams(tau=u("tau") / scale, dt=dt_model, v_leak=u("v_leak"), r=u("r"))
        common = dict(dt=dt_model, threshold=u("v_threshold"), v_reset=u("v_reset"), v_leak=u("v_leak"),
                      r=u("r"), reset="value")
        if isinstance(node, nir.CubaLIF):
            return LIFParams(tau_mem=u("tau_mem") / scale, tau_syn=u("tau_syn") / scale, w_in=u("w_in"), **common)
        return LIFParams(tau_mem=u("tau") / scale, **common)
    except ConfigError as exc:
        raise NIRError(f"node {name!r} ({type(node).__name__}) cannot be simulated at dt = {dt:g} s: {exc}. "
                       "Pass from_nir(..., dt=...) with the step the graph was made for") from None


def _shape_of(type_dict: Any) -> tuple[int, ...]:
    """The shape a type (``{name: shape}`` or a shape) describes (checked by :func:`_size_of` first)."""
    shape = next(iter(type_dict.values())) if isinstance(type_dict, dict) else type_dict
    return tuple(int(d) for d in np.asarray(shape).reshape(-1))


def _pair(name: str, field: str, value: Any) -> int:
    """One integer from NIR's ``int | (int, int)`` conv/pool parameters (square kernels only)."""
    arr = np.asarray(value).reshape(-1)
    if arr.size == 0 or arr.dtype.kind not in "iuf" or not np.all(arr == arr[0]) or arr[0] != int(arr[0]) \
            or arr[0] < 0:
        raise NIRError(f"node {name!r}: {field} = {_short(value)}; neurolearn needs one non-negative integer for "
                       "both dimensions")
    return int(arr[0])


def _conv_layer(nir: Any, nodes: dict[str, Any], body: list[str], i: int, shape: tuple[int, ...], step: float,
                scale: float, readout: str | None = None) -> tuple[Conv2d, int]:
    """A :class:`Conv2d` layer from ``Conv2d -> [neuron] -> [AvgPool2d | SumPool2d]`` at ``body[i]``; the next index."""
    name, node = body[i], nodes[body[i]]
    if len(shape) != 3:
        raise ShapeError(f"node {name!r} (Conv2d) receives {list(shape)}; a conv layer needs [channels, height, "
                         "width] (write the Input node's shape as [C, H, W])")
    w = _real_array(name, "weight", node.weight).astype(np.float32)
    if w.ndim != 4 or w.shape[2] != w.shape[3] or w.shape[1] != shape[0]:
        raise ShapeError(f"node {name!r}: weight {list(w.shape)} must be [out, in = {shape[0]}, k, k]")
    if _pair(name, "dilation", node.dilation) != 1 or int(np.asarray(node.groups).reshape(-1)[0]) != 1:
        raise NIRError(f"node {name!r}: dilation and groups must be 1 (neurolearn's conv layers)")
    if isinstance(node.padding, str):
        raise NIRError(f"node {name!r}: padding {node.padding!r}; write the padding as a number")
    stride, padding = _pair(name, "stride", node.stride), _pair(name, "padding", node.padding)
    bias = _real_array(name, "bias", node.bias).astype(np.float32).reshape(-1) if node.bias is not None else None
    if bias is not None and bias.size not in (1, w.shape[0]):
        raise ShapeError(f"node {name!r}: bias has {bias.size} values for {w.shape[0]} channels")
    i += 1
    probe = Conv2d(shape, w.shape[0], w.shape[2], None, stride=stride, padding=padding)
    neuron = None
    if i < len(body) and isinstance(nodes[body[i]], (nir.LIF, nir.CubaLIF, nir.LI)):
        neuron = _neuron_from_node(nir, body[i], nodes[body[i]], probe.units, step, scale,
                                   readout=body[i] == readout)
        i += 1
    pool, mode = 1, "max"
    if i < len(body) and isinstance(nodes[body[i]], (nir.AvgPool2d, nir.SumPool2d)):
        pname, pnode = body[i], nodes[body[i]]
        pool = _pair(pname, "kernel_size", pnode.kernel_size)
        if _pair(pname, "stride", pnode.stride) != pool or _pair(pname, "padding", pnode.padding) != 0:
            raise NIRError(f"node {pname!r}: neurolearn pools non-overlapping windows (stride = kernel_size, no "
                           "padding)")
        mode = "avg" if isinstance(pnode, nir.AvgPool2d) else "sum"
        i += 1
    layer = Conv2d(shape, w.shape[0], w.shape[2], neuron, stride=stride, padding=padding, pool=pool, pool_mode=mode,
                   bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(np.broadcast_to(bias, (w.shape[0],)).copy()))
    return layer, i


def _size_of(type_dict: Any, where: str = "node") -> int | None:
    """The number of values a type (``{name: shape}`` or a shape) describes; ``None`` if it has no shape."""
    if type_dict is None or (isinstance(type_dict, dict) and not type_dict):
        return None
    shape = next(iter(type_dict.values())) if isinstance(type_dict, dict) else type_dict
    try:
        shape = np.asarray(shape).reshape(-1)
    except Exception:
        raise NIRError(f"{where}: its shape {_short(shape)} is not a list of sizes") from None
    if not shape.size:
        return None
    if shape.dtype.kind not in "iuf" or not np.all(np.isfinite(shape)) or np.any(shape < 1) \
            or np.any(shape != np.round(shape)):
        raise NIRError(f"{where}: its shape {_short(shape.tolist())} must be positive integers")
    return math.prod(int(d) for d in shape)


WRITER_REFUSED = {
    "norse": "Norse 1.1's export writes tau = dt * tau (measured, issue 16) and no w_in, so the file does not "
             "determine the dynamics; rebuild the network in neurolearn, or export it from Norse "
             "and pass writer='neurolearn' with dt= the step you simulated it with, knowingly",
    "sinabs": "Sinabs writes taus in time steps without a dt and 0-d (scalar) parameters that fail nir 1.0.8's type "
              "check; its multi-spike, subtract-reset neurons have no NIR meaning",
    "rockpool": "Rockpool writes no w_in, r from an exponential decay and no dt: the file does not determine the "
                "dynamics",
}


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters (for messages about file contents)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_dt(what: str, value: Any) -> float:
    """A step in seconds within :data:`DT_RANGE`, else a one-line :class:`NIRError`."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok or not (math.isfinite(float(value)) and DT_RANGE[0] <= float(value) <= DT_RANGE[1]):
        raise NIRError(f"{what} must be a time step in seconds between {DT_RANGE[0]:g} and {DT_RANGE[1]:g}, "
                       f"got {_short(value)}")
    return float(value)


def _plain(value: Any) -> Any:
    """A metadata value as a plain Python value (HDF5 gives bytes, numpy scalars and 0-d arrays)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def _metadata(raw: Any) -> dict[str, Any]:
    """The graph's metadata, checked: neurolearn's keys with the right types and ranges (JSON fields parsed).

    Keys of other libraries are kept as they are; unknown ``neurolearn.*`` keys are refused with the nearest
    known one. Raises :class:`NIRError` in one line for anything else.
    """
    from neurolearn.errors import nearest

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise NIRError(f"the graph's metadata must be a table of key/value pairs, got {type(raw).__name__}")
    meta = {str(k): _plain(v) for k, v in raw.items()}
    for key in meta:
        if key.startswith("neurolearn.") and key not in METADATA_KEYS:
            guess = nearest(key, METADATA_KEYS)
            raise NIRError(f"metadata: unknown key {key!r}" + (f" (did you mean {guess!r}?)" if guess else "")
                           + f"; neurolearn writes: {', '.join(METADATA_KEYS)}")

    def text(key: str) -> str:
        if not isinstance(meta[key], str):
            raise NIRError(f"metadata {key} must be text, got {_short(meta[key])} ({type(meta[key]).__name__})")
        return meta[key]

    def table(key: str, known: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
        try:
            value = json.loads(text(key))
        except json.JSONDecodeError as exc:
            raise NIRError(f"metadata {key} is not valid JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(value, dict):
            raise NIRError(f"metadata {key} must be a JSON object, got {type(value).__name__}")
        for k, v in value.items():
            if k not in known:
                guess = nearest(k, known)
                raise NIRError(f"metadata {key}: unknown key {k!r}" + (f" (did you mean {guess!r}?)" if guess else "")
                               + f"; valid keys: {', '.join(known)}")
            if not isinstance(v, known[k]) or isinstance(v, bool) and bool not in (known[k] if isinstance(
                    known[k], tuple) else (known[k],)):
                raise NIRError(f"metadata {key}: {k} has the wrong type ({_short(v)})")
            if isinstance(v, float) and not math.isfinite(v):
                raise NIRError(f"metadata {key}: {k} = {v} is not finite")
        return value

    for key in ("format", "discretisation", "reset", "neurolearn.reader"):
        if key in meta:
            text(key)
    if "dt" in meta:
        meta["dt"] = _check_dt("metadata dt", meta["dt"])
    for key in ("neurolearn.model_dt",):
        if key in meta:
            meta[key] = _check_dt(f"metadata {key}", meta[key])
    if "neurolearn.time_scale" in meta:
        v = meta["neurolearn.time_scale"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and 1e-9 <= v <= 1e9):
            raise NIRError(f"metadata neurolearn.time_scale must be a positive number (dt / the model's dt), got {_short(v)}")
        meta["neurolearn.time_scale"] = float(v)
    if "neurolearn.decode" in meta and text("neurolearn.decode") not in DECODES:
        from neurolearn.errors import unknown_name

        raise NIRError(f"metadata neurolearn.decode: {unknown_name('decode', meta['neurolearn.decode'], DECODES)}")
    if "neurolearn.encoder" in meta:
        enc = table("neurolearn.encoder", {"kind": str, "steps": int, "gain": (int, float), "threshold": (int, float)})
        if "steps" in enc and enc["steps"] < 1:
            raise NIRError(f"metadata neurolearn.encoder: steps must be at least 1, got {enc['steps']}")
        meta["neurolearn.encoder"] = enc
    if "neurolearn.readout" in meta:
        ro = table("neurolearn.readout", {"node": str, "as": str})
        if "node" not in ro:
            raise NIRError("metadata neurolearn.readout names no node")
        meta["neurolearn.readout"] = ro
    return meta


def _writer_conventions(writer: str, meta: dict[str, Any], dt: float | None) -> None:
    """Check ``writer`` and warn where its files cannot determine the dynamics (updates ``meta['dt']``)."""
    from neurolearn.errors import unknown_name

    if writer not in WRITERS:
        raise unknown_name("NIR writer", writer, WRITERS)
    if writer in WRITER_REFUSED:
        raise NIRError(f"cannot import a file written by {writer}: {WRITER_REFUSED[writer]}")
    ours = meta.get("format") == FORMAT
    if writer == "neurolearn" and not ours:
        raise NIRError("the graph has no neurolearn metadata (format = neurolearn-nir-1): it was not written by "
                       "neurolearn; pass writer='auto' or the library that wrote it")
    if writer in ("snntorch", "spikingjelly") or (writer == "auto" and not ours):
        if writer == "auto" and dt is None:
            warnings.warn("the NIR graph does not say which library wrote it: simulating it at dt = 1e-4 s "
                          "(snnTorch's and SpikingJelly's convention); pass writer= or dt=", stacklevel=3)
        meta.pop("neurolearn.time_scale", None)
        meta["dt"] = NIR_DT
    if writer == "snntorch":
        warnings.warn("snnTorch writes every neuron as reset to v_reset = 0, whatever its reset_mechanism: if the "
                      "model reset by subtraction (snnTorch's default), the imported spikes differ. Export it from "
                      "snnTorch with reset_mechanism='zero' to be exact", stacklevel=3)


def from_nir(
    graph: Any,
    *,
    dt: float | None = None,
    encoder: Encoder | None = None,
    decode: str | None = None,
    writer: str = "auto",
) -> Network:
    """A neurolearn :class:`Network` from a NIR graph (or the path of a ``.nir`` file).

    ``writer``: the library that wrote the file (:data:`WRITERS`), whose conventions decide the step:
    ``"neurolearn"`` (the metadata's ``dt``), ``"snntorch"`` and ``"spikingjelly"`` (1e-4 s, their
    export default; snnTorch writes every reset as ``v_reset = 0``, also its default subtract
    reset: a ``UserWarning`` says so), ``"auto"`` (neurolearn's metadata if present, else 1e-4 s
    with a warning). Norse, Sinabs and Rockpool files are refused (they do not determine the
    dynamics: see docs/results/nir.md). ``dt`` overrides the writer's step.

    The graph must be a chain ``Input -> (Affine|Linear) -> [LIF|CubaLIF|LI] -> ... -> Output``
    (a neuron node without weights before it gets identity weights), where a neuron node may
    have a recurrent cycle through one ``Affine``/``Linear`` node. ``dt``: the step to
    discretise with (default: the graph's metadata ``dt``, else :data:`NIR_DT`). Neuron
    parameters must be uniform within a population; the reset is to ``v_reset`` (NIR's meaning).
    """
    nir = _nir()
    if isinstance(graph, (str, Path)):
        graph = read_graph(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise NIRError(f"expected a nir.NIRGraph or a .nir path, got {type(graph).__name__}")
    meta = _metadata(graph.metadata)
    if dt is not None:
        _check_dt("dt", dt)
    if decode is not None and decode not in DECODES:
        from neurolearn.errors import unknown_name

        raise unknown_name("decode", decode, DECODES)
    _writer_conventions(writer, meta, dt)
    nodes, edges = _flatten_subgraphs(graph.nodes, graph.edges)
    for name, node in nodes.items():
        if type(node).__name__ not in SUPPORTED_NODES:
            raise NIRError(f"node {name!r} has type {type(node).__name__}, which neurolearn cannot import; "
                           f"supported node types: {', '.join(SUPPORTED_NODES)}")
    for s, d in edges:
        for end in (s, d):
            if end not in nodes:
                raise NIRError(f"edge ({s!r}, {d!r}) names a node {end!r} that the graph does not have")
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRError(
            f"the graph has {len(inputs)} Input and {len(outputs)} Output nodes; neurolearn imports graphs with "
            "exactly one of each (NIR needs explicit Input/Output nodes, in particular around recurrent cycles)"
        )
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for s, d in edges:
        succ[s].append(d)
        pred[d].append(s)
    neuron_types = (nir.LIF, nir.CubaLIF, nir.LI)
    weight_types = (nir.Affine, nir.Linear)
    # Recurrent weights: a weight node whose only input and only output is the same neuron node.
    recurrent: dict[str, str] = {}
    for name, node in nodes.items():
        if isinstance(node, weight_types) and len(succ[name]) == 1 and pred[name] == succ[name]:
            target = succ[name][0]
            if isinstance(nodes[target], (nir.LIF, nir.CubaLIF)):
                if target in recurrent:
                    raise NIRError(f"node {target!r} has two recurrent weight nodes; neurolearn supports one")
                recurrent[target] = name

    # Walk the chain from the Input node.
    chain: list[str] = []
    seen = set()
    cur = inputs[0]
    while True:
        forward = [d for d in succ[cur] if d != recurrent.get(cur)]
        if cur == outputs[0]:
            if forward:
                raise NIRError(f"the Output node {cur!r} has outgoing edges")
            break
        if len(forward) != 1:
            raise NIRError(
                f"node {cur!r} has {len(forward)} outgoing edges ({forward}); neurolearn imports chains of layers "
                "(branches, merges and skip connections are not supported)" if forward else
                f"node {cur!r} is a dead end: no path from the Input node to the Output node"
            )
        nxt = forward[0]
        if nxt in seen or nxt == inputs[0]:
            raise NIRError(
                f"the graph has a cycle through {nxt!r} that is not a recurrent layer (neuron -> Affine/Linear -> "
                "same neuron); other cycles are not supported"
            )
        back = [s for s in pred[nxt] if s != recurrent.get(nxt)]
        if len(back) != 1:
            raise NIRError(f"node {nxt!r} has {len(back)} incoming edges {back}; neurolearn imports chains of layers")
        seen.add(nxt)
        chain.append(nxt)
        cur = nxt
    unreached = set(nodes) - seen - {inputs[0]} - set(recurrent.values())
    if unreached:
        raise NIRError(f"nodes {sorted(unreached)} are not on the path from Input to Output")

    readout_node = meta["neurolearn.readout"]["node"] if "neurolearn.readout" in meta else None
    step = float(dt if dt is not None else meta.get("dt", NIR_DT))
    scale = float(meta.get("neurolearn.time_scale", 1.0)) if dt is None else 1.0
    _check_dt("the model's dt (metadata dt / neurolearn.time_scale)", step / scale)
    size = _size_of(nodes[inputs[0]].input_type, f"the Input node {inputs[0]!r}")
    if size is None:
        raise NIRError(f"the Input node {inputs[0]!r} has no shape")

    shape = _shape_of(nodes[inputs[0]].input_type)
    layers: list[Dense | Conv2d] = []
    i = 0
    body = chain[:-1]  # the last is the Output node
    while i < len(body):
        name = body[i]
        node = nodes[name]
        if isinstance(node, nir.Flatten):
            shape = (size,)
            i += 1
            continue
        if isinstance(node, nir.Conv2d):
            layer, i = _conv_layer(nir, nodes, body, i, shape, step, scale, readout_node)
            layers.append(layer)
            shape, size = tuple(layer.out_shape), math.prod(layer.out_shape)
            continue
        if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            raise NIRError(f"node {name!r} ({type(node).__name__}) must follow a Conv2d node's neurons; neurolearn "
                           "pools inside a conv layer")
        if isinstance(node, weight_types):
            w = _real_array(name, "weight", node.weight).astype(np.float32)
            if w.ndim != 2:
                raise ShapeError(f"node {name!r}: weight must be a matrix (out x in), got shape {list(w.shape)}")
            if w.shape[1] != size:
                raise ShapeError(f"shapes do not chain: node {name!r} expects {w.shape[1]} inputs but receives "
                                 f"{size}")
            if 0 in w.shape:
                raise ShapeError(f"node {name!r}: weight has shape {list(w.shape)}; a layer needs at least one "
                                 "input and one output")
            bias = (_real_array(name, "bias", node.bias).astype(np.float32).reshape(-1)
                    if isinstance(node, nir.Affine) else None)
            if bias is not None and bias.size != w.shape[0]:
                raise ShapeError(f"node {name!r}: bias has {bias.size} values for {w.shape[0]} outputs")
            i += 1
        else:
            if not isinstance(node, neuron_types):
                raise NIRError(f"node {name!r} ({type(node).__name__}) cannot start a layer")
            if size > MAX_IDENTITY:
                raise NIRError(f"node {name!r} ({type(node).__name__}) has no weight node before it; neurolearn would "
                               f"give it an identity of {size} x {size} weights (more than {MAX_IDENTITY} neurons): add "
                               "an Affine/Linear node before it")
            w, bias = np.eye(size, dtype=np.float32), None
        n_out = w.shape[0]
        neuron = None
        rec_w = None
        if i < len(body) and isinstance(nodes[body[i]], neuron_types):
            nname = body[i]
            neuron = _neuron_from_node(nir, nname, nodes[nname], n_out, step, scale, readout=nname == readout_node)
            if nname in recurrent:
                rnode = nodes[recurrent[nname]]
                rec_w = _real_array(recurrent[nname], "weight", rnode.weight).astype(np.float32)
                if rec_w.shape != (n_out, n_out):
                    raise ShapeError(f"shapes do not chain: recurrent node {recurrent[nname]!r} has weight "
                                     f"{list(rec_w.shape)} for a population of {n_out}")
                if isinstance(rnode, nir.Affine):  # a constant recurrent bias adds to the input bias
                    rb = _real_array(recurrent[nname], "bias", rnode.bias).astype(np.float32).reshape(-1)
                    if rb.size != n_out:
                        raise ShapeError(f"node {recurrent[nname]!r}: bias has {rb.size} values for {n_out} outputs")
                    bias = rb if bias is None else bias + rb
            i += 1
        layer = Dense(size, n_out, neuron, bias=bias is not None, recurrent=rec_w is not None)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
            if bias is not None:
                layer.bias.copy_(torch.from_numpy(bias))
            if rec_w is not None:
                layer.recurrent_weight.copy_(torch.from_numpy(rec_w))
        layers.append(layer)
        size = n_out
        shape = (size,)
    if not layers:
        raise NIRError("the graph has no layers between its Input and Output nodes")
    out_size = _size_of(nodes[outputs[0]].output_type, f"the Output node {outputs[0]!r}")
    if out_size is not None and out_size != size:
        raise ShapeError(f"shapes do not chain: the Output node declares {out_size} values, the last layer has {size}")
    if encoder is None:
        enc_cfg = meta.get("neurolearn.encoder", {})
        n_in = layers[0].weight.shape[1]
        if enc_cfg.get("steps", 1) * n_in * 4 > MAX_ENCODER_BYTES:
            raise NIRError(f"metadata neurolearn.encoder: {enc_cfg['steps']} steps x {n_in} inputs would need "
                           f"{enc_cfg['steps'] * n_in * 4 / 2**30:.3g} GiB per sample; the file is damaged, or pass "
                           "from_nir(..., encoder=Encoder(...)) with fewer steps")
        try:
            encoder = Encoder(**enc_cfg)
        except ConfigError as exc:
            raise NIRError(f"metadata neurolearn.encoder: {exc}") from None
    decode = decode or meta.get("neurolearn.decode", "last")
    return Network(layers, encoder=encoder, decode=decode, dt=step / scale)
