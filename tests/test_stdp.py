"""STDP and reward-modulated STDP: traces against explicit pair sums, weight dependence, pairing,
triplet, bounds, torch vs Brian2, R-STDP signs and the DA-STDP analytic check, frozen weights."""

from __future__ import annotations

import math

import pytest
import torch

from neurolearn import Dense, LIFParams, Network
from neurolearn.errors import ConfigError
from neurolearn.objectives import Objective
from neurolearn.rules import make_rule
from neurolearn.rules.rstdp import RSTDP, RSTDPParams
from neurolearn.rules.stdp import PAIRINGS, STDP, STDPParams

pytestmark = pytest.mark.usefixtures("one_thread")

DT = 1e-3


def train_of(steps: list[int], T: int) -> torch.Tensor:
    s = torch.zeros(T, dtype=torch.float64)
    s[steps] = 1.0
    return s


def trace_total(p: STDPParams, pre: torch.Tensor, post: torch.Tensor) -> float:
    """Σ_t (LTP − LTD) of one synapse driven through ``STDPParams.step`` (no bounds, no weight dependence)."""
    tr = p.init_traces((1,), (1,), dtype=torch.float64)
    total = 0.0
    for t in range(len(pre)):
        pair, tr = p.step(pre[t:t + 1], post[t:t + 1], tr, DT)
        total += float(pair.ltp_post * pair.ltp_pre - pair.ltd_post * pair.ltd_pre)
    return total


def pair_sum(pre: list[int], post: list[int], a_plus: float, a_minus: float, dp: float, dm: float,
             pairing: str) -> float:
    """Explicit pair sums over spike steps (Δ ≥ 1 step; all earlier partners or only the nearest)."""
    total = 0.0
    for tp in post:
        lags = [tp - s for s in pre if s < tp]
        if lags:
            total += a_plus * (sum(dp ** d for d in lags) if pairing == "all" else dp ** min(lags))
    for tq in pre:
        lags = [tq - s for s in post if s < tq]
        if lags:
            total -= a_minus * (sum(dm ** d for d in lags) if pairing == "all" else dm ** min(lags))
    return total


@pytest.mark.parametrize("pairing", ["all", "nearest"])
def test_traces_match_hand_computed_pair_sums(pairing):
    pre_steps, post_steps = [2, 5, 9, 30, 31, 47], [7, 10, 11, 31, 40, 60]  # 31: a same-step pair (does not pair)
    T = 70
    p = STDPParams(a_plus=0.3, a_minus=0.2, tau_plus=15e-3, tau_minus=25e-3, pairing=pairing)
    got = trace_total(p, train_of(pre_steps, T), train_of(post_steps, T))
    want = pair_sum(pre_steps, post_steps, 0.3, 0.2, 1 - DT / 15e-3, 1 - DT / 25e-3, pairing)
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_nearest_and_all_to_all_differ_as_expected():
    # two pre spikes 1 and 3 steps before one post spike
    pre, post = train_of([4, 6], 10), train_of([7], 10)
    d = 1 - DT / 20e-3
    all_ = trace_total(STDPParams(a_plus=1.0, a_minus=0.0, pairing="all"), pre, post)
    near = trace_total(STDPParams(a_plus=1.0, a_minus=0.0, pairing="nearest"), pre, post)
    assert all_ == pytest.approx(d + d ** 3, rel=1e-12)
    assert near == pytest.approx(d, rel=1e-12)


def test_same_step_spikes_do_not_pair_unless_asked():
    s = train_of([3], 6)
    assert trace_total(STDPParams(a_plus=1.0, a_minus=1.0), s, s) == 0.0
    # same_step="ltp": a same-step pair is pre-before-post with Δ = 0 (A+), the rest unchanged
    for pairing in PAIRINGS:
        p = STDPParams(a_plus=0.3, a_minus=0.2, pairing=pairing, same_step="ltp")
        assert trace_total(p, s, s) == pytest.approx(0.3)
        pre, post = train_of([2, 5, 9], 12), train_of([5, 7], 12)
        ref = STDPParams(a_plus=0.3, a_minus=0.2, pairing=pairing)
        # the post at 5 pairs with the pre at 5 (Δ = 0); nearest: instead of the pre at 2 (Δ = 3)
        extra = 0.3 if pairing == "all" else 0.3 * (1 - (1 - DT / 20e-3) ** 3)
        assert trace_total(p, pre, post) == pytest.approx(trace_total(ref, pre, post) + extra)


