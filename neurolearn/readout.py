r"""Closed-form linear solvers, and a closed-form readout for spiking and recurrent reservoirs.

Least squares (shared by ZORB and the readout fit), for inputs ``A`` (``[N, d]``) and
targets ``T`` (``[N, C]``), in float64:

- :func:`lstsq_pinv`: the minimum-norm solution ``W = A⁺ T`` (SVD; singular values below
  ``rcond · σ_max`` are dropped), exactly what ``numpy.linalg.lstsq`` returns;
- :class:`NormalEquations`: streaming ridge regression. Chunks of rows are added up into
  ``G = Σ AᵀA`` (its lower triangle, by blocks of :data:`GRAM_BLOCK` columns: about half the
  products of a full ``AᵀA``) and ``R = Σ AᵀT`` (memory ``O(d² + dC)``, independent of ``N``), then
  ``W = (G + α I)⁻¹ R`` with ``α = ridge · mean(diag G)`` (scale-free ridge) by Cholesky
  (always factored in float64: ``O(d³)``, negligible beside the ``O(N d²)`` sums);
- :func:`ridge_least_squares`: the same solve with a choice of the precision of the sums,
  which dominate the cost. ``precision="float32"`` accumulates ``G`` and ``R`` in float32
  (1.85x the GEMM throughput of float64 on one core here); ``"auto"`` does that, checks
  whether float32 rounding can matter and, where it can, uses the float64 sums instead: decided
  on the first chunk when that is already singular in float32 (no float32 sums of the other
  chunks thrown away), else confirmed on all rows.

  The check: a float32 dot product of two columns errs by at most ``γ_n ‖a_i‖ ‖a_j‖``, so the
  rounding is ``δG = D^{1/2} E D^{1/2}`` with ``D = diag(G_α)`` (``G_α = G + αI``) and
  ``|E_ij| ≲ u₃₂`` (blocked summation); the relative error of the solution is then bounded by
  about ``κ(S) · u₃₂`` with the Jacobi-scaled matrix ``S = D^{-1/2} G_α D^{-1/2}`` (unit
  diagonal; a column that is zero in every row, such as a blank MNIST pixel, is exact in
  float32 and decouples). ``κ(S)`` is estimated by power and inverse iteration on the
  Cholesky factor of ``S`` (``O(d²)`` per iteration, :func:`spd_condition`); above
  ``tolerance / u₃₂`` (``tolerance`` 0.1) the sums are float64 (:class:`SolveReport` says
  which was used and why). ``G`` and ``R`` change precision together: float32 rounding of
  ``R`` alone moves an ill-conditioned layer's solution by far more than the float32
  rounding of its activities does (measured in :func:`ridge_least_squares`' docstring).

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


U32 = float(torch.finfo(torch.float32).eps)
"""float32's unit roundoff scale (machine epsilon, 1.19e-7)."""

PRECISIONS = ("float64", "float32", "auto")
GRAM_BLOCK = 256
"""Columns per block of the Gram sums (only blocks on and below the diagonal are computed)."""


def spd_condition(s: torch.Tensor, chol: torch.Tensor, iterations: int = 30) -> float:
    """Estimate ``κ(S) = λ_max/λ_min`` of a symmetric positive definite ``S`` with Cholesky factor
    ``chol``: power iteration for ``λ_max``, inverse iteration (Cholesky solves) for ``λ_min``,
    from a fixed start; ``O(d²)`` per iteration, a lower bound, tight in practice."""
    gen = torch.Generator(device=s.device).manual_seed(0)
    v = torch.randn(s.shape[0], 1, dtype=s.dtype, device=s.device, generator=gen)
    u = v.clone()
    lam_max, lam_min_inv = 1.0, 1.0
    for _ in range(iterations):
        v = s @ v
        lam_max = float(v.norm())
        v /= lam_max
        u = torch.cholesky_solve(u, chol)
        lam_min_inv = float(u.norm())
        u /= lam_min_inv
    return lam_max * lam_min_inv


