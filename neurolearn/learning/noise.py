r"""Node noise and the paired clean/noisy runs of the perturbation rules.

One forward pass carries the stacked batch ``[clean; noisy_1; ...; noisy_K]`` (``K + 1``
copies of each sample); per-copy quantities come back as ``t[noisy_k] − t[clean]``
(:func:`noisy_minus_clean`), and per-draw post-synaptic factors are summed over the draws
before the outer product with the shared clean input (:func:`sum_draws`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from neurolearn.layers import Dense, LayerState, Taps
from neurolearn.learning.workspace import (MANY, NARROW, buffer as _buffer, dense_drive, event_drive, plain_dense,
                                          sparse_input)
from neurolearn.network import Network

NOISES = ("gaussian", "bernoulli")


_BITS = 63  # random bits used of one int64 draw (randint's range stops below 2**63)


_CHUNK = 1024  # int64 words expanded at a time (64 K signs: the int64 bits stay in the cache, not 8 bytes per sign)


def rademacher(shape: tuple[int, ...], sigma: float, generator: torch.Generator | None,
               like: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``±σ`` with probability 1/2 each, from packed random bits: one int64 draw gives 63 signs
    (``b = (w >> k) & 1``, ``ε = σ (2b − 1)``), about 10x faster than one integer draw per entry
    and 2-3x faster than Gaussian noise (issue 19). The words are drawn at once and expanded in
    chunks straight into ``out`` (a contiguous tensor of ``shape``, allocated when ``None``), so no
    int64 copy of the whole draw exists. Draws ``[0, 2^63 − 1)``: the all-ones word is missing, a
    bias of 2^-63."""
    n = math.prod(shape)
    if out is None:
        out = torch.empty(shape, dtype=like.dtype, device=like.device)
    flat = out.view(-1)
    words = torch.randint(0, 2**_BITS - 1, ((n + _BITS - 1) // _BITS, 1), dtype=torch.int64,
                          generator=generator, device=like.device)
    shifts = torch.arange(_BITS, device=like.device)
    for lo in range(0, words.shape[0], _CHUNK):
        bits = (words[lo:lo + _CHUNK] >> shifts).bitwise_and_(1).view(-1)
        start = lo * _BITS
        part = flat[start:start + min(bits.numel(), n - start)]
        part.copy_(bits[:part.numel()])
        part.mul_(2.0 * sigma).sub_(sigma)
    return out


def draw_noise(shape: tuple[int, ...], sigma: float, kind: str, generator: torch.Generator | None,
               like: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Zero-mean noise of variance ``σ²``: Gaussian ``N(0, σ²)`` or Bernoulli ``±σ`` (:func:`rademacher`),
    written into ``out`` (contiguous, of ``shape``) when given."""
    if kind == "gaussian":
        if out is None:
            return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype) * sigma
        return out.normal_(0.0, sigma, generator=generator)
    return rademacher(shape, sigma, generator, like, out=out)


def pair_step(model: Network, x: torch.Tensor, state, noise, batch: int, paired: bool = True,
              copies: int = 2, inplace: bool = False, work: dict[str, torch.Tensor] | None = None):
    """One step of the stacked batch ``[clean; noisy_1; ...; noisy_K]`` (``copies = K + 1``
    copies of the input ``x``, ``[B, ...]``).

    The first layer's feed-forward drive ``W x̃ + b`` is the same in every copy, so a dense
    first layer computes it once (the copies differ only by noise and recurrent input);
    the rest runs as :meth:`Network.step` would. Returns ``(output, state, taps)``; a dense
    first layer's ``input`` tap holds the shared input once (``[B, ...]``: its rows are the
    clean copy's, and every copy's), not ``copies`` stacked duplicates of it.

    ``inplace`` (a caller without autograd that owns ``state`` and keeps no tap past the step):
    the first layer's neurons update their state in place (:meth:`Neuron.step_`, same numbers).
    ``work``: a dict the caller keeps over the sequence, in which the first layer's current and
    (``inplace``) activity are written at every step instead of fresh tensors (then no tap of
    the first layer outlives the step). With ``inplace`` (and no autocast) a later dense layer's
    drive comes from :func:`~neurolearn.learning.workspace.dense_drive` (a narrow read-out's
    product taken as ``W hᵀ``, about half the time; its rounding may differ in the last bit).
    """
    if not paired:
        return model.step(x, state, noise)
    first = model.layers[0]
    if not isinstance(first, Dense):
        return model.step(torch.cat([x] * copies), state, noise)
    xin = x.flatten(1) if x.dim() > 2 else x
    drive = first.drive(xin)
    rec = state[0].prev if first.recurrent else None
    if rec is None and noise is not None and noise[0] is not None:  # one pass: the copies' noise + the drive
        if work is None:
            z = torch.add(noise[0].view(copies, *drive.shape), drive).view(noise[0].shape)
        else:
            z = _buffer(work, "z", noise[0])
            torch.add(noise[0].view(copies, *drive.shape), drive, out=z.view(copies, *drive.shape))
    else:
        z = drive.repeat(copies, *([1] * (drive.dim() - 1)))
        if rec is not None:
            z = z + F.linear(rec, first.recurrent_weight)
        if noise is not None and noise[0] is not None:
            z = z + noise[0]
    if inplace and first.neuron is not None and not first.rescaled and not first.recurrent:
        h, ns = first.neuron.step_(z, state[0].neuron, first._spike_fn, out=_buffer(work, "act", z))
        s0 = LayerState(ns, None)
    else:
        h, s0, ns = first._neurons(z, state[0])
    taps = [Taps(xin, z, h, None if ns is None else ns.mem, rec, ns)]
    new_state = [s0]
    fast = inplace and not torch.is_autocast_enabled(h.device.type)
    return _later_layers(model, h, state, noise, new_state, taps, fast)


def _later_layers(model: Network, h: torch.Tensor, state, noise, new_state: list, taps: list, fast: bool,
                  drive: torch.Tensor | None = None, clean_input: torch.Tensor | None = None):
    """Layers ``1..`` of a stacked-batch step after the first layer's activity ``h`` (appending to
    ``new_state`` and ``taps``); ``fast``: a plain dense layer's drive from
    :func:`~neurolearn.learning.workspace.dense_drive` (a narrow product as ``W hᵀ``). ``drive``: layer 1's
    feed-forward drive already computed (then ``h`` is not read), with ``clean_input`` its input tap."""
    for k, layer in enumerate(model.layers[1:], start=1):
        if drive is not None and k == 1:
            z = drive if noise is None or noise[k] is None else drive + noise[k]
            h, s, ns = layer._neurons(z, state[k])
            tp = Taps(clean_input, z, h, None if ns is None else ns.mem, None, ns)
        elif fast and plain_dense(layer):  # Dense.step, with a narrow layer's product taken as W hᵀ
            xin = h.flatten(1) if h.dim() > 2 else h
            z = dense_drive(layer, xin)
            if noise is not None and noise[k] is not None:
                z.add_(noise[k])  # z is this step's own tensor
            h, s, ns = layer._neurons(z, state[k])
            tp = Taps(xin, z, h, None if ns is None else ns.mem, None, ns)
        else:
            h, s, tp = layer.step(h, state[k], None if noise is None else noise[k])
        new_state.append(s)
        taps.append(tp)
    return h, new_state, taps


BLOCK_ROWS = 512  # rows of the stacked batch per block in blocked_pair_step (4 copies of a batch of 128)


def blocked_first_layer(model: Network) -> bool:
    """Whether :func:`blocked_pair_step` can run ``model``: two or more plain dense layers, the first
    one's neurons taking a pre-multiplied input (:meth:`~neurolearn.neurons.base.Neuron.step_gained_`)."""
    first = model.layers[0]
    return (len(model.layers) > 1 and first.neuron is not None and first.neuron.input_gain() is not None
            and all(plain_dense(layer) for layer in model.layers))


