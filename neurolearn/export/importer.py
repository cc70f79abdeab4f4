"""``neurolearn import``: a NIR file becomes a run directory that ``neurolearn eval`` / ``export`` accept.

The file is read with :func:`neurolearn.export.nir.from_nir` under one writer's conventions
(``writer=``), the network is described as a model config (:func:`network_config`: the layer
tables of a model file, with every neuron parameter written out), and the run directory gets a
checkpoint whose config is a complete run configuration (model, data, rule ``bp``, the train
defaults) and whose weights are the file's. ``neurolearn train --resume`` can train it further.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

from neurolearn.errors import ConfigError, NIRError
from neurolearn.layers import Conv2d, Dense
from neurolearn.network import Network

INPUT_SIZE_DATA = {784: "mnist", 64: "digits"}
"""The dataset an imported network is evaluated on when ``data`` is not given, by its input size."""


def neuron_config(neuron: Any) -> dict[str, Any] | None:
    """The config table of a neuron model (``{"model": ..., every init field}``); ``None`` for no neurons."""
    if neuron is None:
        return None
    table: dict[str, Any] = {"model": type(neuron).model}
    for f in fields(neuron):
        if f.init:
            value = getattr(neuron, f.name)
            if value is not None:
                table[f.name] = value
    return table


def network_config(net: Network, name: str = "imported") -> dict[str, Any]:
    """A model config (the tables of a model file) that :func:`neurolearn.build.build_network` builds
    into a network of ``net``'s structure (the weights are not part of it)."""
    layers: list[dict[str, Any]] = []
    for layer in net.layers:
        spec: dict[str, Any] = {"neuron": neuron_config(layer.neuron), "bias": layer.bias is not None}
        if isinstance(layer, Conv2d):
            spec.update(type="conv2d", channels=layer.out_shape[0], kernel=layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, pool=layer.pool, pool_mode=layer.pool_mode)
        elif isinstance(layer, Dense):
            spec.update(type="recurrent" if layer.recurrent else "dense", size=layer.units)
        else:  # pragma: no cover - from_nir builds only these
            raise NIRError(f"cannot describe a {type(layer).__name__} layer as a model config")
        layers.append(spec)
    enc = net.encoder
    return {
        "name": name,
        "description": f"imported from NIR ({name})",
        "dt": float(net.dt),
        "decode": net.decode,
        "input": list(net.input_shape),
        "encoder": {f: getattr(enc, f) for f in ("kind", "steps", "gain", "threshold")},
        "layers": layers,
    }


def import_run(path: str | Path, out: str | Path, *, writer: str = "auto", data: str | None = None,
               dt: float | None = None, encoder: str | None = None, steps: int | None = None,
               decode: str | None = None) -> dict[str, Any]:
    """Read the NIR file ``path`` (``writer``'s conventions) and write the run directory ``out``.

    ``data``: the dataset the run evaluates on (default: from the input size, :data:`INPUT_SIZE_DATA`).
    ``encoder``/``steps``: override the input encoding (a foreign file does not store one; neurolearn's
    metadata does). ``decode``: how the output is read. Warnings (e.g. snnTorch's subtract reset)
    are issued as ``UserWarning``. Returns a summary (layers, input size, data, dt, writer).
    """
    from neurolearn.config import TRAIN_KEYS, check_config
    from neurolearn.encoders import Encoder
    from neurolearn.export.nir import from_nir
    from neurolearn.io import CHECKPOINT_FORMAT, save_checkpoint
    from neurolearn.runs import CHECKPOINT_NAME, check_out_dir

    out = check_out_dir(out)
    enc = Encoder(kind=encoder or "rate", steps=steps or 1) if encoder is not None or steps is not None else None
    net = from_nir(path, writer=writer, dt=dt, encoder=enc, decode=decode)
    n_in = math.prod(net.input_shape)
    if data is None:
        if n_in not in INPUT_SIZE_DATA:
            raise ConfigError(f"the network takes {n_in} inputs and no dataset is known for that size "
                              f"({', '.join(f'{k}: {v}' for k, v in INPUT_SIZE_DATA.items())}): pass --data NAME")
        data = INPUT_SIZE_DATA[n_in]
    model_cfg = network_config(net, Path(path).stem)
    model_cfg["data"] = data
    config = check_config({
        "model": model_cfg,
        "data": {"name": data, "options": {}},
        "rule": {"name": "bp", "params": {}},
        "train": dict(TRAIN_KEYS),
    })
    from neurolearn.build import build_network

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rebuilt = build_network(config["model"], tuple(net.input_shape))
    try:
        rebuilt.load_state_dict(net.state_dict())
    except RuntimeError as exc:  # pragma: no cover - network_config describes every layer from_nir builds
        raise NIRError(f"the imported network does not fit its own model config: {str(exc).splitlines()[0]}") from None
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone() for k, v in rebuilt.state_dict().items()}
    save_checkpoint(out / CHECKPOINT_NAME, {
        "format": CHECKPOINT_FORMAT, "epoch": 0, "config": config, "model": state, "training_model": None,
        "optimizer": None, "rule": {}, "history": [], "elapsed": 0.0, "reference_loss": None,
        "imported_from": str(path), "writer": writer,
    })
    return {"run": str(out), "nir": str(path), "writer": writer, "data": data, "dt": float(net.dt),
            "inputs": n_in, "layers": [type(layer.neuron).model if layer.neuron is not None else "linear"
                                       for layer in net.layers],
            "encoder": model_cfg["encoder"]}
