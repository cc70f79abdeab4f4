r"""ZORB: Zeroth-Order Relaxed Backpropagation (Ranganathan & Lewandowski, arXiv 2011.08895).

A solver, not a gradient rule: one sweep from the input to the output sets every layer's
weights in closed form; no learning rate, no epochs. For layer ``i`` (input to output):

1. the target ``Y`` (one-hot, or regression values) is pushed down through every layer
   above ``i`` with *relaxed inverses*:

   - softmax output (classification): ``T = log(Y ⊙ s + ε) + m`` with the row max ``m``
     and row sum ``s = Σ exp(logits − m)`` of the current network's logits;
   - dense layer ``z = h Wᵀ + b``: ``T ← (T − b) (W⁺)ᵀ`` (pseudoinverse, ``backward_rcond``);
   - tanh / sigmoid: the whole target matrix is min-max rescaled into the open range
     ``[a + ε, b − ε]`` (``(−1, 1)`` or ``(0, 1)``), then inverted (``atanh`` / ``logit``).
     The pair ``(lo, hi) = (min T, max T)`` is stored in the layer, whose forward pass becomes
     ``h = lo + (hi − lo)(f(z) − a − ε)/(b − a − 2ε)`` (the buffers ``act_scale``,
     ``act_shift``: the "relaxation" is part of the trained model, saved with it);
   - relu: ``z = T`` (negative targets stay negative, so ``relu(z)`` is their projection);
     leaky relu: the exact inverse; identity: nothing.

   The reference refreshes the softmax statistics before every layer with a forward pass
   from layer ``i`` to the output, and pushes the target down again through every layer
   above ``i``: ``n(n+1)/2`` layer forwards and ``n(n−1)/2`` target pushes for ``n``
   layers (45 % of the fit's CPU time on MNIST's 6-layer net). The layers above ``i`` are
   not solved yet when layer ``i`` is, so only the softmax statistics change between
   layers. By default (``refresh=False``) one forward pass of the initial network gives
   them, one top-down pass gives every layer its target, and only the readout refreshes
   them from its actual input (one layer's forward): each layer is forwarded twice in all.
   ``refresh=True`` is the reference's schedule.

2. the layer is solved from its actual input: ``[W b]ᵀ = [H_{i−1}, 1]⁺ Z_i``
   (``solver="pinv"``: SVD in float64, ``rcond``; ``solver="normal"``: normal equations
   accumulated over chunks of ``chunk`` rows plus a ridge term, memory ``O(d²)`` besides the
   activities, for full MNIST with 1000-wide layers), then ``H_i`` is computed with the new
   weights.

Precision (``solve_precision``, ``solver="normal"`` only): the ``O(N d²)`` work (forward
passes, target pushes, the sums ``G = Σ hᵀh``, ``R = Σ hᵀz``) is float32 and the ``O(d³)``
work (pseudoinverses of the weights, Cholesky solves) float64. ``"auto"`` (default) sums
``G``, ``R`` centred in float32 and uses float64 sums for a layer whose Jacobi-scaled Gram
matrix is too ill-conditioned for float32 (``κ(S) u₃₂ > 0.1``, decided on the first chunk when
that is already singular in float32: :func:`neurolearn.readout.ridge_least_squares`); at the
models' ridge 1e-8 that is every tanh layer of the MNIST net and only its input layer stays
float32. ``"float32"`` never falls back; ``"float64"`` is the all-float64 sweep.
``solve_reports`` lists what each solve did. ``solver="pinv"`` stays float64 throughout (the
reference's numbers).

Cost (``profile``: CPU seconds by phase of the last fit, ``forward_initial``, ``targets``
with ``pinv`` inside it, ``sums_and_solves``, ``forward_solved``): the forward and target
passes run in blocks of :data:`GEMM_ROWS` rows written in place into preallocated outputs, and
the weights' pseudoinverses are Cholesky solves where that equals the SVD's
(:func:`weight_pinv`).

The tanh forward is ``tanh`` (the reference numpy code uses a sigmoid there after a scale is
stored, a bug; the later JAX package is correct).

Needs: weight transport (pseudoinverses of the weights above), the whole training set at
once (``train.batch_size = 0``, one epoch) and matrix inverses: non-local. Use it as a fast
baseline, an initialiser, or a readout solver (see :mod:`neurolearn.readout`). Networks:
static (``T = 1`` or a ``direct`` encoder) stacks of non-recurrent ``Dense`` layers with
rate neurons without leak (``tanh``, ``sigmoid``, ``relu``, ``leaky_relu``, ``identity``),
ending in a linear readout.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from neurolearn.errors import ConfigError
from neurolearn.layers import Dense
from neurolearn.learning.options import check_bool, check_choice, check_number
from neurolearn.network import Network
from neurolearn.neurons import ACTIVATION_RANGES, activation, activation_inverse
from neurolearn.readout import (DTYPE, PRECISIONS, SolveReport, lstsq_pinv, ridge_least_squares, softmax_inverse,
                               spd_condition)
from neurolearn.rules.base import Requirements, Rule, StepOutput

SOLVERS = ("pinv", "normal")
OUTPUTS = ("auto", "softmax", "linear")
GEMM_ROWS = 1024
"""Rows per GEMM block of the forward and target passes: a block's output stays in cache
(1024 rows x 1000 -> 800: 77 GFLOP/s on one core against 67 for 4096 rows, float32)."""


@dataclass(frozen=True)
class ZorbOptions:
    """ZORB's options (see :class:`Zorb`)."""

    epsilon: float = 1e-5
    rcond: float = 1e-10
    backward_rcond: float = 1e-10
    solver: str = "pinv"
    ridge: float = 1e-8
    chunk: int = 4096
    output: str = "auto"
    refresh: bool = False
    solve_precision: str = "auto"

    def __post_init__(self) -> None:
        check_choice("zorb solver", self.solver, SOLVERS)
        check_choice("zorb solve_precision", self.solve_precision, PRECISIONS)
        check_choice("zorb output", self.output, OUTPUTS)
        check_number("zorb: epsilon", self.epsilon, low=0.0, high=0.5, low_open=True, high_open=True)
        check_number("zorb: rcond", self.rcond, low=0.0)
        check_number("zorb: backward_rcond", self.backward_rcond, low=0.0)
        check_number("zorb: ridge", self.ridge, low=0.0)
        check_number("zorb: chunk", self.chunk, low=1, integer=True)
        check_bool("zorb: refresh", self.refresh)