class NormalEquations:
    r"""Streaming ridge regression: add chunks of rows, then :meth:`solve` (see module doc).

    ``dtype`` is the precision of the sums (float64 by default); the solve is always float64.
    ``shift = (μ, ζ)`` (column means of the inputs and targets) accumulates the *centred* sums
    ``G_c = Σ (a − μ)ᵀ(a − μ)``, ``R_c = Σ (a − μ)ᵀ(t − ζ)``, whose float32 rounding scales with
    the columns' spread instead of their mean. The shift need not be the exact mean: with the
    sums of the centred rows ``s = Σ (a − μ)``, ``σ = Σ (t − ζ)`` (float64 totals of per-chunk
    sums), :meth:`totals` restores ``G = G_c + μsᵀ + sμᵀ + n μμᵀ`` and
    ``R = R_c + μσᵀ + sζᵀ + n μζᵀ`` in float64 (exact algebra, with ``μ``, ``ζ`` rounded to
    ``dtype`` once: the numbers actually subtracted). ``bias`` borders them with the column of
    ones (``[G, Σa; Σaᵀ, n]``, ``[R; Σtᵀ]``, ``Σa = s + nμ``) without summing it.
    """

    def __init__(self, d: int, c: int, device=None, dtype: torch.dtype = DTYPE,
                 shift: tuple[torch.Tensor, torch.Tensor] | None = None, bias: bool = False) -> None:
        if bias and shift is None:
            raise ConfigError("NormalEquations: bias bordering needs shift (else append the ones to the rows)")
        self.dtype, self.bias = dtype, bias
        # the shifts as subtracted: rounded to the sums' precision, held in float64
        self.shift = None if shift is None else tuple(v.to(device=device, dtype=dtype).to(DTYPE) for v in shift)
        self.gram = torch.zeros(d, d, dtype=dtype, device=device)
        self.cross = torch.zeros(d, c, dtype=dtype, device=device)
        self.centred_sums = (torch.zeros(d, dtype=DTYPE, device=device), torch.zeros(c, dtype=DTYPE, device=device))
        self.rows = 0

    def add(self, a: torch.Tensor, t: torch.Tensor) -> None:
        """Add the rows ``a`` (``[n, d]``) with targets ``t`` (``[n, C]``)."""
        a = a.to(self.dtype)
        t = t.to(self.dtype)
        if self.shift is not None:
            a = a - self.shift[0].to(self.dtype)
            t = t - self.shift[1].to(self.dtype)
            self.centred_sums[0].add_(a.sum(0))
            self.centred_sums[1].add_(t.sum(0))
        d = a.shape[1]
        for j in range(0, d, GRAM_BLOCK):  # the lower triangle by column blocks: about half of AᵀA's products
            j1 = min(j + GRAM_BLOCK, d)
            self.gram[j:, j:j1].addmm_(a[:, j:].T, a[:, j:j1])
        self.cross.addmm_(a.T, t)
        self.rows += a.shape[0]

    def symmetric_gram(self) -> torch.Tensor:
        """The summed ``G`` (or ``G_c``) in float64, its upper triangle filled from the lower."""
        lower = self.gram.to(DTYPE).tril()
        return lower + lower.tril(-1).T

    def totals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(G, R)`` of the uncentred (and, with ``bias``, bordered) system, float64."""
        if self.rows == 0:
            raise ConfigError("NormalEquations.solve: no rows were added")
        g, r = self.symmetric_gram(), self.cross.to(DTYPE)
        if self.shift is None:
            return g, r
        n = float(self.rows)
        mu, zeta = self.shift  # the shifts as subtracted (float32 values, held in float64)
        s, sigma = self.centred_sums
        g = g + torch.outer(mu, s) + torch.outer(s, mu) + n * torch.outer(mu, mu)
        r = r + torch.outer(mu, sigma) + torch.outer(s, zeta) + n * torch.outer(mu, zeta)
        if self.bias:
            d = g.shape[0]
            col = s + n * mu
            full = torch.empty(d + 1, d + 1, dtype=DTYPE, device=g.device)
            full[:d, :d], full[:d, d], full[d, :d], full[d, d] = g, col, col, n
            g, r = full, torch.cat([r, (sigma + n * zeta)[None]], 0)
        return g, r

    def regularised(self, ridge: float) -> torch.Tensor:
        """``G_α = G + α I`` in float64, ``α = ridge · mean(diag G)``."""
        g, _ = self.totals()
        alpha = ridge * float(g.diagonal().mean().clamp_min(1e-300))
        return g + alpha * torch.eye(g.shape[0], dtype=DTYPE, device=g.device)

    def scaled_condition(self, ridge: float, iterations: int = 30) -> float:
        """Estimate ``κ(S)`` with ``S = D^{-1/2} G_α D^{-1/2}`` (module doc): the matrix whose
        sums carry the rounding (the centred ``G_c`` with ``shift``); ``inf`` if ``S`` is not
        positive definite in float64. Power iteration for ``λ_max``, inverse iteration
        (Cholesky solves) for ``λ_min``, from a fixed start: a lower bound, tight in practice."""
        g = self.symmetric_gram()
        alpha = ridge * float(self.regularised(0.0).diagonal().mean().clamp_min(1e-300))
        g = g + alpha * torch.eye(g.shape[0], dtype=DTYPE, device=g.device)
        root = g.diagonal().clamp_min(1e-300).sqrt()
        s = g / root[:, None] / root[None, :]
        chol, info = torch.linalg.cholesky_ex(s)
        if int(info) != 0:
            return float("inf")
        return spd_condition(s, chol, iterations)

    def solve(self, ridge: float = 1e-8) -> torch.Tensor:
        """``W = (G + α I)⁻¹ R`` with ``α = ridge · mean(diag G)``; ``[d (+1), C]``, float64."""
        g = self.regularised(ridge)
        _, cross = self.totals()
        chol, info = torch.linalg.cholesky_ex(g)
        if int(info) != 0:  # singular even with the ridge: fall back to the pseudoinverse
            return torch.linalg.lstsq(g, cross, rcond=1e-12, driver="gelsd").solution
        return torch.cholesky_solve(cross, chol)


@dataclass(frozen=True)
class SolveReport:
    """How :func:`ridge_least_squares` solved: ``precision``, that of the sums; ``condition``,
    the estimated ``κ(S)`` that decided it (``None`` when not checked); ``fell_back``, whether
    float32 was refused; ``probe``, whether the first chunk's sums decided that (else all rows)."""

    precision: str
    condition: float | None
    fell_back: bool
    probe: bool = False


