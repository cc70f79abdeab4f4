r"""Preallocated workspaces for the rules' streamed sequence steps (issue 19).

A local rule's sequence step without autograd owns its state and its per-step temporaries, so it
can write them into buffers allocated once per sequence instead of fresh tensors at every step:
on CPU, writing a fresh ``[2176, 500]`` tensor costs about ten times a pass over memory already
touched (page faults), and a chain of allocating element-wise operations makes as many passes.

- :class:`Workspace` (``buf(name, shape)``): named buffers, reused over the steps of a sequence;
- :func:`dense_drive`: a dense layer's feed-forward drive ``z = W x̃ + b`` into a buffer, computed
  as ``(W x̃ᵀ)ᵀ`` for a narrow layer (a read-out: the product ``[N, n] × [n, C]`` with small ``C``
  runs at poor efficiency; ``W x̃ᵀ`` took 0.48 ms against 0.89 ms at ``N = 2176, n = 500, C = 10``);
- :func:`streamable`: whether a network's layers allow the streamed steps (dense, non-recurrent,
  no decorrelation, no output rescaling, not under autocast).
"""

from __future__ import annotations

import torch

from neurolearn.layers import Dense, Layer
from neurolearn.learning.grads import exact_enabled
from neurolearn.network import Network

NARROW = 32  # output units up to which W x̃ᵀ is computed instead of x̃ Wᵀ ...
MANY = 1024  # ... for at least this many rows (below, the gain is microseconds: the layer's own product
# and its rounding are kept; ANP on a tiny task follows the last-bit rounding of its loss differences).
# [N, 500] x [500, 10], one thread: W x̃ᵀ / x̃ Wᵀ = 0.66 at N = 256 (0.078 vs 0.118 ms: mlp-mnist ANP's
# doubled batch of 128), 0.62 from 512 on; 0.72 at 128, 0.82 at 64 (issue 19). Not lowered: a data-parallel
# run's shards (fewer rows) would then take the other form and round differently from one process
# (tests/test_distributed.py, exact sums, batch 100: 4.9e-6 with MANY = 256)


class Workspace:
    """Named buffers kept over a sequence: ``buf(name, shape, like)`` returns the same tensor at every
    call with the same shape and dtype (uninitialised the first time), a new one otherwise."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}

    def buf(self, name: str, shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
        b = self.buffers.get(name)
        if b is None or b.shape != tuple(shape) or b.dtype != like.dtype or b.device != like.device:
            b = self.buffers[name] = torch.empty(tuple(shape), dtype=like.dtype, device=like.device)
        return b

    def like(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """A buffer shaped like ``like``."""
        return self.buf(name, like.shape, like)


def buffer(work: dict[str, torch.Tensor] | None, name: str, like: torch.Tensor) -> torch.Tensor | None:
    """A workspace tensor shaped like ``like``, kept in the dict ``work`` across steps (``None``:
    none, the caller allocates anew)."""
    if work is None:
        return None
    buf = work.get(name)
    if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
        buf = work[name] = torch.empty_like(like)
    return buf


def dense_drive(layer: Dense, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``z = x̃ Wᵀ + b`` (``x`` ``[N, n]``) of a dense layer without decorrelation, written into
    ``out`` (``[N, C]``) when given. For a narrow layer (``C ≤ NARROW``, ``N ≥ MANY``) the product is taken as
    ``W x̃ᵀ`` (``[C, N]``, a transposed view is returned when ``out`` is ``None``); the sums are
    the same, their rounding may differ in the last bit."""
    w, b = layer.weight, layer.bias
    if w.shape[0] <= NARROW and x.shape[0] >= MANY:
        zt = torch.mm(w, x.t()) if b is None else torch.addmm(b.unsqueeze(1), w, x.t())
        if out is None:
            return zt.t()
        return out.copy_(zt.t())
    if out is None:
        return torch.nn.functional.linear(x, w, b)
    if b is None:
        return torch.mm(x, w.t(), out=out)
    return torch.addmm(b, x, w.t(), out=out)