def relaxed_inverse(name: str, t: torch.Tensor, epsilon: float = 1e-5,
                    negative_slope: float = 0.01) -> tuple[torch.Tensor, float, float]:
    """ZORB's relaxed inverse of an activation: ``(z, scale, shift)`` with ``scale·f(z)+shift ≈ t``.

    Bounded activations (tanh, sigmoid) rescale the whole of ``t`` from ``[min t, max t]``
    into ``[a + ε, b − ε]`` before inverting, and return the affine map back
    (``scale = (hi − lo)/(b − a − 2ε)``, ``shift = lo − scale (a + ε)``); unbounded ones
    invert directly and return ``(1, 0)``.
    """
    lo_r, hi_r = ACTIVATION_RANGES[name] if name in ACTIVATION_RANGES else (None, None)
    if lo_r is None or hi_r is None:  # identity, relu, leaky relu: no relaxation
        return activation_inverse(name, t, negative_slope), 1.0, 0.0
    a, b = lo_r + epsilon, hi_r - epsilon
    lo, hi = float(t.min()), float(t.max())
    span = hi - lo
    if not span > 1e-12 * max(1.0, abs(lo)):
        span = 1.0  # a constant target: any in-range value will do
    u = (t - lo).mul_((b - a) / span).add_(a).clamp_(a, b)  # one temporary: t may be large
    scale = span / (b - a)
    return activation_inverse(name, u, negative_slope), scale, lo - scale * a