def column_means(a: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Column means of ``a`` (float64), from per-chunk sums in ``a``'s precision (pairwise
    summation) added up in float64: no float64 copy of ``a``. Accurate to ``a``'s precision,
    which is all a centring shift needs (:class:`NormalEquations` restores the exact sums for
    whatever shift it subtracted)."""
    total = torch.zeros(a.shape[1], dtype=DTYPE, device=a.device)
    for i in range(0, a.shape[0], chunk):
        total += a[i:i + chunk].sum(0)
    return total / max(a.shape[0], 1)


def ridge_least_squares(a: torch.Tensor, t: torch.Tensor, *, ridge: float = 1e-8, chunk: int = 4096,
                        bias: bool = False, precision: str = "auto",
                        tolerance: float = 0.1) -> tuple[torch.Tensor, SolveReport]:
    """``[W b]ᵀ`` (``[d (+1), C]``, float64) minimising ``‖[A, 1][W b]ᵀ − T‖² + α‖[W b]‖²``.

    The normal equations are summed over chunks of ``chunk`` rows (``bias``: the column of
    ones) in ``precision``: ``"float64"`` (raw sums, as :class:`NormalEquations` always did),
    ``"float32"`` (centred sums, see :class:`NormalEquations`), or ``"auto"``: float32, unless
    ``κ(S) · u₃₂ > tolerance`` (module doc), then the float64 sums. The default ``tolerance``
    0.1 keeps a margin: the estimate is made on the float32-rounded ``S̃``, whose ``λ_min`` is
    ``λ_min(S) + O(u₃₂)``, so a singular ``S`` can read ``κ(S̃) ≈ 1/u₃₂`` (a 500-row chunk of
    two collinear columns: 2.1e7, ``κ u₃₂ = 2.5``; the same 3000 rows: indefinite); MNIST's
    input layer reads 2.8e5 (0.034).

    ``"auto"`` first looks at the first chunk (a probe: its sums are the first term of the full
    float32 sums, so a layer that passes pays nothing for it, and one that fails wastes one
    chunk's float32 sums, not all of them): a chunk already singular at float32's resolution
    (``κ u₃₂ > max(1, tolerance)``; fewer rows are worse conditioned, so the probe's bound is
    the looser one: MNIST's input layer reads ``κ u₃₂ = 0.65`` on its first 4096 rows, 0.034
    on all) goes to float64 at once; a pass is confirmed on the full sums with
    ``tolerance`` (a failure there redoes the sums in float64). Both ``G`` and ``R`` go to float64: float32 rounding
    of ``R`` (``δR``) moves the solution by ``G_α⁻¹ δR``, as large as the ridge allows (on
    MNIST's second layer 4 % of ``‖W‖``, its readout 96 %, where float32 rounding of the
    activities themselves moves it by 1-2e-4).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"least squares: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if a.shape[0] != t.shape[0]:
        raise ShapeError(f"least squares: A has {a.shape[0]} rows but T has {t.shape[0]}")
    starts = range(0, a.shape[0], chunk)

    def float64() -> torch.Tensor:
        ne = NormalEquations(a.shape[1] + int(bias), t.shape[1], a.device)
        for i in starts:
            ac = a[i:i + chunk].to(DTYPE)
            ne.add(with_ones(ac) if bias else ac, t[i:i + chunk])
        return ne.solve(ridge)

    if precision == "float64":
        return float64(), SolveReport("float64", None, False)
    shift = (column_means(a, chunk), column_means(t, chunk))
    ne = NormalEquations(a.shape[1], t.shape[1], a.device, torch.float32, shift=shift, bias=bias)
    if precision == "float32":
        for i in starts:
            ne.add(a[i:i + chunk], t[i:i + chunk])
        return ne.solve(ridge), SolveReport("float32", None, False)
    ne.add(a[:chunk], t[:chunk])  # the probe: the first chunk
    kappa = ne.scaled_condition(ridge)
    if kappa * U32 > max(tolerance, 1.0):  # the first chunk alone is singular at float32's resolution
        return float64(), SolveReport("float64", kappa, True, probe=True)
    for i in starts[1:]:
        ne.add(a[i:i + chunk], t[i:i + chunk])
    kappa = ne.scaled_condition(ridge)
    if kappa * U32 <= tolerance:
        return ne.solve(ridge), SolveReport("float32", kappa, False)
    return float64(), SolveReport("float64", kappa, True)


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
