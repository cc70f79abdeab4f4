"""Build the objects of a run (network, optimizer) from a resolved configuration."""

from __future__ import annotations

import math
from typing import Any

import torch

from neurolearn.config import LAYER_TYPES, TRAIN_SCHEMA, check_layer, check_model, check_table
from neurolearn.encoders import Encoder
from neurolearn.errors import NeurolearnError, ShapeError, unknown_name
from neurolearn.layers import Conv2d, Dense, Layer
from neurolearn.network import Network
from neurolearn.neurons import neuron_from_config



def build_layer(spec: dict[str, Any], in_shape: tuple[int, ...], dt: float, index: int) -> Layer:
    """One layer from its config table (checked, with the defaults of
    :data:`neurolearn.config.LAYER_SCHEMAS` filled in), given the shape it receives."""
    kind = spec.get("type", "dense")
    if kind not in LAYER_TYPES:
        raise unknown_name("layer type", kind, LAYER_TYPES)
    spec = check_layer(f"model.layers.{index}", spec)
    neuron = neuron_from_config(spec.get("neuron"), dt)
    common = dict(bias=spec["bias"], init=spec["init"], init_gain=spec["init_gain"])
    if kind in ("dense", "recurrent"):
        extra = {}
        if kind == "recurrent":
            extra = dict(recurrent=True, recurrent_init=spec["recurrent_init"], recurrent_gain=spec["recurrent_gain"])
        return Dense(math.prod(in_shape), spec["size"], neuron, **common, **extra)
    if len(in_shape) != 3:
        raise ShapeError(f"layer {index} (conv2d) needs an image input [C, H, W], got {list(in_shape)}")
    return Conv2d(in_shape, spec["channels"], spec["kernel"], neuron,
                  stride=spec["stride"], padding=spec["padding"], pool=spec["pool"], **common)


def build_network(model_cfg: dict[str, Any], input_shape: tuple[int, ...]) -> Network:
    """The network a model config describes, for data whose samples have ``input_shape``.

    ``model_cfg`` is checked and completed by :func:`neurolearn.config.check_model` (the one home
    of the defaults of ``dt``, ``decode``, ``[encoder]`` and the layers)."""
    model_cfg = check_model(model_cfg, file=True)  # a model file as read is accepted too
    declared = model_cfg.get("input")
    if declared is not None and math.prod(declared) != math.prod(input_shape):
        raise ShapeError(
            f"model {model_cfg.get('name')} expects inputs of shape {list(declared)} but the data has "
            f"{list(input_shape)}; pick a matching --data or model"
        )
    dt = float(model_cfg["dt"])
    encoder = Encoder(**model_cfg["encoder"])
    layers: list[Layer] = []
    shape = tuple(input_shape)
    for i, spec in enumerate(model_cfg["layers"]):
        layer = build_layer(spec, shape, dt, i)
        layers.append(layer)
        shape = layer.out_shape
    return Network(layers, encoder=encoder, decode=model_cfg["decode"], dt=dt,
                   decode_window=model_cfg.get("decode_window"))


def make_optimizer(params, train: dict[str, Any]) -> torch.optim.Optimizer:
    """SGD or Adam from a train section (checked, defaults from :data:`neurolearn.config.TRAIN_SCHEMA`),
    with torch's multi-tensor (``foreach``) implementation: one kernel per operation over all
    parameters instead of a Python loop over them (the same update; on CPU torch's default is the
    loop, which cost 1.3-1.5 ms of a 784-500-500-10 step, issue 19)."""
    train = check_table("train", train, TRAIN_SCHEMA)
    name = train["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=train["lr"], momentum=train["momentum"], weight_decay=train["weight_decay"],
                               foreach=True)
    if name == "adam":
        betas = (float(train["beta1"]), float(train["beta2"]))
        return torch.optim.Adam(params, lr=train["lr"], betas=betas, weight_decay=train["weight_decay"],
                                foreach=True)
    raise unknown_name("optimizer", name, ("sgd", "adam"))


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda``; asking for CUDA without a GPU is an error, not a silent fallback."""
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise NeurolearnError(
            "--device cuda was asked for but no CUDA GPU is available (torch.cuda.is_available() is False); "
            "use --device cpu, or install a CUDA build of torch on a machine with a GPU"
        )
    return torch.device(name)