@pytest.mark.parametrize("same_step", ["none", "ltp"])
def test_window_integrals_are_the_summed_single_pair_changes(same_step):
    """``window_integrals`` = dt × the sum over lags of one pre/post pair's change (the Song balance)."""
    p = STDPParams(a_plus=0.3, a_minus=0.2, tau_plus=10e-3, tau_minus=15e-3, same_step=same_step)
    T, lags = 170, torch.arange(155)  # the tail beyond 155 lags: 0.933^155 < 3e-5
    first, second = torch.zeros(T, 155, dtype=torch.float64), torch.zeros(T, 155, dtype=torch.float64)
    first[10] = 1.0
    second[10 + lags, lags] = 1.0  # synapse k: a second spike k steps after the first
    ltp = ltd = 0.0
    for pre, post, kind in ((first, second, "ltp"), (second, first, "ltd")):
        tr = p.init_traces((155,), (155,), dtype=torch.float64)
        for t in range(T):
            pair, tr = p.step(pre[t], post[t], tr, DT)
            if kind == "ltp":
                ltp += float((pair.ltp_post * pair.ltp_pre).sum())
            else:
                ltd += float((pair.ltd_post * pair.ltd_pre).sum())
    i_plus, i_minus = p.window_integrals(DT)
    assert i_plus == pytest.approx(DT * ltp, rel=1e-4) and i_minus == pytest.approx(DT * ltd, rel=1e-4)
    assert i_plus == pytest.approx(0.3 * (10e-3 - (DT if same_step == "none" else 0.0)), rel=1e-12)
    assert i_minus == pytest.approx(0.2 * (15e-3 - DT), rel=1e-12)


def test_triplet_ltp_uses_the_second_post_trace_before_the_spike():
    # pre at 0; post at 2 and 5. LTP at 5 = r1(5)·(A2+ + A3+·o2(5)) with o2(5) = dy^3 (from the post at 2)
    p = STDPParams(a_plus=0.01, a_minus=0.0, a3_plus=0.5, a3_minus=0.0, tau_plus=20e-3, tau_y=40e-3)
    d1, dy = 1 - DT / 20e-3, 1 - DT / 40e-3
    got = trace_total(p, train_of([0], 8), train_of([2, 5], 8))
    want = 0.01 * d1 ** 2 + d1 ** 5 * (0.01 + 0.5 * dy ** 3)
    assert got == pytest.approx(want, rel=1e-12)
    # and LTD at a pre spike scales with the second pre trace before it
    q = STDPParams(a_plus=0.0, a_minus=0.02, a3_minus=0.3, tau_minus=20e-3, tau_x=50e-3)
    dm, dx = 1 - DT / 20e-3, 1 - DT / 50e-3
    got = trace_total(q, train_of([1, 6], 8), train_of([4], 8))
    assert got == pytest.approx(-dm ** 2 * (0.02 + 0.3 * dx ** 5), rel=1e-12)


def test_additive_vs_multiplicative_weight_dependence():
    w = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    ltp = torch.full_like(w, 0.1)
    zero = torch.zeros_like(w)
    add = STDPParams(w_max=1.0)
    mult = STDPParams(w_max=1.0, mu_plus=1.0, mu_minus=1.0)
    assert torch.allclose(add.apply(w, ltp, zero), torch.tensor([0.1, 0.35, 1.0], dtype=torch.float64))
    assert torch.allclose(mult.apply(w, ltp, zero), torch.tensor([0.1, 0.325, 1.0], dtype=torch.float64))
    assert torch.allclose(add.apply(w, zero, ltp), torch.tensor([0.0, 0.15, 0.9], dtype=torch.float64))
    assert torch.allclose(mult.apply(w, zero, ltp), torch.tensor([0.0, 0.225, 0.9], dtype=torch.float64))
    # LTP is bounded before LTD acts: 0.9 + 0.3 -> 1.0 (the bound), then - 0.1 -> 0.9
    one = torch.tensor([0.9], dtype=torch.float64)
    assert float(add.apply(one, torch.tensor([0.3]), torch.tensor([0.1]))) == pytest.approx(0.9)


