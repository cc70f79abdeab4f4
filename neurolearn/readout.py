r"""Closed-form linear solvers, and a closed-form readout for spiking and recurrent reservoirs.

Least squares (shared by ZORB and the readout fit), for inputs ``A`` (``[N, d]``) and
targets ``T`` (``[N, C]``), in float64:

- :func:`lstsq_pinv`: the minimum-norm solution ``W = A⁺ T`` (SVD; singular values below
  ``rcond · σ_max`` are dropped), exactly what ``numpy.linalg.lstsq`` returns;
- :class:`NormalEquations`: streaming ridge regression. Chunks of rows are added up into
  ``G = Σ AᵀA`` and ``R = Σ AᵀT`` (memory ``O(d² + dC)``, independent of ``N``), then
  ``W = (G + α I)⁻¹ R`` with ``α = ridge · mean(diag G)`` (scale-free ridge) by Cholesky.

Reservoir readout (:func:`fit_readout`): a network whose last layer is a plain ``Dense``
readout (no neuron, or a leaky integrator ``LIParams``) is *linear in the readout's
parameters*: the decoded prediction of sample ``n`` is

.. math::  \hat y_n = W \phi_n + b\, c + o,

where ``φ_n`` are the penultimate layer's spikes (or rates) passed through the readout's
own linear filter (for a leaky integrator ``v[t] = β v[t-1] + r(1-β) I[t]``) and the
network's decode (``last`` / ``mean`` / ``sum``), ``c`` is the same filter and decode
applied to a constant 1 (the bias channel) and ``o`` the decoded response to ``v_leak``.
So the readout that minimises ``Σ_n ‖ŷ_n − y_n‖² + α‖[W b]‖²`` is found in one ridge
solve over the filtered spikes. Targets: one-hot labels (``target="onehot"``), optionally
followed by ZORB's softmax-inverse refinement (``target="softmax"``: the one-hot targets
are mapped through the inverse softmax at the current logits and solved again).

Needs: the reservoir's activity for the whole training set (as sufficient statistics
``G``, ``R``) and a matrix inverse: a non-local, whole-batch solver (like an echo-state /
liquid-state machine's readout), not a plasticity rule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from neurolearn.errors import ConfigError, ShapeError
from neurolearn.layers import Dense
from neurolearn.network import Network

DTYPE = torch.float64


def lstsq_pinv(a: torch.Tensor, t: torch.Tensor, rcond: float = 1e-15) -> torch.Tensor:
    """Minimum-norm least-squares ``W = A⁺ T`` (``[d, C]``) by SVD, in float64."""
    a = a.to(DTYPE)
    t = t.to(DTYPE)
    if t.dim() == 1:
        t = t[:, None]
    if a.shape[0] != t.shape[0]:
        raise ShapeError(f"least squares: A has {a.shape[0]} rows but T has {t.shape[0]}")
    return torch.linalg.lstsq(a, t, rcond=rcond, driver="gelsd").solution


class NormalEquations:
    """Streaming ridge regression: add chunks of rows, then :meth:`solve` (see module doc)."""

    def __init__(self, d: int, c: int, device=None) -> None:
        self.gram = torch.zeros(d, d, dtype=DTYPE, device=device)
        self.cross = torch.zeros(d, c, dtype=DTYPE, device=device)
        self.rows = 0

    def add(self, a: torch.Tensor, t: torch.Tensor) -> None:
        """Add the rows ``a`` (``[n, d]``) with targets ``t`` (``[n, C]``)."""
        a = a.to(DTYPE)
        t = t.to(DTYPE)
        self.gram.addmm_(a.T, a)
        self.cross.addmm_(a.T, t)
        self.rows += a.shape[0]

    def solve(self, ridge: float = 1e-8) -> torch.Tensor:
        """``W = (G + α I)⁻¹ R`` with ``α = ridge · mean(diag G)``; ``[d, C]``."""
        if self.rows == 0:
            raise ConfigError("NormalEquations.solve: no rows were added")
        d = self.gram.shape[0]
        alpha = ridge * float(self.gram.diagonal().mean().clamp_min(1e-300))
        g = self.gram + alpha * torch.eye(d, dtype=DTYPE, device=self.gram.device)
        chol, info = torch.linalg.cholesky_ex(g)
        if int(info) != 0:  # singular even with the ridge: fall back to the pseudoinverse
            return torch.linalg.lstsq(g, self.cross, rcond=1e-12, driver="gelsd").solution
        return torch.cholesky_solve(self.cross, chol)


def with_ones(h: torch.Tensor) -> torch.Tensor:
    """``[H, 1]``: the input augmented with the bias channel."""
    return torch.cat([h, torch.ones(h.shape[0], 1, dtype=h.dtype, device=h.device)], 1)


def softmax_inverse(targets: torch.Tensor, logits: torch.Tensor, epsilon: float = 1e-5) -> torch.Tensor:
    r"""ZORB's relaxed inverse of the softmax: ``T = log(Y ⊙ s + ε) + m``.

    ``m`` (row max) and ``s`` (row sum of ``exp(logits − m)``) come from the current logits,
    so a one-hot target maps to logit ``m + log(s + ε)`` for its class (at least the current
    maximum) and ``m + log ε`` for the others.
    """
    m = logits.max(1, keepdim=True).values
    s = torch.exp(logits - m).sum(1, keepdim=True)
    return torch.log(targets * s + epsilon) + m


# --------------------------------------------------------------------------------------
# The readout of a reservoir
# --------------------------------------------------------------------------------------


def _check_readout(model: Network) -> Dense:
    readout = model.layers[-1]
    if not isinstance(readout, Dense) or readout.recurrent or readout.decorrelation is not None:
        raise ConfigError("fit_readout needs a plain (non-recurrent, non-decorrelated) Dense readout as last layer")
    if readout.neuron is not None and readout.neuron.linear_response() is None:
        raise ConfigError(
            f"fit_readout needs a linear readout (neuron None or a leaky integrator 'li'), got {readout.neuron}; "
            "a spiking or non-linear readout is not linear in its weights"
        )
    if model.decode not in ("last", "mean", "sum"):
        raise ConfigError(f"fit_readout needs decode last, mean or sum (linear), got {model.decode!r}")
    if model.decode_window is not None:
        raise ConfigError("fit_readout does not support decode_window yet; remove it from the model")
    return readout


def _filter_decode(drive: torch.Tensor, readout: Dense, decode: str) -> torch.Tensor:
    """The readout's linear filter over time, then the decode: ``[T, B, F] -> [B, F]``."""
    response = None if readout.neuron is None else readout.neuron.linear_response()
    if response is not None and response[0] != 0.0:
        beta, gain, _ = response
        v = torch.zeros_like(drive[0])
        out = []
        for t in range(drive.shape[0]):
            v = beta * v + gain * drive[t]
            out.append(v)
        drive = torch.stack(out)
    elif response is not None and response[1] != 1.0:
        drive = response[1] * drive
    if decode == "last":
        return drive[-1]
    if decode == "mean":
        return drive.mean(0)
    return drive.sum(0)