def streamable(model: Network, x: torch.Tensor) -> bool:
    """Whether the streamed (in-place, preallocated) sequence steps apply: every layer dense,
    non-recurrent, without decorrelation or output rescaling, and no autocast (``out=`` products
    keep their buffers' dtype, so bf16 runs take the general path), and not under
    :func:`~neurolearn.learning.grads.exact_sums` (whose float64 batch sums the general path forms)."""
    if torch.is_autocast_enabled(x.device.type) or exact_enabled():
        return False
    return all(plain_dense(layer) for layer in model.layers)


def plain_dense(layer: Layer) -> bool:
    """A dense, non-recurrent layer without decorrelation or output rescaling."""
    return (isinstance(layer, Dense) and not layer.recurrent and layer.decorrelation is None
            and not layer.rescaled)


SPARSE = 0.25  # input density up to which EventDrive sums columns instead of taking the dense product


class EventDrive:
    r"""A dense layer's drive ``z = x̃ Wᵀ + b`` from the nonzero entries of a sparse input (spikes):
    ``z_n = b + Σ_{i: x̃_{n,i} ≠ 0} x̃_{n,i} W_{:,i}``, one gathered column per event
    (``torch.nn.functional.embedding_bag`` over ``Wᵀ``, transposed once per sequence: the weights
    do not change within a step). What event-driven hardware does; on this CPU the MNIST input
    spikes (about 13 % nonzero) cost about two thirds of the dense product's time. Inputs denser
    than :data:`SPARSE` take the dense product. The sums are the product's, in another order (the
    last bits differ)."""

    def __init__(self, layer: Dense) -> None:
        self.layer = layer
        self.weight_t = layer.weight.detach().t().contiguous()  # [in, out]: one row per input unit
        self.rows = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, k = x.shape
        flat = x.reshape(-1)
        idx = flat.bool().nonzero().squeeze(1)  # (a bool mask's nonzero: about half the time of a float's)
        if idx.numel() > SPARSE * flat.numel():
            return dense_drive(self.layer, x)
        if self.rows is None or self.rows.numel() != n:
            self.rows = torch.arange(n, device=x.device)
        sample = torch.div(idx, k, rounding_mode="floor")
        offsets = torch.searchsorted(sample, self.rows)
        z = torch.nn.functional.embedding_bag(idx - sample * k, self.weight_t, offsets, mode="sum",
                                              per_sample_weights=flat.index_select(0, idx))
        return z if self.layer.bias is None else z.add_(self.layer.bias)


class PackedSpikes:
    """Binary activity over a sequence (``[T, B, ...]`` of 0/1) kept as bits, eight to a byte: a
    32nd of the float32 memory. :meth:`store` packs step ``t`` (``b = Σ_j 2^j s_{8i+j}``, exact in
    floating point), ``spikes[t]`` unpacks it into a tensor of ``dtype``."""

    def __init__(self, steps: int, like: torch.Tensor, dtype: torch.dtype | None = None) -> None:
        self.shape = like.shape  # one step: [B, ...]
        self.rows = like.shape[0]
        self.n = like[0].numel()
        self.bytes = (self.n + 7) // 8
        self.dtype = dtype or like.dtype
        self.bits = torch.empty((steps, self.rows, self.bytes), dtype=torch.uint8, device=like.device)
        self.weights = 2.0 ** torch.arange(8, dtype=like.dtype, device=like.device)
        self.shifts = torch.arange(8, dtype=torch.uint8, device=like.device)

    def store(self, t: int, spikes: torch.Tensor) -> None:
        """Pack step ``t``'s spikes (``[B, ...]``, every entry 0 or 1)."""
        s = spikes.reshape(self.rows, self.n)
        if self.n % 8:
            s = torch.nn.functional.pad(s, (0, 8 * self.bytes - self.n))
        self.bits[t].copy_(torch.matmul(s.view(self.rows, self.bytes, 8), self.weights))

    def __getitem__(self, t: int) -> torch.Tensor:
        """Step ``t``'s spikes, unpacked (``[B, ...]`` of :attr:`dtype`)."""
        b = (self.bits[t].unsqueeze(-1) >> self.shifts).bitwise_and_(1)
        return b.view(self.rows, 8 * self.bytes)[:, :self.n].to(self.dtype).view(self.shape)