def tiny_net(n_in=6, n_out=3, seed=0, layers=1) -> Network:
    torch.manual_seed(seed)
    lif = LIFParams(tau_mem=10e-3, dt=DT)
    mods = [Dense(n_in, n_out, lif, bias=False)]
    if layers == 2:
        mods.append(Dense(n_out, 2, lif, bias=False))
    net = Network(mods, dt=DT, decode="sum").double()
    with torch.no_grad():
        for m in mods:
            m.weight.uniform_(0.2, 0.6)
    return net


def poisson(T, n, rate=0.1, seed=1, batch=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, batch, n, generator=g, dtype=torch.float64) < rate).double()


def test_grad_is_the_bounded_trial_change_and_bounds_hold_under_sgd():
    net = tiny_net()
    x = poisson(100, 6, batch=2)
    rule = STDP(a_plus=0.5, a_minus=0.55, w_max=0.7)
    obj = Objective("classification")
    y = torch.zeros(2, dtype=torch.long)
    w0 = net.layers[0].weight.detach().clone()
    out, sums = rule.correlations(net, x)
    ltp, ltd = sums[0]
    expect = rule.params.apply(w0, ltp, ltd)
    for lr in (1.0, 0.5):
        with torch.no_grad():
            net.layers[0].weight.copy_(w0)
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        rule.train_step(net, x, y, obj, opt)
        w = net.layers[0].weight.detach()
        assert torch.allclose(w, w0 + lr * (expect - w0))
        assert float(w.min()) >= 0.0 and float(w.max()) <= 0.7 + 1e-12
    assert (expect == 0.7).any() or (expect == 0.0).any()  # the amplitudes are large enough to hit a bound
    with pytest.raises(ConfigError, match="plain SGD"):
        rule.train_step(net, x, y, obj, torch.optim.Adam(net.parameters(), lr=1e-3))


def test_online_bounds_and_frozen_weights():
    net = tiny_net(layers=2)
    net.layers[1].weight.requires_grad_(False)
    frozen = net.layers[1].weight.detach().clone()
    rule = STDP(a_plus=0.3, a_minus=0.3, w_max=0.5)
    rule.run_online(net, poisson(300, 6, rate=0.2))
    w = net.layers[0].weight.detach()
    assert float(w.min()) >= 0.0 and float(w.max()) <= 0.5
    assert not torch.equal(w, torch.full_like(w, 0.5))
    assert torch.equal(net.layers[1].weight, frozen)
    # the .grad path never writes a grad for the frozen weight
    for p in net.parameters():
        p.grad = None
    rule.estimate_gradients(net, poisson(50, 6), torch.zeros(1, dtype=torch.long), Objective("classification"))
    assert net.layers[0].weight.grad is not None and net.layers[1].weight.grad is None


def test_rule_config_errors():
    with pytest.raises(ConfigError, match="a_plus"):
        make_rule("stdp", a_plsu=0.1)
    with pytest.raises(ConfigError, match="nearest"):
        make_rule("stdp", pairing="nearst")
    with pytest.raises(ConfigError, match="form"):
        make_rule("rstdp", form="mstpd")
    with pytest.raises(ConfigError, match="does not spike"):
        STDP(layers=[0]).correlations(Network([Dense(3, 2)], dt=DT), torch.zeros(2, 1, 3))


@pytest.mark.parametrize("kw", [dict(), dict(mu_plus=1.0, mu_minus=1.0), dict(pairing="nearest"),
                                dict(a3_plus=0.05, a3_minus=0.01), dict(same_step="ltp", mu_plus=1.0),
                                dict(same_step="ltp", pairing="nearest")])
