"""Correctness of the fast paths (issue 19), not their timings: the in-place LIF step equals the
pure one bit for bit, and the streamed ANP/NP sequence step (preallocated buffers, one product per
sequence for noise frozen over the trial) gives the gradients of the plain formulas."""

from __future__ import annotations

import math

import pytest
import torch

from neurolearn.build import make_optimizer
from neurolearn.layers import Dense
from neurolearn.learning.noise import noisy_minus_clean, sum_draws
from neurolearn.network import Network, stack_steps
from neurolearn.neurons import LIFParams, LIParams
from neurolearn.objectives import Objective
from neurolearn.rules import make_rule

pytestmark = pytest.mark.usefixtures("one_thread")
CLS = Objective("classification")


@pytest.mark.parametrize("params", [dict(reset="value"), dict(reset="subtract"),
                                    dict(reset="value", v_reset=-0.3, v_leak=0.2, threshold=0.7)])
def test_lif_step_in_place_equals_the_pure_step_bit_for_bit(params):
    lif = LIFParams(tau_mem=10e-3, **params)
    g = torch.Generator().manual_seed(0)
    pure = lif.init_state((64, 40))
    fast = lif.init_state((64, 40))
    with torch.no_grad():
        for _ in range(12):
            x = torch.randn(64, 40, generator=g) * 0.6
            s1, pure = lif.step(x, pure)
            x_before = x.clone()
            s2, fast = lif.step_(x, fast)
            assert torch.equal(x, x_before)  # the input is left as it is
            assert torch.equal(s1, s2) and torch.equal(pure.v, fast.v) and torch.equal(pure.mem, fast.mem)
    assert s1.sum() > 0  # spikes happened


def snn() -> Network:
    torch.manual_seed(0)
    return Network([Dense(6, 16, LIFParams(tau_mem=10e-3, reset="value"), init="kaiming_uniform", init_gain=2.0),
                    Dense(16, 3, LIParams(tau=10e-3), init="kaiming_uniform")], decode="mean")


def data(steps: int = 6, batch: int = 8):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(steps, batch, 6, generator=g) > 0.5).float()
    return x, torch.randint(0, 3, (batch,), generator=g)


