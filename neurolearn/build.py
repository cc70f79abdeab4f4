"""Build the objects of a run (network, optimizer) from a resolved configuration."""

from __future__ import annotations

import math
from typing import Any

import torch

from neurolearn.encoders import Encoder
from neurolearn.errors import ConfigError, NeurolearnError, ShapeError, unknown_name
from neurolearn.layers import Conv2d, Dense, Layer
from neurolearn.network import Network
from neurolearn.neurons import neuron_from_config

LAYER_TYPES = ("dense", "recurrent", "conv2d")
_COMMON = {"type", "neuron", "bias", "init", "init_gain"}
_LAYER_KEYS = {
    "dense": _COMMON | {"size"},
    "recurrent": _COMMON | {"size", "recurrent_init", "recurrent_gain"},
    "conv2d": _COMMON | {"channels", "kernel", "stride", "padding", "pool"},
}


def build_layer(spec: dict[str, Any], in_shape: tuple[int, ...], dt: float, index: int) -> Layer:
    """One layer from its config table, given the shape it receives."""
    kind = spec.get("type", "dense")
    if kind not in LAYER_TYPES:
        raise unknown_name("layer type", kind, LAYER_TYPES)
    unknown = set(spec) - _LAYER_KEYS[kind]
    if unknown:
        raise ConfigError(f"layer {index} ({kind}): unknown keys {sorted(unknown)}; known: {sorted(_LAYER_KEYS[kind])}")
    neuron = neuron_from_config(spec.get("neuron"), dt)
    common = dict(bias=spec.get("bias", True), init=spec.get("init", "default"), init_gain=spec.get("init_gain", 1.0))
    if kind in ("dense", "recurrent"):
        if "size" not in spec:
            raise ConfigError(f"layer {index} ({kind}) needs a 'size'")
        extra = {}
        if kind == "recurrent":
            extra = dict(recurrent=True, recurrent_init=spec.get("recurrent_init", "orthogonal"),
                         recurrent_gain=spec.get("recurrent_gain", 1.0))
        return Dense(math.prod(in_shape), int(spec["size"]), neuron, **common, **extra)
    if len(in_shape) != 3:
        raise ShapeError(f"layer {index} (conv2d) needs an image input [C, H, W], got {list(in_shape)}")
    return Conv2d(in_shape, int(spec["channels"]), int(spec["kernel"]), neuron,
                  stride=spec.get("stride", 1), padding=spec.get("padding", 0), pool=spec.get("pool", 1), **common)


def build_network(model_cfg: dict[str, Any], input_shape: tuple[int, ...]) -> Network:
    """The network a model config describes, for data whose samples have ``input_shape``."""
    declared = model_cfg.get("input")
    if declared is not None and math.prod(declared) != math.prod(input_shape):
        raise ShapeError(
            f"model {model_cfg.get('name')} expects inputs of shape {list(declared)} but the data has "
            f"{list(input_shape)}; pick a matching --data or model"
        )
    dt = float(model_cfg.get("dt", 1e-3))
    enc_cfg = dict(model_cfg.get("encoder", {}))
    try:
        encoder = Encoder(**enc_cfg)
    except TypeError as exc:
        raise ConfigError(f"bad [encoder] entry: {exc}") from None
    layers: list[Layer] = []
    shape = tuple(input_shape)
    for i, spec in enumerate(model_cfg["layers"]):
        layer = build_layer(spec, shape, dt, i)
        layers.append(layer)
        shape = layer.out_shape
    return Network(layers, encoder=encoder, decode=model_cfg.get("decode", "last"), dt=dt,
                   decode_window=model_cfg.get("decode_window"))


def make_optimizer(params, train: dict[str, Any]) -> torch.optim.Optimizer:
    name = train["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=train["lr"], momentum=train.get("momentum", 0.0),
                               weight_decay=train.get("weight_decay", 0.0))
    if name == "adam":
        betas = (float(train.get("beta1", 0.9)), float(train.get("beta2", 0.999)))
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"Adam's beta1 and beta2 must be in [0, 1), got {betas}")
        return torch.optim.Adam(params, lr=train["lr"], betas=betas, weight_decay=train.get("weight_decay", 0.0))
    raise unknown_name("optimizer", name, ("sgd", "adam"))


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda``; asking for CUDA without a GPU is an error, not a silent fallback."""
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise NeurolearnError(
            "--device cuda was asked for but no CUDA GPU is available (torch.cuda.is_available() is False); "
            "use --device cpu, or install a CUDA build of torch on a machine with a GPU"
        )
    return torch.device(name)