def test_torch_and_brian2_agree_on_the_same_spikes(kw):
    pytest.importorskip("brian2")
    from neurolearn.backends.brian2_stdp import run_stdp_brian2

    net = tiny_net(n_in=8, n_out=2, seed=3)
    w0 = net.layers[0].weight.detach().clone()
    x = poisson(300, 8, rate=0.08, seed=4)
    rule = STDP(a_plus=0.02, a_minus=0.021, w_max=0.6, **kw)
    out = rule.run_online(net, x)
    b2 = run_stdp_brian2(net.layers[0].neuron, w0, x[:, 0], rule.params, DT)
    assert out.sum() > 5 and torch.equal(out[:, 0], b2.spikes)
    moved = (net.layers[0].weight - w0).abs().max()
    assert moved > 0.01
    assert torch.allclose(net.layers[0].weight, b2.weight, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------------------------------- R-STDP
def rstdp_run(params: RSTDPParams, pre_steps, post_steps, reward_steps, T, w0=0.5) -> float:
    w = torch.full((1, 1), w0, dtype=torch.float64)
    st = params.init_state((1,), (1,), (1, 1), dtype=torch.float64)
    pre, post = train_of(pre_steps, T), train_of(post_steps, T)
    for t in range(T):
        r = 1.0 if t in reward_steps else 0.0
        w, st = params.step(pre[t:t + 1], post[t:t + 1], r, st, w, DT)
    return float(w[0, 0]) - w0


@pytest.mark.parametrize("form", ["izhikevich", "mstdp", "mstdpet"])
def test_rstdp_sign(form):
    p = RSTDPParams(form=form, a_plus=1.0, a_minus=1.5, tau_c=0.2, lr=1e-2, w_max=1.0)
    reward_at = [10] if form == "mstdp" else [40]  # MSTDP: the reward acts on the pairs of its own step
    assert rstdp_run(p, [5], [10], reward_at, 300) > 0  # pre before post, then reward: potentiation
    assert rstdp_run(p, [10], [5], reward_at, 300) < 0  # post before pre, then reward: depression
    assert rstdp_run(p, [5], [10], [], 300) == 0.0  # no reward (no tonic dopamine): no change


def test_da_stdp_matches_the_analytic_change():
    tau_c, tau_d, tau_p, D, lag, t_pre = 0.5, 0.1, 20e-3, 1.0, 8, 10
    t_post, t_d = t_pre + lag, t_pre + lag + 150
    p = RSTDPParams(form="izhikevich", a_plus=1.0, a_minus=1.5, tau_plus=tau_p, tau_c=tau_c, tau_d=tau_d,
                    lr=1e-4, w_max=10.0)
    got = rstdp_run(p, [t_pre], [t_post], [t_d], 6000)
    c = math.exp(-lag * DT / tau_p)
    want = 1e-4 * c * D * math.exp(-(t_d - t_post) * DT / tau_c) * tau_c * tau_d / (tau_c + tau_d) / DT
    assert got == pytest.approx(want, rel=0.02)


def test_rstdp_rule_trial_reward_and_frozen_weights():
    net = tiny_net(layers=2)
    net.layers[0].weight.requires_grad_(False)
    rule = RSTDP(form="mstdpet", tau_c=0.05, lr=1e-3, baseline_decay=0.0)
    obj = Objective("classification")
    x = poisson(100, 6, rate=0.3, batch=3)
    out = rule.estimate_gradients(net, x, torch.zeros(3, dtype=torch.long), obj)
    assert net.layers[0].weight.grad is None
    g = net.layers[1].weight.grad
    assert g is not None and g.abs().max() > 0
    # the opposite reward (every answer right vs every answer wrong) flips the change
    right = out.pred.argmax(-1)
    rule.baseline = 0.0
    rule.estimate_gradients(net, x, right, obj)
    g_right = net.layers[1].weight.grad.clone()
    rule.baseline = 0.0
    wrong = (right + 1) % 2
    rule.estimate_gradients(net, x, wrong, obj)
    assert torch.allclose(g_right, -net.layers[1].weight.grad)


def test_rstdp_weights_stay_in_bounds():
    p = RSTDPParams(form="izhikevich", a_plus=1.0, a_minus=1.5, tau_c=0.2, lr=1.0, w_max=1.0)
    assert rstdp_run(p, [5], [10], [40], 100, w0=0.5) == pytest.approx(0.5)  # capped at w_max
    assert rstdp_run(p, [10], [5], [40], 100, w0=0.5) == pytest.approx(-0.5)  # floored at 0


def test_run_online_takes_byte_spike_trains():
    """Spike trains as uint8 (1 byte a spike) run exactly as the same trains as floats."""
    x = torch.rand(120, 1, 30, generator=torch.Generator().manual_seed(0)) < 0.08
    results = []
    for spikes in (x.double(), x.to(torch.uint8)):
        layer = Dense(30, 2, LIFParams(tau_mem=10e-3), bias=False).double()
        with torch.no_grad():
            layer.weight.fill_(0.3)
        out = STDP(a_plus=0.02, a_minus=0.021, w_max=0.6).run_online(Network([layer]).double(), spikes)
        results.append((out, layer.weight.detach().clone()))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert results[0][0].sum() > 0