def plain_estimate(rule, model: Network, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The estimate written out: all copies run through Network.step (pure steps), every tap kept
    over time, then the rule's per-step formula (node_signal) and one product per step."""
    steps, batch = x.shape[:2]
    copies = 1 + rule.draws
    nl = len(model.layers)
    with torch.no_grad():
        state = model.init_state(copies * batch)
        noise, outs, taps_t = None, [], []
        for t in range(steps):
            noise = rule.step_noise(model, batch, x, noise)
            out, state, taps = model.step(torch.cat([x[t]] * copies), state, noise)
            outs.append(out)
            taps_t.append((taps, noise))
        loss = CLS.loss(model.decode_output(stack_steps(outs)), torch.cat([y] * copies))
        dloss = noisy_minus_clean(loss, batch)
        eps = [stack_steps([rule.noise_diff(n[k], batch) for _, n in taps_t]) for k in range(nl)]
        diffs = [stack_steps([rule.post_difference(tp[k], rule.noise_diff(n[k], batch), batch, k, nl)
                              for tp, n in taps_t]) for k in range(nl)]
        g = rule.node_signal(dloss / dloss.shape[0], diffs, eps, steps, rule.noise_span(steps, model.dt))
        grads = {}
        for k, layer in enumerate(model.layers):
            gk = sum_draws(g[k], batch, dim=1)
            xs = stack_steps([tp[k].input[:batch] for tp, _ in taps_t])
            grads[f"{k}.weight"] = torch.einsum("tbo,tbi->oi", gk, xs)
            grads[f"{k}.bias"] = gk.sum((0, 1))
    return grads


@pytest.mark.parametrize("name,params", [
    ("anp", dict(sigma=[0.1, 0.0], noise_tau=math.inf, activity=["pre", "mem"], draws=3)),  # snn-mnist's
    ("anp", dict(sigma=0.1, noise_tau=math.inf, draws=2, norm="layer")),
    ("anp", dict(sigma=0.1, activity="mem", draws=2)),  # white noise: every post term kept over time
    ("np", dict(sigma=[0.1, 0.05], noise_tau=math.inf, draws=2)),
    ("np", dict(sigma=0.1, noise_tau=4e-3)),
])
def test_streamed_sequence_step_gives_the_plain_gradients(name, params):
    x, y = data()
    fast_net, plain_net = snn(), snn()
    fast, plain = make_rule(name, **params), make_rule(name, **params)
    fast.setup(fast_net, CLS, torch.Generator().manual_seed(3))
    plain.setup(plain_net, CLS, torch.Generator().manual_seed(3))
    fast.estimate_gradients(fast_net, x, y, CLS)
    want = plain_estimate(plain, plain_net, x, y)
    got = {n: p.grad for n, p in fast_net.layers.named_parameters() if p.grad is not None}
    assert sorted(got) == sorted(want)
    for n in want:
        assert want[n].abs().max() > 0, n
        torch.testing.assert_close(got[n], want[n], rtol=1e-4, atol=1e-6 * float(want[n].abs().max()))


def test_streamed_step_keeps_no_record_nobody_reads():
    x, y = data()
    net = snn()
    rule = make_rule("anp", sigma=[0.1, 0.0], noise_tau=math.inf, activity=["pre", "mem"], draws=2)
    rule.setup(net, CLS, torch.Generator().manual_seed(0))
    out = rule.estimate_gradients(net, x, y, CLS)
    assert out.record.layers == []  # no decorrelation: the inputs are summed, not kept
    assert out.record.output.shape == (x.shape[0], x.shape[1], 3)


def test_adam_is_built_with_a_multi_tensor_or_fused_implementation():
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = make_optimizer(p, {"optimizer": "adam", "lr": 1e-3})
    assert opt.defaults.get("foreach") or opt.defaults.get("fused")


def test_rademacher_noise_from_packed_bits_is_plus_minus_sigma_and_balanced():
    from neurolearn.learning.noise import rademacher

    g = torch.Generator().manual_seed(0)
    e = rademacher((300, 211), 0.25, g, torch.zeros(()))
    assert e.shape == (300, 211) and set(e.unique().tolist()) == {-0.25, 0.25}
    assert abs(float(e.mean())) < 0.25 * 4 / math.sqrt(e.numel())
    a = (e.flatten()[:-1] > 0).float()  # neighbouring entries (bits of one word) are independent
    b = (e.flatten()[1:] > 0).float()
    assert abs(float((a * b).mean()) - 0.25) < 0.01
    per_bit = (e.flatten()[:63 * 1000].view(1000, 63) > 0).float().mean(0)  # each bit position of a word
    assert float((per_bit - 0.5).abs().max()) < 0.07


def test_rademacher_written_in_place_is_the_same_draw():
    from neurolearn.learning.noise import rademacher

    want = rademacher((40, 70), 0.3, torch.Generator().manual_seed(5), torch.zeros(()))
    buf = torch.full((80, 70), 7.0)
    got = rademacher((40, 70), 0.3, torch.Generator().manual_seed(5), torch.zeros(()), out=buf[40:])
    assert got.data_ptr() == buf[40:].data_ptr() and torch.equal(buf[40:], want)
    assert torch.equal(buf[:40], torch.full((40, 70), 7.0))


@pytest.mark.parametrize("passes", ["clean", "noisy-noisy"])
def test_pair_noise_bernoulli_is_drawn_in_the_order_draw_would(passes):
    rule = make_rule("anp", noise="bernoulli", passes=passes, draws=2, sigma=0.2)
    rule.setup(snn(), CLS, torch.Generator().manual_seed(4))
    got = rule.pair_noise((5, 7), torch.zeros(()))
    g = torch.Generator().manual_seed(4)
    from neurolearn.learning.noise import rademacher
    noisy = rademacher((10, 7), 0.2, g, torch.zeros(()))
    first = rademacher((5, 7), 0.2, g, torch.zeros(())) if passes == "noisy-noisy" else torch.zeros(5, 7)
    assert torch.equal(got, torch.cat([first, noisy]))


@pytest.mark.parametrize("name,params", [
    ("drtp", dict(spike_derivative="window", margin=1.0)),  # snn-mnist's
    ("drtp", dict(spike_derivative="window")),
    ("drtp", dict(spike_derivative="lif_rate", target_steps="last")),
    ("tpsgd", dict(spike_derivative="window", loss="l2")),
    ("tpsgd", dict(spike_derivative="none", loss="ce")),
])
def test_streamed_target_projection_step_gives_the_general_paths_gradients(name, params, monkeypatch):
    """DRTP/tpSGD's streamed step (buffers, per-step addmm_, label projected once) against the
    general one (LayerTracer, add_update: the formulas written out per step)."""
    import neurolearn.rules.target_projection as tp

def sparse_data(steps: int = 7, batch: int = 8, values: str = "spikes"):
    """Input at ~15 % density (the event-driven drive) with inputs 0 and 3 silent over the whole
    sequence (the first layer's update over the active inputs only); ``values="graded"``: the
    non-zeros are ±0.2..2 instead of 1; a sample without any input at step 0 and at the last step."""
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(steps, batch, 6, generator=g) < 0.22).float()
    if values == "graded":
        x = x * (torch.rand(x.shape, generator=g) * 1.8 + 0.2) * torch.sign(torch.randn(x.shape, generator=g))
    x[:, :, [0, 3]] = 0
    x[0, -1] = 0  # an empty bag (last row) ...
    x[-1, 2] = 0  # ... and one in the middle
    return x, torch.randint(0, 3, (batch,), generator=g)


