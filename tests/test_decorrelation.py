"""Decorrelation: the rule decorrelates (and whitens), merging keeps outputs, DBP/DANP learn faster."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurolearn.build import build_network
from neurolearn.config import load_model_file, resolve_config
from neurolearn.decorrelation import (
    Decorrelation,
    add_decorrelation,
    decorrelation_metrics,
    merge_decorrelation,
    update_decorrelation,
    update_decorrelation_step,
)
from neurolearn.errors import ConfigError, TrainingDiverged
from neurolearn.layers import Conv2d, Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams, RateParams

pytestmark = pytest.mark.usefixtures("one_thread")


def correlated_gaussian(n: int, d: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5 + torch.eye(d)
    scales = torch.linspace(0.3, 3.0, d)
    return (torch.randn(n, d, generator=g) @ mix) * scales


def offdiag_corr(x: torch.Tensor) -> float:
    c = torch.corrcoef(x.T)
    d = c.shape[0]
    return float((c - torch.eye(d)).abs().sum() / (d * (d - 1)))


def run_rule(dec: Decorrelation, x: torch.Tensor, steps: int, batch: int = 128) -> None:
    g = torch.Generator().manual_seed(1)
    for s in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        dec.update(dec(x[idx]), g)


def test_rule_decorrelates_correlated_gaussian_input():
    x = correlated_gaussian(4000, 16)
    dec = Decorrelation(16, lr=2e-2, kappa=0.0, centring=False)
    before = offdiag_corr(dec(x))
    losses = []
    for _ in range(3):
        run_rule(dec, x, 200)
        losses.append(dec.pop_loss())
    after = offdiag_corr(dec(x))
    assert before > 0.15
    assert after < 0.2 * before, (before, after)
    assert losses[-1] < losses[0]


def test_rule_whitens_with_kappa_one():
    x = correlated_gaussian(4000, 12)
    dec = Decorrelation(12, lr=2e-2, kappa=1.0, centring=False)
    run_rule(dec, x, 600)
    var = dec(x).pow(2).mean(0)
    assert torch.allclose(var, torch.ones(12), atol=0.15), var
    # kappa = 0 leaves the scale alone: variances stay far from one for the wide-range inputs
    dec0 = Decorrelation(12, lr=2e-2, kappa=0.0, centring=False)
    run_rule(dec0, x, 600)
    assert (dec0(x).pow(2).mean(0) - 1).abs().max() > 1.0


def test_mixed_rule_decorrelates_and_whitens_with_centring():
    x = correlated_gaussian(4000, 10) + 3.0  # far from zero mean
    dec = Decorrelation(10, lr=1e-2, kappa=0.5, centring=True)
    run_rule(dec, x, 1500)
    xt = dec(x)
    assert xt.mean(0).abs().max() < 0.15
    assert offdiag_corr(xt) < 0.05
    assert torch.allclose(xt.var(0), torch.ones(10), atol=0.2)


def test_lower_triangular_stays_lower_triangular():
    x = correlated_gaussian(2000, 8)
    dec = Decorrelation(8, lr=2e-2, kappa=0.0, centring=False, lower_triangular=True)
    before = offdiag_corr(dec(x))
    run_rule(dec, x, 600)
    assert torch.equal(dec.R, torch.tril(dec.R))
    assert offdiag_corr(dec(x)) < 0.4 * before


def test_lower_triangular_decorrelates_every_pair_including_the_first_input():
    """Unweighted ``tril(Σ̃, −1)`` (docs/decorrelation.md: why not decorbp's √j column weights):
    every pair is decorrelated, those with input 0 included, which a √j weighting of column j
    would leave untouched (its weight is 0)."""
    x = correlated_gaussian(4000, 6, seed=2)
    dec = Decorrelation(6, lr=2e-2, kappa=0.0, centring=False, lower_triangular=True)
    first_before = float(torch.corrcoef(dec(x).T)[1:, 0].abs().mean())
    run_rule(dec, x, 3000)  # the pairs with input 0 (the smallest variance) are the slowest
    c = torch.corrcoef(dec(x).T)
    assert float(c[1:, 0].abs().mean()) < 0.2 * first_before
    assert float((c - torch.eye(6)).abs().max()) < 0.1


def test_guard_stops_diverging_R():
    x = correlated_gaussian(512, 8) * 10
    dec = Decorrelation(8, lr=1.0, kappa=0.0, centring=False)
    with pytest.raises(TrainingDiverged, match="decor.lr"):
        run_rule(dec, x, 50)


def _trained_decor(model: Network, x: torch.Tensor, steps: int = 5) -> None:
    add_decorrelation(model, lr=5e-2, kappa=0.5, centring=True, subsample=0.5)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        update_decorrelation(model, model.run(x), g)
    assert all(not torch.equal(l.decorrelation.R, torch.eye(l.decorrelation.features)) for l in model.layers)


@pytest.mark.parametrize("kind", ["mlp", "conv", "recurrent", "spiking"])
def test_merging_R_into_W_leaves_outputs_unchanged(kind):
    torch.manual_seed(0)
    lrelu = RateParams("leaky_relu")
    if kind == "mlp":
        model, x = Network([Dense(20, 16, lrelu), Dense(16, 5)]), torch.rand(1, 32, 20)
    elif kind == "conv":
        model = Network([Conv2d((2, 9, 9), 4, 3, lrelu, padding=1, pool=2), Conv2d((4, 4, 4), 3, 3, lrelu),
                         Dense(12, 5)])
        x = torch.rand(1, 16, 2, 9, 9)
    elif kind == "recurrent":
        model, x = Network([Dense(6, 12, RateParams("tanh"), recurrent=True), Dense(12, 3)]), torch.rand(7, 8, 6)
    else:
        model = Network([Dense(10, 12, LIFParams(tau_mem=2e-2)), Dense(12, 3, LIParams(tau=2e-2))], decode="mean")
        x = (torch.rand(9, 16, 10) < 0.3).float()
    _trained_decor(model, x)
    out = model(x)
    merged = merge_decorrelation(model)
    assert all(l.decorrelation is None for l in merged.layers)
    assert torch.allclose(merged(x), out, atol=1e-5), (merged(x) - out).abs().max()
    assert model.layers[0].decorrelation is not None  # the original is untouched


def test_conv_weight_gradient_maps_back_through_folded_R():
    torch.manual_seed(0)
    layer = Conv2d((2, 7, 7), 3, 3, RateParams("tanh"), padding=1)
    model = Network([layer, Dense(3 * 7 * 7, 2)])
    x = torch.rand(1, 6, 2, 7, 7)
    _trained_decor(model, x)
    state = layer.init_state(6)
    _, _, taps = layer.step(x[0], state)
    post = torch.randn_like(taps.pre)
    layer.weight.grad = None
    (taps.pre * post).sum().backward()
    assert torch.allclose(layer.weight_gradient(post, taps.input.detach()), layer.weight.grad, atol=1e-4)


@pytest.mark.parametrize("rows", [4, 40])  # 4 rows < 10 units: R x is computed; 40 rows: R folded into W
def test_dense_drive_and_weight_gradient_are_the_same_folded_or_not(rows):
    torch.manual_seed(0)
    layer = Dense(8, 10, RateParams("tanh"))
    model = Network([layer, Dense(10, 2)])
    _trained_decor(model, torch.rand(1, 64, 8) @ torch.randn(8, 8))
    dec = layer.decorrelation
    x = torch.rand(rows, 8)
    z = layer.drive(x)
    assert torch.allclose(z, F.linear(dec(x), layer.weight, layer.bias), atol=1e-5)
    post = torch.randn_like(z)
    layer.weight.grad = None
    (z * post).sum().backward()
    assert torch.allclose(layer.weight_gradient(post, x), layer.weight.grad, atol=1e-4)
    assert torch.allclose(layer.weight.grad, post.T @ dec(x), atol=1e-4)  # Σ post ⊗ x̃


def test_step_update_for_online_rules_and_metrics():
    torch.manual_seed(0)
    model = Network([Dense(6, 8, RateParams("tanh"), recurrent=True), Dense(8, 2)])
    add_decorrelation(model, lr=1e-2, layers=[-1])
    assert model.layers[0].decorrelation is None and model.layers[1].decorrelation is not None
    x = torch.randn(5, 4, 6)
    state = model.init_state(4)
    for t in range(5):
        _, state, taps = model.step(x[t], state)
        update_decorrelation_step(model, taps)
    assert model.layers[1].decorrelation.updates == 5
    metrics = decorrelation_metrics(model)
    assert set(metrics) == {"decor_loss_1"} and metrics["decor_loss_1"] > 0
    assert decorrelation_metrics(model) == {}  # reset after reading


def test_config_errors():
    model = Network([Dense(4, 3)])
    with pytest.raises(ConfigError, match="unknown decor keys"):
        add_decorrelation(model, learning_rate=1e-3)
    with pytest.raises(ConfigError, match="kappa"):
        add_decorrelation(model, kappa=2.0)
    with pytest.raises(ConfigError, match="decor.layers"):
        add_decorrelation(model, layers=[5])


def _train_digits(decor: bool, epochs: int, seed: int = 0) -> list[dict]:
    from neurolearn.runs import build_run
    from neurolearn.training import Trainer

    sets = ["model.layers.0.size=64", "model.layers.1.size=64"]
    if decor:
        sets += ["decor.enabled=true", "decor.lr=1e-2", "decor.kappa=0.5"]
    cfg = resolve_config(model="mlp-digits", rule="bp", overrides=sets, epochs=epochs, batch_size=64, lr=0.05,
                         optimizer="sgd", seed=seed)
    run = build_run(cfg)
    return Trainer(run, None, progress=False, log=lambda m: None).fit()["epochs"]


def test_dbp_trains_faster_than_bp_with_sgd_same_seed():
    """Same seed, same SGD, five seeds: DBP's final training loss is below BP's at every seed
    (measured ratios 0.73, 0.80, 0.81, 0.79, 0.79 at seeds 0-4) and on average by more than 15 %,
    and it is as accurate. One seed with a bar tuned to it (0.73 vs 0.75) was not a test."""
    ratios = []
    for seed in range(5):
        bp = _train_digits(False, 6, seed)
        dbp = _train_digits(True, 6, seed)
        assert "decor_loss_0" in dbp[-1] and "decor_loss_0" not in bp[-1]
        assert dbp[-1]["decor_loss_0"] < dbp[0]["decor_loss_0"]
        ratios.append(dbp[-1]["train_loss"] / bp[-1]["train_loss"])
        assert dbp[-1]["test_accuracy"] >= bp[-1]["test_accuracy"] - 0.01, seed
    assert max(ratios) < 0.9 and sum(ratios) / len(ratios) < 0.85, ratios


def test_decor_table_from_model_file_and_cli_keys():
    cfg = resolve_config(model="mlp-digits", overrides=["decor.enabled=true", "decor.kappa=0.25"])
    from neurolearn.runs import apply_decorrelation

    model = build_network(load_model_file("mlp-digits"), (64,))
    apply_decorrelation(model, cfg["decor"])
    assert all(l.decorrelation is not None and l.decorrelation.kappa == 0.25 for l in model.layers)


def _train_digits_anp(decor: bool, epochs: int) -> list[dict]:
    from neurolearn.runs import build_run
    from neurolearn.training import Trainer

    sets = ["model.layers.0.size=64", "model.layers.1.size=64", "rule.params.draws=1"]  # one draw: the gap is clearest
    if decor:
        sets += ["decor.enabled=true", "decor.lr=1e-3", "decor.kappa=0.0"]
    cfg = resolve_config(model="mlp-digits", rule="anp", overrides=sets, epochs=epochs, seed=0)
    return Trainer(build_run(cfg), None, progress=False, log=lambda m: None).fit()["epochs"]


def test_danp_beats_anp_same_seed():
    anp = _train_digits_anp(False, 8)
    danp = _train_digits_anp(True, 8)
    assert "decor_loss_0" in danp[-1]
    assert danp[-1]["train_loss"] < anp[-1]["train_loss"]
    # measured 0.636 vs 0.375 after 8 epochs
    assert danp[-1]["test_accuracy"] >= anp[-1]["test_accuracy"] + 0.1, (anp[-1], danp[-1])


def test_whitening_leaves_near_silent_inputs_alone():
    # one input is zero except in 0.1 % of the samples: whitening it would scale its row of R without bound
    x = correlated_gaussian(4000, 6)
    x[:, 0] = 0.0
    x[::1000, 0] = 0.05
    dec = Decorrelation(6, lr=5e-2, kappa=1.0, centring=False)
    run_rule(dec, x, 1500)
    assert float(dec.R[0].abs().max()) < 2.0
    assert torch.allclose(dec(x)[:, 1:].pow(2).mean(0), torch.ones(5), atol=0.2)