PINV_CHOLESKY_KAPPA = 1e7
"""Largest estimated ``κ(WWᵀ)`` for which :func:`weight_pinv` uses Cholesky (error ``κ u₆₄ ≈ 2e-9``)."""


def weight_pinv(w: torch.Tensor, rtol: float) -> torch.Tensor:
    """``W⁺`` (float64) of a weight matrix ``W`` (``[o, i]``), as ``torch.linalg.pinv(W, rtol=rtol)``.

    A full-rank ``W`` with ``κ(W) < 1/rtol`` keeps every singular value, so ``W⁺ = Wᵀ(WWᵀ)⁻¹``
    (``o ≤ i``) or ``(WᵀW)⁻¹Wᵀ`` (``o > i``): one Cholesky factorisation and solve, about 5x
    cheaper than the SVD, accurate to ``κ(WWᵀ) u₆₄``. Used when the estimated ``κ(WWᵀ)``
    (:func:`neurolearn.readout.spd_condition`) is at most :data:`PINV_CHOLESKY_KAPPA` and
    ``√κ · rtol < 1``; otherwise (near-singular weights, or an ``rtol`` that drops singular
    values) the SVD pseudoinverse.
    """
    wide = w.shape[0] <= w.shape[1]
    m = w @ w.T if wide else w.T @ w
    chol, info = torch.linalg.cholesky_ex(m)
    if int(info) == 0:
        kappa = spd_condition(m, chol)
        if kappa <= PINV_CHOLESKY_KAPPA and kappa ** 0.5 * rtol < 1.0:
            return torch.cholesky_solve(w, chol).T if wide else torch.cholesky_solve(w.T, chol)
    return torch.linalg.pinv(w, rtol=rtol)


def static_input(model: Network, x: torch.Tensor, rule: str) -> torch.Tensor:
    """The one input per sample (``[B, ...]``) that a closed-form solver (ZORB, SIBP) fits.

    A static network's decoded output is a function of its per-step outputs; the solvers fit
    one step. That is the decoded quantity only when every step is the same input (``T = 1``,
    or a ``direct`` encoder repeating the sample) and the decode is ``last``, ``mean`` or
    ``max`` (``sum`` would multiply the fitted logits by ``T``). Anything else (a rate encoder's
    ``T`` Bernoulli samples, a temporal network) is refused with a message, not fitted on its
    last step.
    """
    steps = x.shape[0]
    if steps == 1:
        return x[0]
    if model.temporal:
        raise ConfigError(f"{rule} fits static networks (T = 1 or a direct encoder); "
                          "for spiking or recurrent reservoirs use neurolearn.readout.fit_readout")
    if not torch.equal(x, x[:1].expand_as(x)):
        raise ConfigError(f"{rule} fits one input per sample, but the encoder gives {steps} different steps (e.g. a "
                          "rate encoder's Bernoulli samples) whose decoded output a one-step fit does not solve: "
                          "use encoder 'direct' or steps = 1")
    if model.decode == "sum":
        raise ConfigError(f"{rule} fits one step, but decode 'sum' multiplies it by T = {steps}: "
                          "use decode 'mean' or 'last' (the same prediction up to the scale) or steps = 1")
    return x[0]