def first_layer_gain(model: Network) -> float:
    """The first layer's :meth:`~neurolearn.neurons.base.Neuron.input_gain` for :func:`blocked_pair_step`,
    exactly 1 when it is 1 up to rounding (``(1 − β) r`` with the default ``r = τ/dt``): no pass then."""
    gain = model.layers[0].neuron.input_gain()
    return 1.0 if abs(gain - 1.0) <= 1e-12 else gain


def blocked_pair_step(model: Network, x: torch.Tensor, state, gained_noise: torch.Tensor | None, noise,
                      batch: int, copies: int, work: dict[str, Any], block_rows: int | None = None):
    """:func:`pair_step` (``inplace``, with a ``work`` dict) for a stacked batch of many copies whose
    first layer runs in blocks of about ``block_rows`` rows (whole copies; default :data:`BLOCK_ROWS`):
    in a block the neurons' passes over their state, their spikes and the second layer's product follow each other
    while the block is in the cache, and no whole-batch activity of the first layer is ever formed
    (one block's; the second layer's drive is written block by block into one ``[N, C]`` buffer).

    The first layer's drive ``W x̃ + b`` is computed once for the ``B`` shared inputs (from their events
    when the first step's input is sparse, :func:`~neurolearn.learning.workspace.event_drive`) and multiplied
    by the neurons' :meth:`~neurolearn.neurons.base.Neuron.input_gain` ``g``; ``gained_noise`` is its node
    noise already multiplied by ``g`` (``[copies·B, ...]``, e.g. frozen over the sequence and multiplied
    once), and the neurons step with :meth:`~neurolearn.neurons.base.Neuron.step_gained_` (in place in
    ``state[0]``). ``noise``: the node noise of every layer (the first one's is not read; ``None``
    entries add none). Layers ``1..`` then run as in :func:`pair_step`.

    Returns ``(output, state, taps)`` as :func:`pair_step` does, except that the first layer's taps carry
    only its input (``[B, ...]``, the shared one) and the second layer's ``input`` tap holds the clean
    copy's rows only (``[B, ...]``): what a rule whose first-layer term is its own noise reads
    (:meth:`~neurolearn.rules.perturbation.NodeNoiseRule.constant_post`).
    """
    first, second = model.layers[0], model.layers[1]
    xin = x.flatten(1) if x.dim() > 2 else x
    gain = first_layer_gain(model)
    if "weight_t" not in work:  # a sparse input (spikes): the drive from its events, W fixed over the sequence
        work["weight_t"] = first.weight.t().contiguous() if sparse_input(x.unsqueeze(0)) else None
    u = dense_drive(first, xin) if work["weight_t"] is None else event_drive(xin, work["weight_t"], first.bias)
    if gain != 1.0:
        u.mul_(gain)
    rows = copies * batch
    per = max(1, (BLOCK_ROWS if block_rows is None else block_rows) // batch)  # copies per block
    n0 = u.shape[1:]
    spikes = work.get("block_act")
    if spikes is None or spikes.shape != (per * batch, *n0) or spikes.dtype != u.dtype:
        spikes = work["block_act"] = u.new_empty((per * batch, *n0))
    w, b = second.weight, second.bias
    narrow = w.shape[0] <= NARROW and rows >= MANY  # the product as W hᵀ into a [C, N] buffer (dense_drive)
    drive = work.get("drive1")
    shape = (w.shape[0], rows) if narrow else (rows, w.shape[0])
    if drive is None or drive.shape != shape or drive.dtype != u.dtype:
        drive = work["drive1"] = u.new_empty(shape)
    # the clean copy is a block of its own, its spikes written where the second layer's input tap reads them
    clean = _buffer(work, "clean_input", u)
    neurons = state[0].neuron
    for c0, c1 in [(0, 1)] + [(c, min(copies, c + per)) for c in range(1, copies, per)]:
        lo, hi = c0 * batch, c1 * batch
        view = (c1 - c0, batch, *n0)
        block = type(neurons)(*(f[lo:hi].view(view) if isinstance(f, torch.Tensor) else f for f in neurons))
        off = None if gained_noise is None else gained_noise[lo:hi].view(view)
        h, returned = first.neuron.step_gained_(u, block, offset=off,
                                                out=(clean if c0 == 0 else spikes[:hi - lo]).view(view))
        h = h.view(hi - lo, -1)
        if narrow:
            if b is None:
                torch.mm(w, h.t(), out=drive[:, lo:hi])
            else:
                torch.addmm(b.unsqueeze(1), w, h.t(), out=drive[:, lo:hi])
        elif b is None:
            torch.mm(h, w.t(), out=drive[lo:hi])
        else:
            torch.addmm(b, h, w.t(), out=drive[lo:hi])
    # step_gained_ updated the blocks of the state's tensors in place: the whole-batch state is those
    # tensors, less the fields it returns as None (LIF: the pre-reset membrane, not kept)
    s0 = LayerState(type(neurons)(*(None if r is None else f for f, r in zip(neurons, returned))), None)
    taps = [Taps(xin, None, None, None, None, s0.neuron)]
    return _later_layers(model, None, state, noise, [s0], taps, True,
                         drive=drive.t() if narrow else drive, clean_input=clean)


def noisy_minus_clean(t: torch.Tensor, batch: int) -> torch.Tensor:
    """``t[noisy_k] - t[clean]`` for every noisy copy of a stacked batch
    ``[clean; noisy_1; ...; noisy_K]`` (``[(K+1)B, ...]`` -> ``[K·B, ...]``, copy-major)."""
    if t.shape[0] == 2 * batch:
        return t[batch:] - t[:batch]
    return (t[batch:].unflatten(0, (-1, batch)) - t[:batch]).flatten(0, 1)


def sum_draws(g: torch.Tensor, batch: int, dim: int = 0) -> torch.Tensor:
    """Sum per-copy factors ``[..., K·B, ...]`` over the ``K`` draws (axis ``dim``) -> ``[..., B, ...]``.

    ``Σ_{k,n} g[k,n] x̃[n]ᵀ = Σ_n (Σ_k g[k,n]) x̃[n]ᵀ``: the clean input is shared by every
    draw, so ``K`` draws cost ``K`` noisy forward passes but one outer product per layer."""
    if g.shape[dim] == batch:
        return g
    return g.unflatten(dim, (-1, batch)).sum(dim)


def shares_first_drive(model: Network) -> bool:
    """Whether :func:`pair_step` computes the first layer's drive once for every copy (a dense,
    non-recurrent first layer): then its current difference between copies is their noise difference."""
    first = model.layers[0]
    return isinstance(first, Dense) and not first.recurrent
