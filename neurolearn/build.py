"""Build the objects of a run (network, optimizer) from a resolved configuration."""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from neurolearn.config import LAYER_TYPES, TRAIN_SCHEMA, check_layer, check_model, check_table
from neurolearn.encoders import Encoder
from neurolearn.errors import ConfigError, NeurolearnError, ShapeError, unknown_name
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
                  stride=spec["stride"], padding=spec["padding"], pool=spec["pool"], pool_mode=spec["pool_mode"],
                  **common)


BYTES = 4  # float32
TRAINING_COPIES = 4
"""Copies of every weight while training: the weights, their gradient and an optimizer's two moments (Adam)."""
ACTIVITY_COPIES = 3
"""Tensors kept per unit and step for learning: pre-activation, activity and membrane (or trace)."""


def layer_shapes(model_cfg: dict[str, Any], input_shape: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
    """``(weights, out_shape)`` of every layer of a model config, computed without allocating anything.

    Dense: ``n_in * size (+ size)`` weights (recurrent: ``+ size**2``); conv2d: ``C_out * C_in * k**2 (+ C_out)``,
    output ``[C_out, (H + 2p - k) // s + 1, ...]`` pooled by ``pool`` (as :class:`neurolearn.layers.Conv2d`).
    """
    from neurolearn.config import check_layers

    shapes: list[tuple[int, tuple[int, ...]]] = []
    shape = tuple(int(d) for d in input_shape)
    for spec in check_layers("model.layers", model_cfg["layers"]):
        bias = bool(spec["bias"])
        if spec.get("type", "dense") == "conv2d":
            if len(shape) != 3:
                return shapes  # build_layer says why
            c, h, w = shape
            k, st, pad, pool = spec["kernel"], spec["stride"], spec["padding"], spec["pool"]
            ho, wo = (h + 2 * pad - k) // st + 1, (w + 2 * pad - k) // st + 1
            n_w = spec["channels"] * c * k * k + (spec["channels"] if bias else 0)
            shape = (spec["channels"], max(ho, 0) // pool, max(wo, 0) // pool)
        else:
            n_in, size = math.prod(shape), spec["size"]
            n_w = n_in * size + (size if bias else 0) + (size * size if spec.get("type") == "recurrent" else 0)
            shape = (size,)
        shapes.append((n_w, shape))
    return shapes


def memory_estimate(model_cfg: dict[str, Any], input_shape: tuple[int, ...], batch: int = 1,
                    steps: int | None = None) -> dict[str, Any]:
    r"""Bytes a training step needs, estimated from the config before anything is allocated.

    .. math::  M_{weights} = 4\,\text{B} \cdot \text{TRAINING\_COPIES} \cdot \sum_l n^{w}_l, \qquad
               M_{activity} = 4\,\text{B} \cdot \text{ACTIVITY\_COPIES} \cdot T \cdot B \cdot
               (n_{in} + \sum_l n^{units}_l)

    ``T`` = ``steps`` (default: the encoder's steps), ``B`` = ``batch``. Returns ``weights``,
    ``activity``, ``total`` (bytes), ``largest`` (index and weight count of the largest layer) and
    ``widest`` (index and unit count of the widest layer).
    """
    shapes = layer_shapes(model_cfg, input_shape)
    if steps is None:
        steps = int(model_cfg.get("encoder", {}).get("steps", 1))
    n_weights = sum(n for n, _ in shapes)
    units = math.prod(input_shape) + sum(math.prod(sh) for _, sh in shapes)
    weights = BYTES * TRAINING_COPIES * n_weights
    activity = BYTES * ACTIVITY_COPIES * int(steps) * int(batch) * units
    largest = max(range(len(shapes)), key=lambda i: shapes[i][0]) if shapes else None
    widest = max(range(len(shapes)), key=lambda i: math.prod(shapes[i][1])) if shapes else None
    return {"widest": (widest, math.prod(shapes[widest][1])) if widest is not None else None,"weights": weights, "activity": activity, "total": weights + activity, "steps": int(steps),
            "batch": int(batch), "units": units, "n_weights": n_weights,
            "largest": (largest, shapes[largest][0]) if largest is not None else None}


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes that can still be allocated: free GPU memory on CUDA, else the host's ``MemAvailable``."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 2**62


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_memory(model_cfg: dict[str, Any], input_shape: tuple[int, ...], batch: int = 1, steps: int | None = None,
                 *, available: int | None = None, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Refuse, with what to change, a model whose :func:`memory_estimate` exceeds the memory available
    (``available`` bytes, default :func:`available_memory` of ``device``). Returns the estimate."""
    est = memory_estimate(model_cfg, input_shape, batch, steps)
    free = available_memory(device) if available is None else int(available)
    if est["total"] <= free:
        return est
    if est["weights"] >= est["activity"]:
        k, n = est["largest"]
        fix = (f"the weights need {_gib(est['weights'])} ({est['n_weights']:,} weights x {BYTES} bytes x "
               f"{TRAINING_COPIES} copies for training; layer {k} alone has {n:,}): lower model.layers.{k}.size "
               "(or channels)")
    else:
        k, n = est["widest"] or (0, 0)
        fix = (f"the activity needs {_gib(est['activity'])} ([T={est['steps']:,}, B={est['batch']:,}, "
               f"units={est['units']:,}] x {BYTES} bytes x {ACTIVITY_COPIES} tensors; layer {k} has {n:,} units): "
               "lower --batch-size (and train.eval_batch_size), model.encoder.steps or the layer sizes")
    raise ConfigError(f"this model needs about {_gib(est['total'])} but {_gib(free)} is available on {device}: {fix}")


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
    check_memory(model_cfg, input_shape, batch=1, steps=1)  # the weights alone, before they are allocated
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
    """SGD or Adam from a train section (checked, defaults from :data:`neurolearn.config.TRAIN_SCHEMA`)
    with torch's fastest implementation of the same update (:func:`fast_kernels`): the fused kernel
    (one pass over each parameter doing the whole update) where torch has it for the parameters'
    device and dtype, else the multi-tensor (``foreach``) one. Adam on a 784-500-500-10 MLP, one CPU
    thread: 2.0 ms per step with the per-parameter loop, 1.3-1.5 ms foreach, 0.6 ms fused (issue 19).

    SGD: ``v ← μ v + (g + λ w)``, ``w ← w − η v``; Adam: ``m ← β₁ m + (1−β₁) g``,
    ``v ← β₂ v + (1−β₂) g²``, ``w ← w − η m̂ / (√v̂ + ε)`` with ``g`` including ``λ w``. The fused
    and foreach kernels compute the same formulas; their float32 rounding may differ in the last bit
    (relative 5e-8 on a step). A checkpoint's optimizer state loads into either."""
    train = check_table("train", train, TRAIN_SCHEMA)
    name = train["optimizer"]
    params = list(params)
    if name == "sgd":
        return fast_kernels(torch.optim.SGD, params, lr=train["lr"], momentum=train["momentum"],
                            weight_decay=train["weight_decay"])
    if name == "adam":
        betas = (float(train["beta1"]), float(train["beta2"]))
        return fast_kernels(torch.optim.Adam, params, lr=train["lr"], betas=betas, weight_decay=train["weight_decay"])
    raise unknown_name("optimizer", name, ("sgd", "adam"))


def fast_kernels(cls: type[torch.optim.Optimizer], params: list, **options: Any) -> torch.optim.Optimizer:
    """``cls(params, fused=True, **options)`` when torch has a fused kernel for every parameter's
    device and dtype (torch checks this when the optimizer is built and refuses otherwise), else
    ``cls(params, foreach=True, **options)``. ``params``: tensors or param-group dicts."""
    tensors = [t for p in params for t in (p["params"] if isinstance(p, dict) else [p])]
    if tensors and all(t.is_floating_point() for t in tensors):
        try:
            return cls(params, fused=True, **options)
        except (RuntimeError, TypeError, ValueError):  # no fused kernel here (device, dtype, torch version)
            pass
    return cls(params, foreach=True, **options)


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda``; asking for CUDA without a GPU is an error, not a silent fallback."""
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise NeurolearnError(
            "--device cuda was asked for but no CUDA GPU is available (torch.cuda.is_available() is False); "
            "use --device cpu, or install a CUDA build of torch on a machine with a GPU"
        )
    return torch.device(name)
