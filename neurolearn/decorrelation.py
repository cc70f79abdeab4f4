r"""Input decorrelation: a matrix ``R`` per layer, learned by a local, unsupervised rule.

Every layer can decorrelate what its weights see (Dalm et al. 2024, "decorrelated
backpropagation"; Ahmad et al. 2023, the "copi" rule; ALGORITHMS.md §3, §5a)::

    x̃ = R x − μ̃                       (μ̃: running mean of R x, only with centring)
    z = W x̃ + b

``R`` (``d x d``, initialised to the identity) is a buffer, never trained by backprop. After
each optimizer step it follows, on a random subsample of ``M`` rows of the inputs ``X̃``
(samples x time steps, or samples x patch positions for convolutions)::

    Σ̃ = X̃ᵀX̃ / M,   C = Σ̃ − diag(Σ̃),   v = diag(Σ̃) − 1
    R ← R − η_R [ (1 − κ) C R + κ diag(v) R ]
    loss = ((1 − κ) ‖C‖²_F + κ ‖v‖²) / d²          (what the rule decreases)

κ = 0 is pure decorrelation (the rule of the node-perturbation and RNN papers); κ > 0 also
drives the variances to one (whitening), which is what speeds up SGD (ALGORITHMS.md §6.4).
The reference code scales the columns (``v * R`` = ``R diag(v)``); here the rows are scaled
(``diag(v) R``), the gradient of ``‖v‖²`` with respect to ``R``: row ``i`` of ``R`` makes
``x̃_i``. Centring (on by default) subtracts a running mean of ``R x`` (momentum
``momentum``), so non-negative inputs (pixels, ReLU outputs, spikes) are decorrelated
around their mean; the bias absorbs the shift when merging. ``lower_triangular=True`` keeps
``R`` lower triangular: ``C = tril(Σ̃, −1)`` (each input decorrelated against the inputs before it,
a Gram-Schmidt-like order), and the variance term as above. This differs from decorbp's
``full=False`` on purpose: decorbp multiplies ``tril(Σ̃, −1)`` by ``√arange(d)`` broadcast over
columns (``C[i, j] = √j Σ̃[i, j]``), so column 0 gets weight 0 (no input is ever decorrelated
against input 0) and later columns are weighted up. Here every column has weight 1: the fixed
point is the same where decorbp's has one (``tril(Σ̃, −1) = 0`` with a lower-triangular ``R``
means ``x̃`` decorrelated), all pairs are reached, input 0's included, and one ``lr`` serves all
columns (tests/test_decorrelation.py checks the pairs with input 0).

What the rule needs: the layer's own inputs only (pre-synaptic activity, no error, no label)
→ local in the layer, Hebbian-like (anti-Hebbian on pairs of inputs); the matrix product
``C R`` needs the columns of ``R`` (the local approximation is lateral inhibition).

Where ``R`` sits:

- dense layers: ``R`` acts on the (flattened) input vector, ``d`` = fan-in; the layer applies
  it to the rows (``N d²`` multiply-adds) or folds it into ``W`` (``out d²``: DANP's stacked
  noisy copies, narrow readouts), whichever is cheaper, and taps the raw input;
- convolutions: ``R`` acts on each flattened input patch, ``d = C_in k k``, and is folded
  into the kernel for the forward pass (``W_eff = W R``, ``b_eff = b − W μ̃``: one ordinary
  convolution); the layer's ``input`` tap stays the image and the rule unfolds a random
  subsample of its patches; :meth:`neurolearn.layers.Layer.weight_gradient` gives local
  rules the update of ``W`` (not of ``W_eff``);
- recurrent nets: every layer decorrelates its feed-forward input, so the layer after a
  recurrent layer decorrelates the hidden state (as in the RNN paper, §5b.2); the recurrent
  input ``h[t−1]`` itself is not decorrelated;
- spiking nets: the inputs the weights see are spike trains, which are decorrelated (a rule
  that reads filtered traces can call :func:`update_decorrelation_step` with them).

Entry points: :func:`add_decorrelation` (what ``decor.enabled = true`` calls),
:func:`update_decorrelation` (from a run's record; called by ``GradientRule.train_step``),
:func:`update_decorrelation_step` (one time step's taps, for online rules),
:func:`merge_decorrelation` (an equivalent model without ``R``, for inference and export),
:func:`decorrelation_metrics` (the loss per layer, logged once per epoch) and
:func:`input_correlation` (a layer's input correlation matrix, for figures).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from neurolearn.errors import ConfigError, TrainingDiverged
from neurolearn.layers import Conv2d, Dense, Layer, Taps
from neurolearn.network import Network, Record

__all__ = [
    "Decorrelation",
    "add_decorrelation",
    "has_decorrelation",
    "update_decorrelation",
    "update_decorrelation_step",
    "update_layer_decorrelation",
    "merge_decorrelation",
    "decorrelation_metrics",
    "input_correlation",
]


class Decorrelation(nn.Module):
    r"""``x̃ = R x − μ̃`` on vectors of ``features`` entries, with the update of the module docstring.

    Parameters: ``lr`` (η_R), ``kappa`` (κ ∈ [0, 1], whitening weight), ``centring``
    (subtract a running mean of ``R x``), ``momentum`` (of that running mean),
    ``subsample`` (fraction of the rows used per update, or an integer number of rows),
    ``lower_triangular``, ``min_variance`` (inputs whose ``<x̃²>`` is below this share of the
    mean ``<x̃²>`` over the inputs, e.g. pixels that are almost always 0 or units that have
    gone silent, get no whitening term: scaling them up could only blow ``R`` up),
    ``max_gain`` (the guard: ``‖R‖_F / √d`` above this, or any
    non-finite entry, stops training with :class:`TrainingDiverged`).
    """

    def __init__(
        self,
        features: int,
        *,
        lr: float = 1e-3,
        kappa: float = 0.5,
        centring: bool = True,
        momentum: float = 0.1,
        subsample: float = 1.0,
        lower_triangular: bool = False,
        max_gain: float = 1e3,
        min_variance: float = 1e-2,
    ) -> None:
        super().__init__()
        if features <= 0:
            raise ConfigError(f"decorrelation needs a positive number of features, got {features}")
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ConfigError(f"decor.lr must be a non-negative number, got {lr!r}")
        if not (isinstance(kappa, (int, float)) and 0.0 <= kappa <= 1.0):
            raise ConfigError(f"decor.kappa must lie in [0, 1], got {kappa!r}")
        if not (isinstance(momentum, (int, float)) and 0.0 < momentum <= 1.0):
            raise ConfigError(f"decor.momentum must lie in (0, 1], got {momentum!r}")
        if isinstance(subsample, bool) or not (isinstance(subsample, (int, float)) and subsample > 0):
            raise ConfigError(f"decor.subsample must be a fraction in (0, 1] or a number of rows >= 1, got {subsample!r}")
        if isinstance(subsample, float) and subsample > 1.0:
            raise ConfigError(f"decor.subsample as a fraction must be <= 1, got {subsample} (give an integer for rows)")
        self.features = features
        self.lr, self.kappa, self.centring, self.momentum = float(lr), float(kappa), bool(centring), float(momentum)
        self.subsample, self.lower_triangular, self.max_gain = subsample, bool(lower_triangular), float(max_gain)
        self.min_variance = float(min_variance)
        self.register_buffer("R", torch.eye(features))
        self.register_buffer("mean", torch.zeros(features))
        self.updates = 0
        self._loss_sum = 0.0
        self._loss_count = 0

    def extra_repr(self) -> str:
        return (f"{self.features}, lr={self.lr}, kappa={self.kappa}, centring={self.centring}, "
                f"subsample={self.subsample}, lower_triangular={self.lower_triangular}")

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x̃ = R x − μ̃`` for ``x`` of shape ``[..., d]``."""
        xt = F.linear(x, self.R)
        return xt - self.mean if self.centring else xt

    def fold(self, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weights acting on the raw input: ``W R`` (``W`` flattened to ``out x d``) and ``b − W μ̃``."""
        w = weight.flatten(1)
        w_eff = (w @ self.R).view_as(weight)
        if not self.centring:
            return w_eff, bias
        shift = w @ self.mean
        return w_eff, (-shift if bias is None else bias - shift)

    # ------------------------------------------------------------------ learning
    def _rows(self, n: int, generator: torch.Generator | None, device, per_item: int = 1) -> torch.Tensor | None:
        """Random indices of the items to use (``None``: all); an item holds ``per_item`` rows,
        and an integer ``subsample`` counts rows."""
        if isinstance(self.subsample, int):
            m = -(-self.subsample // per_item)
        else:
            m = max(1, int(round(self.subsample * n)))
        if m >= n:
            return None
        return torch.randperm(n, generator=generator, device=generator.device if generator else "cpu")[:m].to(device)

    @torch.no_grad()
    def update(self, xt: torch.Tensor, generator: torch.Generator | None = None, *, where: str = "",
               subsample: bool = True) -> float:
        """One step of the rule on decorrelated inputs ``xt`` (``[N, d]``); returns the loss.

        With ``subsample=True`` a random ``decor.subsample`` share of the rows is used.
        """
        xt = xt.detach().reshape(-1, self.features).to(self.R.dtype)
        rows = self._rows(xt.shape[0], generator, xt.device) if subsample else None
        if rows is not None:
            xt = xt[rows]
        m, d = xt.shape
        if self.centring:
            self.mean.add_(xt.mean(0), alpha=self.momentum)  # μ̃ += m (mean(R x) − μ̃) = m mean(x̃)
        sq = (xt * xt).mean(0)  # diag(Σ̃)
        # inputs (nearly) always at zero cannot be whitened: scaling them up would only blow R up
        v = torch.where(sq > self.min_variance * sq.mean(), sq - 1.0, torch.zeros_like(sq))
        # R ← R − η[(1−κ) C R + κ diag(v) R] = diag(1 − η coef) R − η (1−κ) Σ̃' R, fused to two d x d passes:
        # full: C R = Σ̃ R − diag(Σ̃) R, so coef = κ v − (1−κ) diag(Σ̃), Σ̃' = Σ̃;  lower: Σ̃' = tril(Σ̃, −1), coef = κ v
        a = -self.lr * (1.0 - self.kappa)
        if self.lower_triangular or m >= d:
            cov = xt.T @ xt / m
            if self.lower_triangular:
                cov = torch.tril(cov, -1)
                off2 = float((cov * cov).sum())
            else:
                off2 = float((cov * cov).sum() - (sq * sq).sum())
            prod, factored = cov @ self.R, False
        else:  # X̃ᵀ(X̃ R)/M: 2 M d² instead of d³; ‖Σ̃‖_F = ‖X̃ X̃ᵀ‖_F / M
            gram = xt @ xt.T / m
            off2 = float((gram * gram).sum() - (sq * sq).sum())
            prod, factored = xt @ self.R, True
        coef = self.kappa * v - (0.0 if self.lower_triangular else (1.0 - self.kappa)) * sq
        self.R.mul_((1.0 - self.lr * coef)[:, None])
        if factored:
            self.R.addmm_(xt.T, prod, alpha=a / m)
        else:
            self.R.add_(prod, alpha=a)
        self.updates += 1
        loss = ((1.0 - self.kappa) * max(off2, 0.0) + self.kappa * float((v * v).sum())) / d**2
        self._loss_sum += loss
        self._loss_count += 1
        self.check(where)
        return loss

    def check(self, where: str = "") -> None:
        """The guard: raise :class:`TrainingDiverged` if ``R`` is not finite or has grown too much."""
        gain = float(self.R.norm()) / math.sqrt(self.features)
        if math.isfinite(gain) and gain <= self.max_gain and bool(torch.isfinite(self.mean).all()):
            return
        what = "is not finite" if not math.isfinite(gain) else f"grew to ‖R‖_F/√d = {gain:.3g} > decor.max_gain {self.max_gain:g}"
        raise TrainingDiverged(
            f"the decorrelation matrix R{' of ' + where if where else ''} {what} after {self.updates} updates; "
            f"lower decor.lr (now {self.lr:g}) or decor.kappa (now {self.kappa:g}), or use a larger "
            "decor.subsample; inputs with (near) zero variance cannot be whitened"
        )

    def pop_loss(self) -> float | None:
        """Mean loss of the updates since the last call (None if there were none)."""
        if self._loss_count == 0:
            return None
        loss = self._loss_sum / self._loss_count
        self._loss_sum, self._loss_count = 0.0, 0
        return loss


# ---------------------------------------------------------------------- model level
DECOR_KEYS = ("lr", "kappa", "centring", "momentum", "subsample", "lower_triangular", "max_gain", "min_variance",
              "layers")


def input_features(layer: Layer) -> int:
    """``d``: the fan-in for dense layers, ``C_in k k`` for convolutions."""
    if isinstance(layer, Conv2d):
        return layer.in_shape[0] * layer.kernel_size**2
    if isinstance(layer, Dense):
        return math.prod(layer.in_shape)
    raise ConfigError(f"decorrelation does not support layers of type {type(layer).__name__}")


def add_decorrelation(model: Network, layers: Sequence[int] | str = "all", **params: Any) -> Network:
    """Give the chosen layers (indices, negative allowed; default all) a :class:`Decorrelation`.

    ``params`` are :class:`Decorrelation`'s (the keys of the ``[decor]`` table: lr, kappa,
    centring, momentum, subsample, lower_triangular, max_gain).
    """
    unknown = set(params) - set(DECOR_KEYS)
    if unknown:
        raise ConfigError(f"unknown decor keys {sorted(unknown)}; known: enabled, {', '.join(DECOR_KEYS)}")
    n = len(model.layers)
    if layers == "all":
        chosen = list(range(n))
    elif isinstance(layers, (list, tuple)) and all(isinstance(i, int) and -n <= i < n for i in layers):
        chosen = sorted({i % n for i in layers})
    else:
        raise ConfigError(f"decor.layers must be \"all\" or a list of layer indices in [-{n}, {n}), got {layers!r}")
    p = next(model.parameters())
    for i in chosen:
        layer = model.layers[i]
        layer.decorrelation = Decorrelation(input_features(layer), **params).to(p.device, p.dtype)
    return model


def has_decorrelation(model: Network) -> bool:
    return any(getattr(layer, "decorrelation", None) is not None for layer in model.layers)


def _decorrelated_rows(layer: Layer, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Rows ``x̃`` (``[N, d]``) from a layer's input tap (``[..., features]`` or images for conv)."""
    dec = layer.decorrelation
    if not isinstance(layer, Conv2d):  # the tap is the raw input: subsample its rows, then apply R
        x = x.reshape(-1, dec.features)
        rows = dec._rows(x.shape[0], generator, x.device)
        return dec(x if rows is None else x[rows])
    # conv: the tap is the raw image. The subsample is drawn as whole images (a random share
    # of the samples, every patch position of each) before unfolding, so only those are unfolded.
    img = x.reshape(-1, *layer.in_shape)
    positions = layer._conv_shape[1] * layer._conv_shape[2]
    images = dec._rows(img.shape[0], generator, img.device, per_item=positions)
    if images is not None:
        img = img[images]
    patches = F.unfold(img, layer.kernel_size, padding=layer.padding, stride=layer.stride)  # [b, d, L]
    return dec(patches.transpose(1, 2).reshape(-1, dec.features))


