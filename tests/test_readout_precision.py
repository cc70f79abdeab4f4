"""The float32 path of the ridge least-squares solver (ZORB's layer solves): centred float32 sums
agree with float64 where the scaled system is well conditioned; an ill-conditioned one is
detected and redone in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurolearn.data import load_dataset
from neurolearn.errors import ConfigError
from neurolearn.layers import Dense
from neurolearn.network import Network
from neurolearn.neurons import RateParams
from neurolearn.readout import U32, NormalEquations, ridge_least_squares, with_ones
from neurolearn.rules.zorb import Zorb, weight_pinv


def _problem(n: int = 3000, d: int = 40, c: int = 5, offset: float = 0.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g) + offset  # float32, like ZORB's activities
    w = torch.randn(d, c, generator=g, dtype=torch.float64)
    t = (a.double() @ w + 0.1 * torch.randn(n, c, generator=g, dtype=torch.float64) + 3.0).float()
    return a, t


@pytest.mark.parametrize("bias", [False, True])
def test_float32_sums_agree_with_float64_where_well_conditioned(bias):
    # columns with a mean 50x their spread: raw float32 sums would lose ~3 digits to the mean, the
    # centred ones do not
    a, t = _problem(offset=50.0)
    ref, rep64 = ridge_least_squares(a, t, ridge=1e-10, chunk=512, bias=bias, precision="float64")
    for precision in ("float32", "auto"):
        sol, rep = ridge_least_squares(a, t, ridge=1e-10, chunk=512, bias=bias, precision=precision)
        assert sol.dtype == torch.float64 and sol.shape == ref.shape
        torch.testing.assert_close(sol[:40], ref[:40], rtol=2e-5, atol=2e-5)  # the weights
        # the fitted values (the intercept of data centred at 50 is a cancellation: compare what it predicts)
        x = with_ones(a.double()) if bias else a.double()
        fit, fit_ref = x @ sol, x @ ref
        assert float((fit - fit_ref).abs().max()) < 1e-5 * float(fit_ref.abs().max())
    assert rep.precision == "float32" and not rep.fell_back and rep.condition < 100
    assert rep64.precision == "float64" and rep64.condition is None


def test_centred_totals_are_the_raw_bordered_sums():
    a, t = _problem(n=200, d=6, c=3, offset=2.0)
    a, t = a.double(), t.double()
    raw = NormalEquations(7, 3)
    raw.add(with_ones(a), t)
    mu, zeta = a.mean(0), t.mean(0)
    centred = NormalEquations(6, 3, shift=(mu, zeta), bias=True)
    for i in range(0, 200, 64):
        centred.add(a[i:i + 64], t[i:i + 64])
    for got, want in zip(centred.totals(), raw.totals()):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(centred.solve(1e-6), raw.solve(1e-6), rtol=1e-9, atol=1e-9)


def test_an_ill_conditioned_system_falls_back_to_float64_and_says_so():
    a, t = _problem(d=10)
    g = torch.Generator().manual_seed(1)
    a = torch.cat([a, a[:, :1] + 1e-5 * torch.randn(a.shape[0], 1, generator=g)], 1)  # nearly collinear columns
    ref, _ = ridge_least_squares(a, t, ridge=0.0, bias=True, precision="float64")
    sol, rep = ridge_least_squares(a, t, ridge=0.0, bias=True, precision="auto")
    assert rep.fell_back and rep.precision == "float64" and rep.condition * U32 > 1.0
    torch.testing.assert_close(sol, ref, rtol=0, atol=0)  # the float64 solution itself
    forced, _ = ridge_least_squares(a, t, ridge=0.0, bias=True, precision="float32")
    assert (forced - ref).abs().max() > 1e-3 * ref.abs().max()  # what the check protects against


def test_condition_estimate_tracks_the_true_scaled_condition():
    a, _ = _problem(n=500, d=8)
    a[:, 1] = a[:, 0] + 1e-3 * a[:, 1]
    ne = NormalEquations(8, 1, dtype=torch.float64)
    ne.add(a.double(), torch.zeros(500, 1))
    g = ne.regularised(0.0)
    s = g / g.diagonal().sqrt()[:, None] / g.diagonal().sqrt()[None, :]
    true = float(torch.linalg.cond(s))
    assert true / 3 < ne.scaled_condition(0.0) <= true * 1.0001


def test_bad_precision_is_one_clear_error():
    a, t = _problem(n=20, d=3)
    with pytest.raises(ConfigError, match="float64, float32, auto"):
        ridge_least_squares(a, t, precision="half")
    with pytest.raises(ConfigError, match="solve_precision"):
        Zorb(solve_precision="float16")


def test_zorb_auto_precision_matches_float64_on_digits():
    digits = load_dataset("digits")
    y1 = F.one_hot(digits.y_train, 10).double()
    acc, reports = {}, {}
    for precision in ("float64", "auto"):
        torch.manual_seed(0)
        model = Network([Dense(64, 48, RateParams("tanh"), init="xavier_uniform"),
                         Dense(48, 10, init="xavier_uniform")])
        rule = Zorb(solver="normal", ridge=1e-6, solve_precision=precision)
        rule.fit(model, digits.x_train, y1, softmax=True)
        with torch.no_grad():
            acc[precision] = float((model.predict(digits.x_test).argmax(1) == digits.y_test).double().mean())
        reports[precision] = rule.solve_reports
    assert [r.precision for r in reports["float64"]] == ["float64", "float64"]
    assert any(r.precision == "float32" for r in reports["auto"])
    assert acc["auto"] > 0.9 and abs(acc["auto"] - acc["float64"]) <= 0.005, acc


# ---------------------------------------------------------------- session 8: probe, exact centring, pinv, phases
def _optimality_residual(a, t, sol, ridge, bias):
    """‖Aᵀ(A w − T) + α w‖ / ‖AᵀT‖ in float64 (A with the ones column when ``bias``), with the
    solver's ridge ``α = ridge · mean(diag AᵀA)``: zero exactly at the ridge solution."""
    a64 = with_ones(a.double()) if bias else a.double()
    g = a64.T @ a64
    alpha = ridge * float(g.diagonal().mean())
    grad = a64.T @ (a64 @ sol - t.double()) + alpha * sol
    return float(grad.norm() / (a64.T @ t.double()).norm())


