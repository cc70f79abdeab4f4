r"""Layers: synapses (weights, optional decorrelation) followed by a neuron population.

A layer advances one time step with :meth:`step`, which takes the input at that step and
the layer's explicit state and returns the activity, the new state and the layer's
:class:`Taps`, the quantities that local learning rules read:

- ``input``: the layer's input ``x`` (flattened for dense layers). A layer that decorrelates
  its input computes ``W x̃ = W (R x − μ̃)`` either as written or with ``R`` folded into the
  weights (``(W R) x − W μ̃``, whichever costs fewer multiply-adds: convolutions always fold,
  dense layers fold when they have fewer output units than input rows), so the tap holds the
  raw ``x`` and :meth:`Layer.weight_gradient` maps a local update back to ``W``;
- ``pre``: the pre-activation ``z = W x̃ + b (+ W_rec h[t-1]) (+ noise)``; for spiking
  layers this is the input current ``I``; node noise is injected here;
- ``act``: the activity ``h`` (rate), the spikes ``s`` (LIF) or the membrane ``v`` (leaky readout);
- ``mem``: the membrane before reset (spiking layers) or the integrator state;
- ``rec``: the recurrent input ``h[t-1]`` (recurrent layers);
- ``state``: the neuron state after the step (the model's own ``NamedTuple``: e.g. an adaptive
  neuron's threshold variable, for rules such as e-prop that read it; not stacked by
  :meth:`~neurolearn.network.Network.run`).

The neurons are asked, never inspected: a layer holds ``(neuron_state, recurrent_prev)`` and calls
``neuron.init_state`` and ``neuron.step`` (the contract of :mod:`neurolearn.neurons.base`).

Parameters: ``weight`` (out x in), ``bias`` (out), ``recurrent_weight`` (out x out, recurrent
layers only); convolutions keep torch's ``(out_ch, in_ch, kh, kw)`` kernel. Rate layers also
hold two scalar buffers, ``act_scale`` and ``act_shift`` (``h = act_scale * f(z) + act_shift``;
1 and 0 unless a solver such as ZORB stored a range rescaling there).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from neurolearn.errors import ConfigError, ShapeError, unknown_name
from neurolearn.neurons import Neuron


class Taps(NamedTuple):
    """What one layer exposes to learning rules at one time step (see module docstring)."""

    input: torch.Tensor
    pre: torch.Tensor
    act: torch.Tensor
    mem: torch.Tensor | None = None
    rec: torch.Tensor | None = None
    state: Any = None


class LayerState(NamedTuple):
    """Explicit state of a layer: its neurons' state (the model's own type, ``None`` for a linear
    layer) and its last activity ``prev`` (recurrent layers)."""

    neuron: Any = None
    prev: torch.Tensor | None = None


INITS = ("default", "xavier_normal", "xavier_uniform", "kaiming_uniform", "normal", "orthogonal")


def init_weight(w: torch.Tensor, scheme: str, gain: float = 1.0, std: float = 0.05) -> None:
    """Initialise a weight tensor in place with a named scheme, scaled by ``gain``."""
    with torch.no_grad():
        if scheme == "default":  # torch's nn.Linear / nn.Conv2d default
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        elif scheme == "xavier_normal":
            nn.init.xavier_normal_(w)
        elif scheme == "xavier_uniform":
            nn.init.xavier_uniform_(w)
        elif scheme == "kaiming_uniform":
            nn.init.kaiming_uniform_(w, nonlinearity="relu")
        elif scheme == "normal":
            nn.init.normal_(w, 0.0, std)
        elif scheme == "orthogonal":
            nn.init.orthogonal_(w)
        else:
            raise unknown_name("weight init", scheme, INITS)
        w.mul_(gain)


class Layer(nn.Module):
    """Base class: synapses + neurons, advanced one time step at a time."""

    neuron: Neuron | None
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    recurrent: bool = False
    decorrelation: nn.Module | None

    @property
    def units(self) -> int:
        """Number of neurons (where node noise can be injected)."""
        return math.prod(self.out_shape)

    @property
    def spiking(self) -> bool:
        return self.neuron is not None and self.neuron.spiking

    @property
    def has_memory(self) -> bool:
        """Whether the layer carries state across time steps (recurrence or neuron dynamics)."""
        return self.recurrent or (self.neuron is not None and self.neuron.has_memory)

    def pre_shape(self, batch: int) -> tuple[int, ...]:
        """Shape of ``pre`` (and of node noise) for a batch."""
        return (batch, *self.pre_features_shape)

    @property
    def pre_features_shape(self) -> tuple[int, ...]:
        return self.out_shape

    def init_state(self, batch: int, device=None, dtype=None) -> LayerState:
        neuron = None if self.neuron is None else self.neuron.init_state(self.pre_shape(batch), device, dtype)
        prev = torch.zeros((batch, *self.out_shape), device=device, dtype=dtype) if self.recurrent else None
        return LayerState(neuron, prev)

    def _neurons(self, z: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState, Any]:
        """Run the neuron population on pre-activation ``z``: ``(act, layer state, neuron state)``."""
        if self.neuron is None:
            return z, LayerState(None, z if self.recurrent else None), None
        act, ns = self.neuron.step(z, state.neuron, self._spike_fn)
        if self.rescaled:  # skip two elementwise passes for the identity
            act = act * self.act_scale + self.act_shift
        return act, LayerState(ns, act if self.recurrent else None), ns

    @torch.no_grad()
    def set_output_rescaling(self, scale: float, shift: float) -> None:
        """Store the affine output rescaling ``h = scale · f(z) + shift`` of a rate layer."""
        self.act_scale.fill_(scale)
        self.act_shift.fill_(shift)
        self.rescaled = (scale, shift) != (1.0, 0.0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.neuron is not None and self.neuron.output_rescaling:
            self.rescaled = bool(self.act_scale != 1.0) or bool(self.act_shift != 0.0)

    def _setup_neuron(self, neuron: Neuron | None) -> None:
        if neuron is not None and not isinstance(neuron, Neuron):
            raise ConfigError(f"a layer's neuron must be a neuron model (neurolearn.neurons: LIFParams, ALIFParams, "
                              f"...) or None for a linear layer, got {type(neuron).__name__}")
        self.neuron = neuron
        if neuron is not None and neuron.output_rescaling:
            # Affine output rescaling h = act_scale * f(z) + act_shift (identity by default);
            # a buffer, so it is saved in the state dict. ZORB stores its range relaxation here.
            self.register_buffer("act_scale", torch.tensor(1.0))
            self.register_buffer("act_shift", torch.tensor(0.0))
        self.rescaled = False  # whether act_scale/act_shift differ from 1/0 (kept in step with the buffers)
        self._spike_fn: Callable | None = None if neuron is None else neuron.spike_function()

    def decorrelate(self, x: torch.Tensor) -> torch.Tensor:
        """``x̃ = R x − μ̃`` if the layer decorrelates its input, else ``x``."""
        return x if self.decorrelation is None else self.decorrelation(x)

    def _through_decorrelation(self, g: torch.Tensor, post_sum: torch.Tensor) -> torch.Tensor:
        """Map ``G = Σ post ⊗ x`` (``out x d``, raw input) to ``Σ post ⊗ x̃ = G Rᵀ − (Σ post) μ̃ᵀ``."""
        dec = self.decorrelation
        if dec is None:
            return g
        g = g @ dec.R.T
        if dec.centring:
            g = g - post_sum[:, None] * dec.mean[None, :]
        return g

    def weight_gradient(self, post: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        r"""The local outer product ``Σ_samples post ⊗ x̃`` in the shape of ``weight``.

        ``post`` has the shape of the ``pre`` tap (``[N, *pre_features_shape]``), ``inputs``
        that of the ``input`` tap; a leading time axis may be merged into ``N``. This is
        ``∂(Σ post·z)/∂W``, what a local rule uses as its weight update (e.g. ``post`` = an
        error or activity difference). For a decorrelated convolution (``R`` folded into the
        kernel, ``input`` = the image) it maps the kernel-space product back to ``W``:
        ``G Rᵀ − (Σ post) μ̃ᵀ``.
        """
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{self.in_shape} -> {self.out_shape}, neuron={self.neuron}"


class Dense(Layer):
    r"""Fully connected layer, optionally recurrent: ``z = W x̃ + b + W_rec h[t-1]``, ``h = f(z)``.

    With ``neuron=None`` the layer is linear (a readout); with :class:`LIParams` a leaky
    integrator readout; with :class:`LIFParams` a spiking layer; with :class:`RateParams` a
    rate layer. Inputs with more than one feature dimension are flattened.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        neuron: Neuron | None = None,
        *,
        bias: bool = True,
        recurrent: bool = False,
        init: str = "default",
        init_gain: float = 1.0,
        recurrent_init: str = "orthogonal",
        recurrent_gain: float = 1.0,
    ) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ConfigError(f"a dense layer needs positive sizes, got {in_features} -> {out_features}")
        self.in_shape = (in_features,)
        self.out_shape = (out_features,)
        self.recurrent = recurrent
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        init_weight(self.weight, init, init_gain)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features))
            bound = 1.0 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        else:
            self.register_parameter("bias", None)
        if recurrent:
            self.recurrent_weight = nn.Parameter(torch.empty(out_features, out_features))
            init_weight(self.recurrent_weight, recurrent_init, recurrent_gain)
        else:
            self.register_parameter("recurrent_weight", None)
        self.decorrelation = None
        self._setup_neuron(neuron)

    def step(
        self, x: torch.Tensor, state: LayerState, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, LayerState, Taps]:
        if x.dim() > 2:
            x = x.flatten(1)
        z = self.drive(x)
        rec = state.prev if self.recurrent else None
        if rec is not None:
            z = z + F.linear(rec, self.recurrent_weight)
        if noise is not None:
            z = z + noise
        act, new_state, ns = self._neurons(z, state)
        return act, new_state, Taps(x, z, act, None if ns is None else ns.mem, rec, ns)

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """The feed-forward drive ``W x̃ + b`` of ``x`` (``[N, in]``). With decorrelation,
        ``R`` is applied to the rows (``N d²`` multiply-adds) or folded into ``W`` (``out d²``),
        whichever is cheaper; both give the same ``z`` and the same gradients."""
        dec = self.decorrelation
        if dec is None:
            return F.linear(x, self.weight, self.bias)
        if self.out_shape[0] < x.shape[0]:
            w, b = dec.fold(self.weight, self.bias)
            return F.linear(x, w, b)
        return F.linear(dec(x), self.weight, self.bias)

    def weight_gradient(self, post: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        post = post.reshape(-1, self.out_shape[0])
        g = post.T @ inputs.reshape(-1, self.weight.shape[1])
        return self._through_decorrelation(g, post.sum(0)) if self.decorrelation is not None else g


POOL_MODES = ("max", "avg", "sum")


class Conv2d(Layer):
    r"""Convolutional layer ``z = W * x̃ + b``, neurons, then optional pooling over ``pool x pool`` windows.

    ``pool_mode``: ``"max"`` (default), ``"avg"`` (mean of the window) or ``"sum"``. Spiking conv nets
    that go to NIR pool with ``"avg"`` or ``"sum"`` (NIR has AvgPool2d and SumPool2d, no max pooling).

    Taps are taken before pooling (``pre`` and ``act`` have the convolution's output shape);
    the layer's output (what the next layer sees) is the pooled activity.
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        out_channels: int,
        kernel_size: int,
        neuron: Neuron | None = None,
        *,
        stride: int = 1,
        padding: int = 0,
        pool: int = 1,
        pool_mode: str = "max",
        bias: bool = True,
        init: str = "default",
        init_gain: float = 1.0,
    ) -> None:
        super().__init__()
        if pool_mode not in POOL_MODES:
            from neurolearn.errors import unknown_name

            raise unknown_name("pool_mode", pool_mode, POOL_MODES)
        self.pool_mode = pool_mode
        if not isinstance(in_shape, (tuple, list)) or len(in_shape) != 3:
            raise ConfigError(f"Conv2d takes in_shape = (channels, height, width) first, then out_channels, kernel_size "
                              f"(e.g. Conv2d((1, 28, 28), 4, 5, neuron)), got in_shape={in_shape!r}; torch's "
                              "nn.Conv2d(in_channels, out_channels, kernel_size) order does not apply")
        c, h, w = in_shape
        self.in_shape = tuple(in_shape)
        self.stride, self.padding, self.pool, self.kernel_size = stride, padding, pool, kernel_size
        ho = (h + 2 * padding - kernel_size) // stride + 1
        wo = (w + 2 * padding - kernel_size) // stride + 1
        if ho <= 0 or wo <= 0:
            raise ConfigError(f"kernel {kernel_size} does not fit the input {in_shape}")
        self._conv_shape = (out_channels, ho, wo)
        self.out_shape = (out_channels, ho // pool, wo // pool)
        self.weight = nn.Parameter(torch.empty(out_channels, c, kernel_size, kernel_size))
        init_weight(self.weight, init, init_gain)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
            bound = 1.0 / math.sqrt(c * kernel_size * kernel_size)
            nn.init.uniform_(self.bias, -bound, bound)
        else:
            self.register_parameter("bias", None)
        self.register_parameter("recurrent_weight", None)
        self.decorrelation = None
        self._setup_neuron(neuron)

    @property
    def pre_features_shape(self) -> tuple[int, ...]:
        return self._conv_shape

    @property
    def units(self) -> int:
        return math.prod(self._conv_shape)

    def step(
        self, x: torch.Tensor, state: LayerState, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, LayerState, Taps]:
        if x.dim() == 2:
            x = x.reshape(x.shape[0], *self.in_shape)
        w, b = self.weight, self.bias
        if self.decorrelation is not None:  # R acts on flattened patches: fold it into the kernel
            w, b = self.decorrelation.fold(w, b)
        z = F.conv2d(x, w, b, stride=self.stride, padding=self.padding)
        if noise is not None:
            z = z + noise
        act, new_state, ns = self._neurons(z, state)
        out = self._pool(act)
        return out, new_state, Taps(x, z, act, None if ns is None else ns.mem, None, ns)

    def _pool(self, act: torch.Tensor) -> torch.Tensor:
        if self.pool == 1:
            return act
        if self.pool_mode == "max":
            return F.max_pool2d(act, self.pool)
        out = F.avg_pool2d(act, self.pool)
        return out * (self.pool * self.pool) if self.pool_mode == "sum" else out

    def weight_gradient(self, post: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        post = post.reshape(-1, *self._conv_shape)
        inputs = inputs.reshape(-1, *self.in_shape)
        g = torch.nn.grad.conv2d_weight(inputs, self.weight.shape, post, stride=self.stride, padding=self.padding)
        if self.decorrelation is None:
            return g
        return self._through_decorrelation(g.flatten(1), post.sum((0, 2, 3))).view_as(self.weight)


def check_input_features(layer: Layer, x: torch.Tensor) -> None:
    """Raise a :class:`ShapeError` unless ``x`` (``[B, ...]``) fits the layer's input."""
    features = tuple(x.shape[1:])
    if math.prod(features) != math.prod(layer.in_shape):
        raise ShapeError(
            f"the model expects inputs with features {list(layer.in_shape)} per sample "
            f"(shape [T, B, {', '.join(map(str, layer.in_shape))}]), got features {list(features)}; "
            "check the dataset or the model's input size"
        )
