"""Closed-form and proximal solvers: ZORB, semi-implicit BP, the reservoir readout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurolearn.config import resolve_config
from neurolearn.data import load_dataset
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams, activation, activation_inverse
from neurolearn.readout import NormalEquations, fit_readout, lstsq_pinv, softmax_inverse
from neurolearn.rules import RULES
from neurolearn.rules.sibp import prox_linear, prox_relu, prox_relu_objective
from neurolearn.rules.zorb import Zorb, relaxed_inverse
from neurolearn.runs import build_run
from neurolearn.training import Trainer


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _accuracy(model: Network, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.predict(x).argmax(1) == y).float().mean())


# ---------------------------------------------------------------- least squares
def test_zorb_linear_network_is_exact_least_squares():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 7, generator=gen)
    y = torch.randn(200, 3, generator=gen)
    torch.manual_seed(0)
    model = Network([Dense(7, 3)])
    Zorb(solver="pinv", rcond=1e-15, output="linear").fit(model, x, y, softmax=False)
    a = np.hstack([x.numpy().astype(np.float64), np.ones((200, 1))])
    ref = np.linalg.lstsq(a, y.numpy().astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(model.layers[0].weight.detach().numpy(), ref[:-1].T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.layers[0].bias.detach().numpy(), ref[-1], rtol=1e-5, atol=1e-6)
    # the streaming normal equations (ridge 0) reach the same solution, chunk by chunk
    Zorb(solver="normal", ridge=0.0, chunk=37, output="linear").fit(model, x, y, softmax=False)
    np.testing.assert_allclose(model.layers[0].weight.detach().numpy(), ref[:-1].T, rtol=1e-4, atol=1e-5)


def test_lstsq_helpers_match_numpy():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(50, 5, generator=gen, dtype=torch.float64)
    t = torch.randn(50, 2, generator=gen, dtype=torch.float64)
    ref = np.linalg.lstsq(a.numpy(), t.numpy(), rcond=None)[0]
    np.testing.assert_allclose(lstsq_pinv(a, t).numpy(), ref, atol=1e-10)
    ne = NormalEquations(5, 2)
    for i in range(0, 50, 16):
        ne.add(a[i:i + 16], t[i:i + 16])
    np.testing.assert_allclose(ne.solve(0.0).numpy(), ref, atol=1e-10)
    assert ne.solve(1.0).norm() < ne.solve(0.0).norm()  # the ridge shrinks


# ---------------------------------------------------------------- relaxed inverses
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "relu", "leaky_relu", "identity"])
def test_activation_inverse_inverts_on_the_range(name):
    z = torch.linspace(-4, 4, 101, dtype=torch.float64)
    h = activation(name, z)
    back = activation(name, activation_inverse(name, h))
    torch.testing.assert_close(back, h, atol=1e-9, rtol=1e-9)
    if name in ("tanh", "sigmoid", "leaky_relu", "identity"):  # bijective: z itself comes back
        torch.testing.assert_close(activation_inverse(name, h), z, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_relaxed_inverse_reproduces_any_target_with_the_stored_rescaling(name):
    t = torch.randn(40, 6, dtype=torch.float64) * 3.0 + 1.0  # far outside (-1, 1) / (0, 1)
    z, scale, shift = relaxed_inverse(name, t, epsilon=1e-5)
    assert torch.isfinite(z).all()
    torch.testing.assert_close(scale * activation(name, z) + shift, t, atol=1e-8, rtol=1e-8)


def test_softmax_inverse_targets_the_right_class():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (30,), generator=gen)
    t = softmax_inverse(F.one_hot(y, 5).double(), logits)
    assert (t.argmax(1) == y).all()
    assert (torch.softmax(t, 1).gather(1, y[:, None]) > 0.99).all()


# ---------------------------------------------------------------- ZORB trains
def test_zorb_trains_digits_and_saves_its_rescaling(digits, tmp_path):
    cfg = resolve_config(model="zorb-digits")
    assert cfg["rule"]["name"] == "zorb" and cfg["train"]["batch_size"] == 0
    run = build_run(cfg, digits)
    metrics = Trainer(run, tmp_path, progress=False).fit()
    assert metrics["final"]["test_accuracy"] >= 0.94
    scales = [float(layer.act_scale) for layer in run.model.layers[:-1]]
    assert all(s != 1.0 for s in scales)  # the relaxation became part of the model
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    assert "layers.0.act_scale" in state and "layers.1.act_shift" in state
    fresh = build_run(cfg, digits).model
    fresh.load_state_dict(state)
    assert _accuracy(fresh, digits.x_test, digits.y_test) == pytest.approx(metrics["final"]["test_accuracy"])


def test_zorb_rejects_spiking_networks():
    model = Network([Dense(4, 3, LIFParams()), Dense(3, 2)])
    with pytest.raises(Exception, match="readout"):
        Zorb.check_network(model)


# ---------------------------------------------------------------- SIBP
def test_prox_linear_is_the_exact_minimiser():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(20, 9, generator=gen, dtype=torch.float64)
    t = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    w0 = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    for lam in (0.1, 10.0):
        w = prox_linear(w0, a, t, lam)
        grad = 2 * (a @ w.T - t).T @ a + 2 * lam * (w - w0)
        assert grad.abs().max() < 1e-9
    a_tall = torch.randn(50, 9, generator=gen, dtype=torch.float64)  # the other branch (B > in)
    t_tall = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    w = prox_linear(w0, a_tall, t_tall, 1.0)
    assert (2 * (a_tall @ w.T - t_tall).T @ a_tall + 2 * (w - w0)).abs().max() < 1e-9


def test_prox_relu_lowers_the_proximal_objective():
    gen = torch.Generator().manual_seed(4)
    a = torch.randn(64, 11, generator=gen, dtype=torch.float64)
    w_true = torch.randn(8, 11, generator=gen, dtype=torch.float64)
    target = torch.relu(a @ w_true.T)
    w0 = 0.1 * torch.randn(8, 11, generator=gen, dtype=torch.float64)
    lam = 1.0
    before = prox_relu_objective(w0, w0, a, target, lam)
    one = prox_relu(w0, a, target, lam, iters=1)
    five = prox_relu(w0, a, target, lam, iters=5)
    f1 = prox_relu_objective(one, w0, a, target, lam)
    f5 = prox_relu_objective(five, w0, a, target, lam)
    assert f1 < before and f5 <= f1
    assert f5 < 0.5 * before


def test_sibp_trains_digits(digits):
    cfg = resolve_config(model="mlp-digits", rule="sibp", epochs=2, batch_size=100)
    cfg["model"]["layers"] = [{"type": "dense", "size": 256, "neuron": "relu", "init": "normal"},
                              {"type": "dense", "size": 10, "init": "normal"}]
    run = build_run(cfg, digits)
    assert not run.rule.uses_optimizer
    metrics = Trainer(run, None, progress=False).fit()
    assert metrics["final"]["test_accuracy"] >= 0.93


def test_rules_are_registered():
    assert RULES["zorb"] is Zorb and RULES["sibp"].name == "sibp"
    assert not RULES["zorb"].requires.local and not RULES["sibp"].requires.local


# ---------------------------------------------------------------- reservoir readout
def test_closed_form_readout_of_a_lif_reservoir(digits):
    torch.manual_seed(0)
    from neurolearn.encoders import Encoder

    model = Network([Dense(64, 200, LIFParams(tau_mem=20e-3), init_gain=3.0),
                     Dense(200, 10, LIParams(tau=20e-3))], encoder=Encoder("rate", steps=20), decode="mean")
    gen = torch.Generator().manual_seed(0)
    fit = fit_readout(model, digits.x_train, digits.y_train, ridge=1e-3, generator=gen)
    assert fit.train_accuracy >= 0.9
    # the fitted readout, run through the network itself, gives the predictions the solve assumed
    acc = _accuracy(model, digits.x_test, digits.y_test)
    assert acc >= 0.85