@pytest.mark.parametrize("precision", ["float64", "float32", "auto"])
@pytest.mark.parametrize("bias", [False, True])
def test_the_solution_satisfies_its_own_normal_equations(precision, bias):
    # a ridge large enough that a wrong α (or a wrong sign in the restored sums) moves the solution
    a, t = _problem(n=1500, d=12, c=3, offset=4.0)
    sol, _ = ridge_least_squares(a, t, ridge=1e-2, chunk=256, bias=bias, precision=precision)
    assert _optimality_residual(a, t, sol, 1e-2, bias) < (1e-10 if precision == "float64" else 2e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_centred_sums_are_exact_for_a_shift_that_is_not_the_mean(dtype):
    a, t = _problem(n=300, d=5, c=2, offset=3.0)
    a, t = a.double(), t.double()
    raw = NormalEquations(6, 2)
    raw.add(with_ones(a), t)
    shift = (a.mean(0) + 0.37, t.mean(0) - 1.3)  # far from the means: the cross terms μsᵀ, sζᵀ matter
    centred = NormalEquations(5, 2, dtype=dtype, shift=shift, bias=True)
    for i in range(0, 300, 64):
        centred.add(a[i:i + 64].to(dtype), t[i:i + 64].to(dtype))
    tol = dict(rtol=1e-12, atol=1e-9) if dtype == torch.float64 else dict(rtol=3e-6, atol=1e-3)
    for got, want in zip(centred.totals(), raw.totals()):
        torch.testing.assert_close(got, want, **tol)


def test_the_probe_sends_a_singular_first_chunk_to_float64_and_says_so():
    a, t = _problem(n=3000, d=10)
    g = torch.Generator().manual_seed(1)
    a = torch.cat([a, a[:, :1] + 1e-7 * torch.randn(a.shape[0], 1, generator=g), a[:, 1:2]], 1)  # collinear
    ref, _ = ridge_least_squares(a, t, ridge=0.0, chunk=500, bias=True, precision="float64")
    sol, rep = ridge_least_squares(a, t, ridge=0.0, chunk=500, bias=True, precision="auto")
    assert rep.probe and rep.fell_back and rep.precision == "float64" and rep.condition * U32 > 1.0
    torch.testing.assert_close(sol, ref, rtol=0, atol=0)
    well, rep = ridge_least_squares(*_problem(n=3000, d=10), ridge=0.0, chunk=500, bias=True, precision="auto")
    assert not rep.probe and not rep.fell_back and rep.precision == "float32"


def test_a_probe_that_passes_is_confirmed_on_all_rows():
    # the first chunk is well conditioned; the later rows, 1e4 larger, make two columns collinear
    a, t = _problem(n=2000, d=8)
    g = torch.Generator().manual_seed(3)
    late = a[500:] * 1e4
    late[:, 1] = late[:, 0] + 1e-4 * torch.randn(1500, generator=g)
    a = torch.cat([a[:500], late])
    ref, _ = ridge_least_squares(a, t, ridge=0.0, chunk=500, bias=True, precision="float64")
    sol, rep = ridge_least_squares(a, t, ridge=0.0, chunk=500, bias=True, precision="auto")
    assert not rep.probe and rep.fell_back and rep.precision == "float64" and rep.condition * U32 > 0.1
    torch.testing.assert_close(sol, ref, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (40, 40)])