@torch.no_grad()
def update_layer_decorrelation(layer: Layer, inputs: torch.Tensor, generator: torch.Generator | None = None,
                               where: str = "") -> None:
    """One update of ``layer``'s ``R`` (if it has one) from its ``input`` tap (``[..., features]``
    or images for conv; a random ``decor.subsample`` of the rows is used)."""
    if layer.decorrelation is not None:
        rows = _decorrelated_rows(layer, inputs, generator)
        layer.decorrelation.update(rows, generator, where=where, subsample=False)


@torch.no_grad()
def update_decorrelation_step(model: Network, taps: Sequence[Taps], generator: torch.Generator | None = None) -> None:
    """Update every layer's ``R`` from one time step's taps (``taps[k].input`` is ``[B, ...]``)."""
    for k, (layer, tap) in enumerate(zip(model.layers, taps)):
        update_layer_decorrelation(layer, tap.input, generator, where=f"layer {k}")


@torch.no_grad()
def update_decorrelation(model: Network, record: Record, generator: torch.Generator | None = None) -> None:
    """Update every layer's ``R`` once from a run's record (inputs ``[T, B, ...]``, all steps pooled)."""
    if not record.layers:
        raise ConfigError("update_decorrelation needs a record with the layers' taps (run with record=True)")
    for k, (layer, rec) in enumerate(zip(model.layers, record.layers)):
        update_layer_decorrelation(layer, rec.input, generator, where=f"layer {k}")