TP_CASES = [
    ("drtp", dict(spike_derivative="window", margin=1.0), "dense"),  # snn-mnist's
    ("drtp", dict(spike_derivative="window", margin=1.0), "spikes"),
    ("drtp", dict(spike_derivative="window"), "dense"),
    ("drtp", dict(spike_derivative="window"), "graded"),
    ("drtp", dict(spike_derivative="lif_rate", target_steps="last"), "dense"),
    ("drtp", dict(spike_derivative="lif_rate"), "spikes"),
    ("tpsgd", dict(spike_derivative="window", loss="l2"), "dense"),
    ("tpsgd", dict(spike_derivative="window", loss="l2"), "spikes"),
    ("tpsgd", dict(spike_derivative="none", loss="ce"), "dense"),
    ("tpsgd", dict(spike_derivative="none", loss="ce"), "graded"),
]


@pytest.mark.parametrize("name,params,inputs", TP_CASES)
def test_streamed_target_projection_step_gives_the_general_paths_gradients(name, params, inputs, monkeypatch):
    """DRTP/tpSGD's streamed step (buffers, per-step addmm_, label projected once; for sparse input
    the event-driven first-layer drive and the update over the active inputs) against the general
    one (LayerTracer, add_update: the formulas written out per step)."""
    import neurolearn.rules.target_projection as tp
    from neurolearn.learning.workspace import active_inputs, sparse_input

    x, y = data(steps=7) if inputs == "dense" else sparse_data(values=inputs)
    assert sparse_input(x) == (inputs != "dense")  # the path under test is the one taken
    assert (active_inputs(x) is not None) == (inputs != "dense")
    grads = {}
    for fast in (True, False):
        net = snn()
        for p in net.parameters():  # a grad already there is added to
            p.grad = torch.full_like(p, 0.01)
        rule = make_rule(name, **params)
        rule.setup(net, CLS, torch.Generator().manual_seed(3))
        calls = []
        monkeypatch.setattr(tp, "streamable", (lambda m, x: calls.append(1) or True) if fast else (lambda m, x: False))
        out = rule.estimate_gradients(net, x, y, CLS)
        assert bool(calls) == fast
        grads[fast] = {n: p.grad.clone() for n, p in net.layers.named_parameters()}
        grads[fast]["loss"] = out.loss
    for n, want in grads[False].items():
        assert (want - 0.01).abs().max() > 0, n
        torch.testing.assert_close(grads[True][n], want, rtol=1e-6, atol=1e-6 * float(want.abs().max()))


