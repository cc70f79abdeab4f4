r"""Semi-implicit back propagation, SIBP (Ren Liu & Xiaoqun Zhang, arXiv 2002.03516).

A solver (``uses_optimizer = False``) for ReLU MLPs with a linear output and softmax
cross-entropy. One mini-batch iteration, with ``F_0 = X``, ``F_i`` the activity of layer
``i`` (``F_n`` = logits), ``A_i = [F_i, 1]`` and ``W̃_i = [W_i b_i]``:

1. explicit step on the output *neurons*: ``g_n = softmax(F_n) − Y`` (per sample),
   ``F_n⁺ = F_n − η g_n``;
2. implicit (proximal) step on the output *parameters*, an exact ridge solve:

   .. math::  W̃_{n-1} \leftarrow \arg\min_W ‖A_{n-1} Wᵀ − F_n⁺‖² + λ‖W − W̃_{n-1}‖²
              = (F_n⁺ᵀ A_{n-1} + λ W̃_{n-1})(A_{n-1}ᵀ A_{n-1} + λ I)^{-1};

3. the error goes back through the *updated* weights: ``g_{n-1} = g_n W_{n-1,new}``,
   ``F_{n-1}⁺ = F_{n-1} − η g_{n-1}``;
4. each ReLU layer, top-down, solves its proximal problem

   .. math::  \min_W φ(W) = ‖\mathrm{relu}(A_{i-1} Wᵀ) − F_i⁺‖² + λ‖W − W̃_{i-1}‖²

   inexactly with ``inner_iters`` Fletcher–Reeves nonlinear-CG iterations (step length from
   the quadratic model at the current activation pattern, then Armijo backtracking, so φ
   never increases), and sends ``g_{i-1} = (g_i ⊙ 1[F_i > 0]) W_{i,new}`` further down.

Sums run over the samples of the batch (as in the authors' MATLAB code), so ``λ`` acts as
an inverse learning rate per batch: for small steps SIBP is gradient descent with step
``2ηB/λ`` on the mean loss, but being implicit it stays stable at step sizes where SGD
diverges. The bias is regularised with the same ``λ`` and solved jointly with ``W``.

Needs: weight transport (errors through the updated weights), whole mini-batch solves
(Gram matrices, line searches over the batch): not local.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from neurolearn.errors import ConfigError
from neurolearn.layers import Dense
from neurolearn.learning.options import check_number
from neurolearn.network import Network
from neurolearn.readout import with_ones
from neurolearn.rules.base import Requirements, Rule, StepOutput
from neurolearn.rules.zorb import static_input


def prox_linear(w0: torch.Tensor, a: torch.Tensor, target: torch.Tensor, lam: float) -> torch.Tensor:
    """``argmin_W ‖A Wᵀ − T‖² + λ‖W − W0‖²`` (``W``: ``[out, in]``, ``A``: ``[B, in]``), in float64.

    ``Wᵀ = (AᵀA + λI)⁻¹ M`` with ``M = AᵀT + λW0ᵀ``, computed through the batch-sized system
    (Woodbury): ``(AᵀA + λI)⁻¹ M = (M − Aᵀ (AAᵀ + λI)⁻¹ A M) / λ``.
    """
    a64, t64, w64 = a.double(), target.double(), w0.double()
    m = a64.T @ t64 + lam * w64.T
    if a64.shape[0] < a64.shape[1]:
        small = a64 @ a64.T
        small.diagonal().add_(lam)
        sol = (m - a64.T @ torch.linalg.solve(small, a64 @ m)) / lam
    else:
        gram = a64.T @ a64
        gram.diagonal().add_(lam)
        sol = torch.linalg.solve(gram, m)
    return sol.T.to(w0.dtype)


def prox_relu_objective(w: torch.Tensor, w0: torch.Tensor, a: torch.Tensor, target: torch.Tensor,
                        lam: float) -> float:
    """``φ(W) = ‖relu(A Wᵀ) − T‖² + λ‖W − W0‖²``."""
    return float(((torch.relu(a @ w.T) - target) ** 2).sum() + lam * ((w - w0) ** 2).sum())


def prox_relu(w0: torch.Tensor, a: torch.Tensor, target: torch.Tensor, lam: float, iters: int = 5,
              rho: float = 0.5, sigma: float = 1e-4, max_backtracks: int = 30) -> torch.Tensor:
    """A few nonlinear-CG iterations on ``φ`` (see the module docstring), starting at ``W0``.

    Gradient: ``∇φ = 2((relu(Z) − T) ⊙ 1[Z > 0])ᵀ A + 2λ(W − W0)``, ``Z = A Wᵀ``; step length
    ``α = −⟨∇φ, d⟩ / (2‖1[Z>0] ⊙ (A dᵀ)‖² + 2λ‖d‖²)``, halved until Armijo's condition holds.
    """
    w = w0.clone()
    z = a @ w.T
    r = torch.relu(z) - target
    phi = float((r ** 2).sum())
    dist = 0.0  # ‖W − W0‖², kept as a scalar
    grad_prev = d = None
    for _ in range(iters):
        mask = z > 0
        delta = w - w0
        grad = 2.0 * (r * mask).T @ a + (2.0 * lam) * delta
        gg = float((grad ** 2).sum())
        if gg == 0.0:
            break
        d = -grad if d is None else -grad + (gg / float((grad_prev ** 2).sum())) * d  # Fletcher-Reeves
        slope = float((grad * d).sum())
        if slope >= 0:  # not a descent direction: restart
            d, slope = -grad, -gg
        q = a @ d.T
        dd = float((d ** 2).sum())
        delta_d = float((delta * d).sum())
        alpha = -slope / (2.0 * float(((q * mask) ** 2).sum()) + 2.0 * lam * dd)
        now = phi + lam * dist
        for _ in range(max_backtracks):
            z_new = z + alpha * q
            r_new = torch.relu(z_new) - target
            phi_new = float((r_new ** 2).sum())
            dist_new = dist + 2.0 * alpha * delta_d + alpha * alpha * dd
            if phi_new + lam * dist_new <= now + sigma * alpha * slope:
                break
            alpha *= rho
        else:
            break  # no decrease found: keep w
        w = w + alpha * d
        z, r, phi, dist = z_new, r_new, phi_new, dist_new
        grad_prev = grad
    return w


@dataclass(frozen=True)
class SIBPOptions:
    """SIBP's options: ``eta`` (neuron step size η), ``lam`` (proximal weight λ), ``inner_iters``."""

    eta: float = 1.0
    lam: float = 1.0
    inner_iters: int = 5

    def __post_init__(self) -> None:
        check_number("sibp: eta", self.eta, low=0.0, low_open=True)
        check_number("sibp: lam", self.lam, low=0.0, low_open=True)
        check_number("sibp: inner_iters", self.inner_iters, low=1, integer=True)