@torch.no_grad()
def merge_decorrelation(model: Network) -> Network:
    """A copy of ``model`` with every ``R`` folded into its weights (``W R``, ``b − W μ̃``): same outputs."""
    merged = copy.deepcopy(model)
    for layer in merged.layers:
        dec = layer.decorrelation
        if dec is None:
            continue
        w_eff, b_eff = dec.fold(layer.weight, layer.bias)
        layer.weight.data.copy_(w_eff)
        if b_eff is not None:
            if layer.bias is None:
                layer.bias = nn.Parameter(b_eff.clone())
            else:
                layer.bias.data.copy_(b_eff)
        layer.decorrelation = None
    return merged


def decorrelation_metrics(model: Network) -> dict[str, float]:
    """``decor_loss_<k>``: mean loss of layer ``k``'s updates since the last call (once per epoch)."""
    out = {}
    for k, layer in enumerate(model.layers):
        dec = getattr(layer, "decorrelation", None)
        if dec is not None:
            loss = dec.pop_loss()
            if loss is not None:
                out[f"decor_loss_{k}"] = loss
    return out


@torch.no_grad()
def input_correlation(model: Network, x: torch.Tensor, layer: int = 0, *, decorrelated: bool = True,
                      max_features: int | None = None) -> torch.Tensor:
    """Correlation matrix (``d x d``) of what layer ``layer``'s weights see on encoded input ``x``.

    ``decorrelated=False`` gives the correlation of the raw input instead (before ``R``).
    Features with zero variance get zero correlation.
    """
    rec = model.run(x, record=True)
    lay = model.layers[layer]
    tap = rec.layers[layer].input
    dec = lay.decorrelation
    if isinstance(lay, Conv2d):
        img = tap.reshape(-1, *lay.in_shape)
        rows = F.unfold(img, lay.kernel_size, padding=lay.padding, stride=lay.stride).transpose(1, 2)
        rows = rows.reshape(-1, rows.shape[-1])
        if decorrelated and dec is not None:
            rows = dec(rows)
    else:
        rows = tap.reshape(-1, tap.shape[-1] if tap.dim() <= 3 else math.prod(tap.shape[2:]))
        if decorrelated and dec is not None:
            rows = dec(rows)
    if max_features is not None:
        rows = rows[:, :max_features]
    rows = rows - rows.mean(0)
    std = rows.std(0)
    corr = (rows.T @ rows) / (rows.shape[0] - 1)
    denom = std[:, None] * std[None, :]
    return torch.where(denom > 1e-12, corr / denom.clamp_min(1e-12), torch.zeros_like(corr))