def test_streamed_target_projection_is_used_by_default_for_dense_spiking_nets_only():
    from neurolearn.layers import Conv2d
    from neurolearn.learning.workspace import streamable

    x, _ = data()
    assert streamable(snn(), x)
    rec = Network([Dense(6, 5, LIFParams(tau_mem=10e-3), recurrent=True), Dense(5, 3, LIParams(tau=10e-3))])
    assert not streamable(rec, x)
    conv = Network([Conv2d((1, 4, 4), 2, 3, neuron=LIFParams(tau_mem=10e-3)), Dense(2 * 2 * 2, 3)])
    assert not streamable(conv, torch.zeros(2, 1, 1, 4, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # out= products would keep fp32: the general path
        assert not streamable(snn(), x)
    from neurolearn.learning.grads import exact_sums
    with exact_sums():  # the float64 batch sums of a data-parallel run are formed by the general path
        assert not streamable(snn(), x)


@pytest.mark.parametrize("rows,out", [(1100, 3), (40, 3), (40, 64)])
def test_dense_drive_equals_the_layers_drive(rows, out):
    from neurolearn.learning.workspace import dense_drive

    torch.manual_seed(0)
    layer = Dense(30, out, LIFParams(tau_mem=10e-3))
    h = (torch.rand(rows, 30) > 0.7).float()
    with torch.no_grad():
        want = layer.drive(h)
        torch.testing.assert_close(dense_drive(layer, h), want, rtol=1e-6, atol=1e-6)
        buf = torch.empty(rows, out)
        assert dense_drive(layer, h, out=buf) is buf
        torch.testing.assert_close(buf, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("params", [dict(reset="value"), dict(reset="subtract"),
                                    dict(reset="value", v_reset=-0.3, v_leak=0.2, threshold=0.7)])
def test_lif_step_with_gained_input_equals_the_pure_step(params):
    """step_gained_ takes g z as a broadcast drive plus a per-row offset (frozen noise times g): in
    float64 its spikes are the pure step's and its membrane agrees to rounding."""
    lif = LIFParams(tau_mem=10e-3, **params)
    g = torch.Generator().manual_seed(0)
    gain = lif.input_gain()
    noise = torch.randn(3, 8, 40, generator=g, dtype=torch.float64) * 0.3
    pure = lif.init_state((3, 8, 40), dtype=torch.float64)
    fast = lif.init_state((3, 8, 40), dtype=torch.float64)
    fast = type(fast)(fast.v.clone(), None, None)
    spikes = 0.0
    with torch.no_grad():
        for _ in range(12):
            drive = torch.randn(8, 40, generator=g, dtype=torch.float64) * 0.6
            s1, pure = lif.step(drive + noise, pure)
            s2, fast = lif.step_gained_(drive * gain, fast, offset=noise * gain)
            assert torch.equal(s1, s2)
            torch.testing.assert_close(fast.v, pure.v, rtol=0, atol=1e-12)
            spikes += float(s1.sum())
    assert spikes > 0
    assert LIFParams(tau_syn=5e-3).input_gain() is None  # the current-based model filters its input first


@pytest.mark.parametrize("block_rows,r", [(8, None), (16, 3.0), (1000, 0.5)])
def test_blocked_sequence_step_gives_the_plain_gradients_in_float64(block_rows, r, monkeypatch):
    """The frozen-noise ANP step of a plain dense spiking net runs its first layer in blocks of rows
    (learning.noise.blocked_pair_step): one copy per block, two (the last block short), or all at
    once give the plain formulas' gradients to float64 rounding, also with an input gain
    ``g = (1 − β) r`` other than 1 (the noise is multiplied by it once, the estimate divides it out)."""
    from neurolearn.learning import noise as noise_mod

    calls = []
    original = noise_mod.blocked_pair_step
    monkeypatch.setattr(noise_mod, "BLOCK_ROWS", block_rows)
    monkeypatch.setattr("neurolearn.rules.perturbation.blocked_pair_step",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    x, y = data()
    x = x * (torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) < 0.3)  # ~15 % events: event_drive
    x = x.double()
    assert 0 < x.mean() < 0.25

    def net() -> Network:
        torch.manual_seed(0)
        return Network([Dense(6, 16, LIFParams(tau_mem=10e-3, reset="value", r=r), init="kaiming_uniform",
                              init_gain=2.0 if r is None else 2.0 / ((1 - LIFParams(tau_mem=10e-3).beta) * r)),
                        Dense(16, 3, LIParams(tau=10e-3), init="kaiming_uniform")], decode="mean").double()

    fast_net, plain_net = net(), net()
    params = dict(sigma=[0.1, 0.0], noise_tau=math.inf, activity=["pre", "mem"], draws=4)
    fast, plain = make_rule("anp", **params), make_rule("anp", **params)
    fast.setup(fast_net, CLS, torch.Generator().manual_seed(3))
    plain.setup(plain_net, CLS, torch.Generator().manual_seed(3))
    fast.estimate_gradients(fast_net, x, y, CLS)
    assert len(calls) == x.shape[0]  # every step went through the blocks
    want = plain_estimate(plain, plain_net, x, y)
    for n, p in fast_net.layers.named_parameters():
        assert want[n].abs().max() > 0, n
        torch.testing.assert_close(p.grad, want[n], rtol=1e-10, atol=1e-12 * float(want[n].abs().max()))


@pytest.mark.parametrize("shape", [(5, 16), (5, 500), (3, 2, 7)])
def test_packed_spikes_give_back_the_spikes(shape):
    from neurolearn.learning.workspace import PackedSpikes

    g = torch.Generator().manual_seed(0)
    spikes = [(torch.rand(shape, generator=g) < 0.3).float() for _ in range(4)]
    packed = PackedSpikes(4, spikes[0])
    for t, s in enumerate(spikes):
        packed.store(t, s)
    assert packed.bits.numel() == 4 * shape[0] * ((math.prod(shape[1:]) + 7) // 8)
    for t, s in enumerate(spikes):
        assert torch.equal(packed[t], s)

def test_event_drive_equals_the_dense_product():
    """Σ over the non-zeros of x_bi W[:, i] (+ b) = x Wᵀ + b, for spikes and graded values, with
    empty rows anywhere (first, middle, last) and a step without any input."""
    from neurolearn.learning.workspace import event_drive

    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(7, 30, generator=g), torch.randn(7, generator=g)
    spikes = (torch.rand(9, 30, generator=g) < 0.15).float()
    spikes[[0, 4, 8]] = 0
    graded = spikes * torch.randn(9, 30, generator=g)
    for x in (spikes, graded, torch.zeros(9, 30)):
        for bias in (b, None):
            want = torch.nn.functional.linear(x, w, bias)
            torch.testing.assert_close(event_drive(x, w.t().contiguous(), bias), want, rtol=1e-6, atol=1e-6)


def test_active_inputs_and_sparse_input_decide_from_the_whole_sequence_and_the_first_step():
    from neurolearn.learning.workspace import EVENT_DENSITY, active_inputs, sparse_input

    x = torch.zeros(4, 3, 20)
    x[2, 1, 5] = 1.0
    x[3, 0, 7] = -2.0  # negative values are active (a max over the rows would miss them)
    x[0, 2, 11] = float("nan")  # so is NaN
    assert active_inputs(x).tolist() == [5, 7, 11]
    assert active_inputs(torch.ones(2, 3, 20)) is None  # nothing silent: the full product
    dense = torch.ones(2, 3, 20)
    assert not sparse_input(dense)
    dense[0].view(-1)[int(EVENT_DENSITY * 60):] = 0
    assert sparse_input(dense)
    assert not sparse_input(torch.zeros(2, 3, 20, dtype=torch.int64))


@pytest.mark.parametrize("kind", ["window", "lif_rate", "none"])
def test_local_derivative_into_a_buffer_equals_the_allocating_one_bit_for_bit(kind):
    lif = LIFParams(tau_mem=10e-3, v_leak=0.1, r=1.3)
    g = torch.Generator().manual_seed(0)
    state = lif.init_state((16, 40))
    free_a = free_b = None
    out = torch.empty(16, 40)
    with torch.no_grad():
        for _ in range(6):
            z = torch.randn(16, 40, generator=g)
            _, state = lif.step(z, state)
            psi_a, free_a = lif.local_derivative(z, state, kind, 0.4, 0.2, free_a)
            psi_b, free_b = lif.local_derivative_(z, state, kind, 0.4, 0.2, free_b, out=out)
            assert psi_b is out and torch.equal(psi_a, psi_b)
            assert (free_a is None) == (free_b is None) and (free_a is None or torch.equal(free_a, free_b))
    assert 0 < float(psi_a.mean()) < 1 or kind == "none"


def test_dense_drive_rows_do_not_depend_on_the_row_count_under_exact_sums():
    """A data-parallel shard holds fewer rows than the whole batch: under exact_sums each row of the
    drive must be what one process computes for it, whatever the number of rows."""
    from neurolearn.learning.grads import exact_sums
    from neurolearn.learning.workspace import MANY, dense_drive

    torch.manual_seed(0)
    layer = Dense(500, 10)
    x = (torch.rand(MANY + 64, 500) < 0.1).float()
    with exact_sums():
        whole = dense_drive(layer, x)
        shard = dense_drive(layer, x[:32])
    assert torch.equal(whole[:32], shard)