def test_weight_pinv_is_the_svd_pseudoinverse(shape):
    g = torch.Generator().manual_seed(4)
    w = torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(weight_pinv(w, 1e-10), torch.linalg.pinv(w, rtol=1e-10), rtol=1e-9, atol=1e-11)
    w[3] = w[4]  # rank-deficient: the SVD drops a singular value, and so must weight_pinv
    torch.testing.assert_close(weight_pinv(w, 1e-10), torch.linalg.pinv(w, rtol=1e-10), rtol=1e-9, atol=1e-11)
    w = torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1
    s = torch.linalg.svdvals(w)
    rtol = float(s[-2] / s[0]) * 0.999  # drops the smallest singular value: only the SVD does that
    torch.testing.assert_close(weight_pinv(w, rtol), torch.linalg.pinv(w, rtol=rtol), rtol=1e-9, atol=1e-11)


def test_zorb_fit_returns_the_models_own_logits_and_profiles_its_phases():
    digits = load_dataset("digits")
    x, y1 = digits.x_train[:700], F.one_hot(digits.y_train[:700], 10).double()
    torch.manual_seed(0)
    model = Network([Dense(64, 40, RateParams("tanh"), init="xavier_uniform"),
                     Dense(40, 24, RateParams("tanh"), init="xavier_uniform"),
                     Dense(24, 10, init="xavier_uniform")])
    rule = Zorb(solver="normal", ridge=1e-6, chunk=300)  # chunks and GEMM blocks that do not divide N
    logits = rule.fit(model, x, y1, softmax=True)
    with torch.no_grad():
        torch.testing.assert_close(logits, model.predict(x), rtol=1e-4, atol=1e-4)
    assert set(rule.profile) == {"forward_initial", "targets", "pinv", "sums_and_solves", "forward_solved"}
    assert all(v >= 0.0 for v in rule.profile.values())
    assert float((logits.argmax(1) == digits.y_train[:700]).double().mean()) > 0.95