class Zorb(Rule):
    """ZORB: one closed-form sweep input -> output with relaxed inverses (see module docstring).

    Parameters: ``epsilon`` (range relaxation and softmax inverse, 1e-5), ``rcond`` (layer
    solves with ``solver="pinv"``), ``backward_rcond`` (pseudoinverses of the weights),
    ``solver`` (``"pinv"`` or ``"normal"``), ``ridge`` (relative ridge of ``"normal"``),
    ``chunk`` (rows per chunk), ``output`` (``"auto"``: softmax for classification, else
    linear), ``refresh`` (``True``: the reference's forward pass from layer ``i`` to the
    output before every layer, ``n(n+1)/2`` layer forwards and ``n(n-1)/2`` target
    pushes; ``False``, the default: one of each, see the module docstring),
    ``solve_precision`` (``"auto"``, ``"float32"`` or ``"float64"``: the precision of the
    normal equations' sums, see the module docstring; not the rule's autocast ``precision``).
    """

    name = "zorb"
    summary = "ZORB: closed-form layerwise least squares with pseudoinverse targets (one sweep, non-local)"
    requires = Requirements(weight_transport=True, whole_batch=True)
    uses_optimizer = False

    Options = ZorbOptions

    def __init__(self, options: ZorbOptions | None = None, **params: Any) -> None:
        super().__init__(options, **params)
        o = self.options
        self.epsilon, self.rcond, self.backward_rcond = float(o.epsilon), float(o.rcond), float(o.backward_rcond)
        self.solver, self.ridge, self.chunk, self.output = o.solver, float(o.ridge), int(o.chunk), o.output
        self.refresh, self.solve_precision = bool(o.refresh), o.solve_precision
        self.last_fit: dict[str, Any] = {}
        self.profile: dict[str, float] = {}
        self.solve_reports: list[SolveReport] = []

    # ------------------------------------------------------------------ checks
    @staticmethod
    def check_network(model: Network) -> list[Dense]:
        layers = list(model.layers)
        for k, layer in enumerate(layers):
            p = layer.neuron
            if not isinstance(layer, Dense) or layer.recurrent or layer.decorrelation is not None:
                raise ConfigError(
                    f"zorb: layer {k} must be a plain dense layer (not recurrent, convolutional or decorrelated); "
                    "for spiking or recurrent reservoirs fit the readout with neurolearn.readout.fit_readout"
                )
            if p is not None and p.static_activation is None:
                raise ConfigError(
                    f"zorb: layer {k} has neuron {p}; zorb needs static rate neurons (no tau) or none. "
                    "For spiking reservoirs use neurolearn.readout.fit_readout"
                )
        if layers[-1].neuron is not None and layers[-1].neuron.static_activation != "identity":
            raise ConfigError("zorb: the last layer must be a linear readout (no neuron); the softmax is implicit")
        return layers

    # ------------------------------------------------------------------ the network in float64
    @staticmethod
    def _act(layer: Dense) -> str:
        return "identity" if layer.neuron is None else layer.neuron.static_activation

    def _forward_block(self, k: int, h: torch.Tensor, wt: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Layer ``k``'s output on the rows ``h``, written into ``out`` (``wt``: ``Wᵀ``, contiguous)."""
        torch.matmul(h, wt, out=out)
        if self._b[k] is not None:
            out += self._b[k]
        layer = self._layers[k]
        a = activation(self._act(layer), out, getattr(layer.neuron, "negative_slope", 0.01))
        if a is not out:
            out.copy_(a)
        scale, shift = self._scale[k], self._shift[k]
        if scale != 1.0 or shift != 0.0:
            out.mul_(scale).add_(shift)
        return out

    @property
    def _rows(self) -> int:
        """Rows per GEMM block: ``chunk``, at most :data:`GEMM_ROWS`."""
        return min(self.chunk, GEMM_ROWS)

    def _forward_from_layer(self, i: int, h: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s output on ``h``, in blocks of rows."""
        h_next = torch.empty(h.shape[0], self._w[i].shape[0], dtype=self._dtype, device=h.device)
        wt = self._w[i].T.contiguous()
        for r in range(0, h.shape[0], self._rows):
            self._forward_block(i, h[r:r + self._rows], wt, h_next[r:r + self._rows])
        return h_next

    @staticmethod
    def frozen_layers(layers: list[Dense]) -> set[int]:
        """Indices of frozen layers (``requires_grad=False``: kept as they are, the others solved
        around them). ZORB solves a layer's weight and bias together: freezing one of them only
        is refused."""
        frozen = set()
        for k, layer in enumerate(layers):
            flags = {p.requires_grad for p in (layer.weight, layer.bias) if p is not None}
            if flags == {False, True}:
                raise ConfigError(f"zorb solves layer {k}'s weight and bias together; freeze both "
                                  "(requires_grad_(False) on the layer) or neither")
            if flags == {False}:
                frozen.add(k)
        if len(frozen) == len(layers):
            raise ConfigError("zorb: every layer is frozen, nothing to fit")
        return frozen

    def _forward_from(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Logits of layers ``k..n-1`` on ``h``, in blocks of rows (one block through all layers)."""
        wts = [self._w[j].T.contiguous() for j in range(k, len(self._layers))]
        out = torch.empty(h.shape[0], self._w[-1].shape[0], dtype=self._dtype, device=h.device)
        for r in range(0, h.shape[0], self._rows):
            a = h[r:r + self._rows]
            for j, wt in enumerate(wts, start=k):
                dst = out[r:r + self._rows] if j == len(self._layers) - 1 else \
                    torch.empty(a.shape[0], wt.shape[1], dtype=self._dtype, device=h.device)
                a = self._forward_block(j, a, wt, dst)
        return out

    def _dense_inverse(self, k: int, t: torch.Tensor) -> torch.Tensor:
        """``(T − b)(W⁺)ᵀ``: a target for the input of layer ``k`` from one for its pre-activation."""
        with self._phase("pinv"):
            pinv_t = weight_pinv(self._w[k].to(DTYPE), self.backward_rcond).T.to(t.dtype).contiguous()
        out = torch.empty(t.shape[0], pinv_t.shape[1], dtype=t.dtype, device=t.device)
        for i in range(0, t.shape[0], self._rows):
            tc = t[i:i + self._rows]
            torch.matmul(tc if self._b[k] is None else tc - self._b[k], pinv_t, out=out[i:i + self._rows])
        return out

    @contextmanager
    def _phase(self, name: str):
        """Add the CPU seconds (``time.process_time``) of the block to ``profile[name]``."""
        c0 = time.process_time()
        try:
            yield
        finally:
            self.profile[name] = self.profile.get(name, 0.0) + time.process_time() - c0

    def _relax(self, k: int, t: torch.Tensor) -> torch.Tensor:
        """Pre-activation target of layer ``k`` from its output target; stores the rescaling."""
        layer = self._layers[k]
        z, scale, shift = relaxed_inverse(self._act(layer), t, self.epsilon,
                                          getattr(layer.neuron, "negative_slope", 0.01))
        if layer.neuron is not None and k not in self._frozen:  # a frozen layer keeps its rescaling
            self._scale[k], self._shift[k] = scale, shift
        return z

    def _solve(self, h: torch.Tensor, z: torch.Tensor, bias: bool) -> torch.Tensor:
        """``[W b]ᵀ`` (``[d (+1), out]``) minimising ``‖[H, 1][W b]ᵀ − Z‖``."""
        if self.solver == "pinv":
            h64 = h.to(DTYPE)
            return lstsq_pinv(torch.cat([h64, torch.ones_like(h64[:, :1])], 1) if bias else h64, z, self.rcond)
        sol, report = ridge_least_squares(h, z, ridge=self.ridge, chunk=self.chunk, bias=bias,
                                          precision=self.solve_precision)
        self.solve_reports.append(report)
        return sol

    # ------------------------------------------------------------------ the sweep
    @torch.no_grad()
    def fit(self, model: Network, x: torch.Tensor, targets: torch.Tensor, softmax: bool) -> torch.Tensor:
        """Fit ``model`` on inputs ``x`` (``[N, ...]``) and targets ``[N, C]``; returns the logits (in
        the working precision: float32 for ``solver="normal"`` unless ``solve_precision="float64"``,
        else float64)."""
        self._layers = self.check_network(model)
        n = len(self._layers)
        frozen = self.frozen_layers(self._layers)
        self._frozen = frozen
        # the working precision of the activities and targets (the O(N d²) work): float32 for the
        # normal equations unless solve_precision = "float64"; solver "pinv" (the reference's SVD
        # solves) stays float64 throughout; the small O(d³) solves and pseudoinverses are float64
        self._dtype = torch.float32 if self.solver == "normal" and self.solve_precision != "float64" else DTYPE
        self.solve_reports, self.profile = [], {}
        self._w = [layer.weight.detach().to(self._dtype).clone() for layer in self._layers]
        self._b = [None if layer.bias is None else layer.bias.detach().to(self._dtype).clone()
                   for layer in self._layers]
        # a frozen layer keeps its output rescaling; the others get theirs from the fit
        self._scale = [float(getattr(self._layers[k], "act_scale", 1.0)) if k in frozen else 1.0 for k in range(n)]
        self._shift = [float(getattr(self._layers[k], "act_shift", 0.0)) if k in frozen else 0.0 for k in range(n)]
        h = x.reshape(x.shape[0], -1).to(self._dtype)
        y = targets.to(self._dtype)
        first = min(set(range(n)) - frozen)
        targets_z: dict[int, torch.Tensor] = {}
        if not self.refresh:  # one forward and one top-down pass give every layer its target
            with self._phase("forward_initial"):
                for i in range(first):
                    h = self._forward_from_layer(i, h)
                logits = self._forward_from(first, h) if softmax else None
            with self._phase("targets"):
                t = softmax_inverse(y, logits, self.epsilon) if softmax else y
                del logits
                for j in range(n - 1, first - 1, -1):
                    z = self._relax(j, t)
                    if j not in frozen:
                        targets_z[j] = z
                    if j > first:
                        t = self._dense_inverse(j, z)
                del t, z
            start = first
        else:
            start = 0
        for i in range(start, n):
            if i in frozen:  # frozen means frozen: pass the data through it, solve the others around it
                with self._phase("forward_solved"):
                    h = self._forward_from_layer(i, h)
                continue
            if not self.refresh and not (softmax and i == n - 1 and i != first):
                z = targets_z.pop(i)
            else:  # the reference: the softmax statistics of the current network (for the readout: one layer)
                with self._phase("targets"):
                    t = softmax_inverse(y, self._forward_from(i, h), self.epsilon) if softmax else y
                    for j in range(n - 1, i, -1):
                        t = self._dense_inverse(j, self._relax(j, t))
                    z = self._relax(i, t)
                    del t
                    targets_z.pop(i, None)
            has_bias = self._b[i] is not None
            with self._phase("sums_and_solves"):
                sol = self._solve(h, z, has_bias)
            del z
            sol = sol.to(self._dtype)
            self._w[i] = sol[:-1].T.contiguous() if has_bias else sol.T.contiguous()
            if has_bias:
                self._b[i] = sol[-1].clone()
            with self._phase("forward_solved"):
                h = self._forward_from_layer(i, h)
        for k, layer in enumerate(self._layers):
            if k in frozen:
                continue
            layer.weight.copy_(self._w[k].to(layer.weight.dtype))
            if layer.bias is not None:
                layer.bias.copy_(self._b[k].to(layer.bias.dtype))
            if layer.neuron is not None:
                layer.set_output_rescaling(float(self._scale[k]), float(self._shift[k]))
        del self._w, self._b, self._layers, self._frozen
        return h

    def step(self, model, x, y, objective, updater) -> StepOutput:
        """Fit the whole network on this batch (the trainer's whole training set when batch_size = 0)."""
        inputs = static_input(model, x, "zorb")
        classification = objective.task == "classification"
        softmax = self.output == "softmax" or (self.output == "auto" and classification)
        if classification:
            targets = F.one_hot(y.long(), model.output_size).to(DTYPE)
        else:
            if y.dim() != 3 or y.shape[0] != 1:
                raise ConfigError("zorb fits regression targets of one time step ([1, B, C]) only")
            targets = y[0].to(DTYPE)
        logits = self.fit(model, inputs, targets, softmax)
        pred = logits.to(x.dtype) if classification else logits.to(x.dtype)[None]
        loss = objective.loss(pred, y)
        probs = torch.softmax(logits, 1) if softmax else logits
        self.last_fit = {"train_sq_error": float(((probs - targets) ** 2).sum(1).mean())}
        return StepOutput(loss.detach(), pred.detach())

    def epoch_metrics(self, model: Network) -> dict[str, float]:
        return dict(self.last_fit)