@torch.no_grad()
def readout_features(model: Network, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(φ, offset)`` for an encoded batch ``x`` (``[T, B, ...]``): ``ŷ = [φ, c] [W b]ᵀ + offset``.

    ``φ`` is ``[B, F + 1]`` in float64, its last column the bias channel ``c``.
    """
    readout = _check_readout(model)
    model.check_input(x)
    steps, batch = x.shape[0], x.shape[1]
    state = model.init_state(batch, x.device, x.dtype)
    h_seq = []
    for t in range(steps):
        h = x[t]
        for k, layer in enumerate(model.layers[:-1]):
            h, state[k], _ = layer.step(h, state[k])
        h_seq.append(h.flatten(1) if h.dim() > 2 else h)
    drive = torch.stack(h_seq).to(DTYPE)
    ones = torch.ones(steps, batch, 1, dtype=DTYPE, device=x.device)
    phi = _filter_decode(torch.cat([drive, ones], -1), readout, model.decode)
    offset = torch.zeros(batch, readout.out_shape[0], dtype=DTYPE, device=x.device)
    response = None if readout.neuron is None else readout.neuron.linear_response()
    if response is not None and response[2] != 0.0:  # the membrane starts and rests at v_rest
        offset = offset + response[2] * (steps if model.decode == "sum" else 1.0)
    return phi, offset


@dataclass
class ReadoutFit:
    """What :func:`fit_readout` did: time spent extracting features and solving, train accuracy."""

    feature_s: float
    solve_s: float
    train_accuracy: float


@torch.no_grad()
def fit_readout(
    model: Network,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    ridge: float = 1e-4,
    chunk: int = 500,
    target: str = "onehot",
    epsilon: float = 1e-5,
    generator: torch.Generator | None = None,
    features: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> ReadoutFit:
    """Set the readout (last layer) of ``model`` in closed form from data ``x`` (``[N, ...]``).

    ``y`` holds class indices ``[N]``. The inputs are encoded with ``model.encode`` in chunks
    of ``chunk`` samples (``generator`` drives random encoders). ``features`` (``(φ,
    offset)`` from :func:`readout_features` over the whole set) skips the extraction.
    """
    if target not in ("onehot", "softmax"):
        raise ConfigError(f"fit_readout: target must be 'onehot' or 'softmax', got {target!r}")
    readout = _check_readout(model)
    n_out = readout.out_shape[0]
    t0 = time.perf_counter()
    if features is None:
        phis, offs = [], []
        for i in range(0, x.shape[0], chunk):
            phi, off = readout_features(model, model.encode(x[i:i + chunk], generator))
            phis.append(phi)
            offs.append(off)
        features = (torch.cat(phis), torch.cat(offs))
    phi, offset = features
    if readout.bias is None:
        phi = phi[:, :-1]
    t1 = time.perf_counter()
    onehot = F.one_hot(y.long(), n_out).to(DTYPE).to(phi.device)
    ne = NormalEquations(phi.shape[1], n_out, phi.device)
    ne.add(phi, onehot - offset)
    w = ne.solve(ridge)
    if target == "softmax":  # ZORB-style: targets through the inverse softmax at the current logits
        logits = phi @ w + offset
        ne = NormalEquations(phi.shape[1], n_out, phi.device)
        ne.add(phi, softmax_inverse(onehot, logits, epsilon) - offset)
        w = ne.solve(ridge)
    t2 = time.perf_counter()
    if readout.bias is not None:
        readout.weight.copy_(w[:-1].T.to(readout.weight.dtype))
        readout.bias.copy_(w[-1].to(readout.bias.dtype))
    else:
        readout.weight.copy_(w.T.to(readout.weight.dtype))
    acc = float(((phi @ w + offset).argmax(1) == y.to(phi.device)).double().mean())
    return ReadoutFit(feature_s=t1 - t0, solve_s=t2 - t1, train_accuracy=acc)