class SemiImplicitBP(Rule):
    """SIBP: explicit neuron steps (``eta``), proximal parameter steps (``lam``); see module docstring.

    Parameters: ``eta`` (neuron step size η), ``lam`` (proximal weight λ, per batch sum),
    ``inner_iters`` (CG iterations of each ReLU layer's proximal solve).
    """

    name = "sibp"
    summary = "semi-implicit backprop: explicit neuron steps + proximal (ridge / CG) weight solves (non-local)"
    requires = Requirements(weight_transport=True, whole_batch=True)
    uses_optimizer = False

    Options = SIBPOptions

    def __init__(self, options: SIBPOptions | None = None, **params: Any) -> None:
        super().__init__(options, **params)
        self.eta, self.lam, self.inner_iters = float(self.options.eta), float(self.options.lam), \
            int(self.options.inner_iters)

    @staticmethod
    def check_network(model: Network) -> list[Dense]:
        layers = list(model.layers)
        for k, layer in enumerate(layers):
            if not isinstance(layer, Dense) or layer.recurrent or layer.decorrelation is not None or layer.bias is None:
                raise ConfigError(f"sibp: layer {k} must be a plain dense layer with a bias (not recurrent, "
                                  "convolutional or decorrelated)")
            p = layer.neuron
            last = k == len(layers) - 1
            ok = p is None if last else (p is not None and p.static_activation == "relu")
            if not ok:
                raise ConfigError(f"sibp: layer {k} has neuron {p}; sibp needs static relu hidden layers and a "
                                  "linear output layer (no neuron)")
            if float(getattr(layer, "act_scale", 1.0)) != 1.0 or float(getattr(layer, "act_shift", 0.0)) != 0.0:
                raise ConfigError(f"sibp: layer {k} has an output rescaling (act_scale/act_shift); reset it first")
        return layers

    @torch.no_grad()
    def step(self, model, x, y, objective, updater) -> StepOutput:
        if objective.task != "classification":
            raise ConfigError("sibp trains classifiers (softmax cross-entropy) only")
        inputs = static_input(model, x, "sibp")
        layers = self.check_network(model)
        acts = [inputs.reshape(x.shape[1], -1)]
        for layer in layers:
            z = F.linear(acts[-1], layer.weight, layer.bias)
            acts.append(z if layer.neuron is None else torch.relu(z))
        logits = acts[-1]
        loss = F.cross_entropy(logits, y, reduction="none")
        g = torch.softmax(logits, 1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)
        for k in range(len(layers) - 1, -1, -1):
            layer = layers[k]
            target = acts[k + 1] - self.eta * g
            a = with_ones(acts[k])
            w0 = torch.cat([layer.weight, layer.bias[:, None]], 1)
            if layer.neuron is None:
                w = prox_linear(w0, a, target, self.lam)
            else:
                w = prox_relu(w0, a, target, self.lam, self.inner_iters)
            if layer.weight.requires_grad:  # frozen means frozen: a frozen part keeps its old value
                layer.weight.copy_(w[:, :-1])
            if layer.bias.requires_grad:
                layer.bias.copy_(w[:, -1])
            if k > 0:  # the error through the updated weights, gated by the old activity of layer k-1
                g = g @ layer.weight if layer.neuron is None else (g * (acts[k + 1] > 0)) @ layer.weight
        return StepOutput(loss, logits)
