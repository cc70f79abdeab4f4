"""DRTP, tpSGD and DFA: locality, exactness against backprop, and learning small tasks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurolearn.errors import ConfigError
from neurolearn.layers import Conv2d, Dense
from neurolearn.network import Network
from neurolearn.neurons import LIFParams, LIParams, RateParams
from neurolearn.objectives import Objective
from neurolearn.rules import RULES, make_rule
from neurolearn.rules.target_projection import fixed_projection, project

pytestmark = pytest.mark.usefixtures("one_thread")

CLS = Objective("classification")


def mlp(sizes=(12, 16, 16, 4), act="tanh", seed=0) -> Network:
    torch.manual_seed(seed)
    layers = [Dense(a, b, RateParams(act)) for a, b in zip(sizes[:-2], sizes[1:-1])]
    return Network([*layers, Dense(sizes[-2], sizes[-1])])


def grads(net: Network) -> list[torch.Tensor]:
    return [p.grad.clone() for p in net.parameters()]


def setup(name: str, net: Network, **params):
    rule = make_rule(name, **params)
    rule.setup(net, CLS, torch.Generator().manual_seed(1))
    return rule


def batch(n=32, d=12, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, n, d, generator=g), torch.randint(0, c, (n,), generator=g)


def test_registered_and_local():
    for name in ("dfa", "drtp", "tpsgd"):
        req = RULES[name].requires
        assert req.broadcast_vector and not req.weight_transport and req.local


@pytest.mark.parametrize("name,params", [("drtp", {}), ("drtp", {"margin": 1.0}), ("tpsgd", {"loss": "l2"}),
                                         ("tpsgd", {"loss": "ce"}), ("tpsgd", {"loss": "l1"})])
def test_hidden_update_ignores_other_layers(name, params):
    """A hidden layer's update sees only its input, its activity and the projected label."""
    net = mlp((12, 16, 16, 16, 4))
    rule = setup(name, net, **params)
    x, y = batch()
    net.zero_grad()
    rule.estimate_gradients(net, x, y, CLS)
    before = grads(net)
    with torch.no_grad():  # perturb every layer after the first hidden layer, output included
        for layer in net.layers[1:]:
            layer.weight.add_(torch.randn_like(layer.weight))
    net.zero_grad()
    rule.estimate_gradients(net, x, y, CLS)
    after = grads(net)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert not torch.allclose(before[-2], after[-2])  # the readout's true error did change
    # ...where backprop's first-layer gradient changes
    bp = make_rule("bp")
    net2 = mlp((12, 16, 16, 16, 4))
    net2.zero_grad()
    bp.estimate_gradients(net2, x, y, CLS)
    g0 = net2.layers[0].weight.grad.clone()
    with torch.no_grad():
        net2.layers[2].weight.add_(torch.randn_like(net2.layers[2].weight))
    net2.zero_grad()
    bp.estimate_gradients(net2, x, y, CLS)
    assert not torch.allclose(g0, net2.layers[0].weight.grad)


def test_drtp_matches_its_formula():
    """Layer 2's update is +(y* B_2) ⊙ f'(z_2) ⊗ h_1 (Frenkel's sign), from its own taps only."""
    net = mlp()
    rule = setup("drtp", net)
    x, y = batch()
    net.zero_grad()
    rule.estimate_gradients(net, x, y, CLS)
    rec = net.run(x)
    lr = rec.layers[1]
    t = project(F.one_hot(y, 4).float(), rule.matrices[1])
    delta = t * (1 - torch.tanh(lr.pre[0]) ** 2)
    expected = delta.T @ lr.input[0] / x.shape[1]
    torch.testing.assert_close(net.layers[1].weight.grad, expected)


def test_tpsgd_linear_loss_is_drtp_and_callable_loss_is_l2():
    net = mlp()
    x, y = batch()
    out = {}
    for key, name, params in [("drtp", "drtp", {}), ("lin", "tpsgd", {"loss": "linear"}),
                              ("l2", "tpsgd", {"loss": "l2"}),
                              ("fn", "tpsgd", {"loss": lambda h, t: 0.5 * ((h - t) ** 2).sum(1)})]:
        rule = setup(name, net, **params)
        net.zero_grad()
        rule.estimate_gradients(net, x, y, CLS)
        out[key] = grads(net)
    for a, b in zip(out["drtp"], out["lin"]):
        torch.testing.assert_close(a, b)
    for a, b in zip(out["l2"], out["fn"]):
        torch.testing.assert_close(a, b)


def test_dfa_with_transposed_weights_equals_backprop():
    net = mlp((12, 16, 4))
    x, y = batch()
    net.zero_grad()
    make_rule("bp").estimate_gradients(net, x, y, CLS)
    g_bp = grads(net)
    rule = setup("dfa", net)
    rule.matrices[0] = net.layers[1].weight.detach().clone()  # B_1 = W_2: [C, n_1]
    net.zero_grad()
    rule.estimate_gradients(net, x, y, CLS)
    for a, b in zip(g_bp, grads(net)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    rule.matrices[0] = fixed_projection(4, (16,), "kaiming_uniform", 1.0, torch.Generator().manual_seed(3))
    net.zero_grad()
    rule.estimate_gradients(net, x, y, CLS)
    assert not torch.allclose(g_bp[0], net.layers[0].weight.grad)


def test_projection_distributions():
    g = torch.Generator().manual_seed(0)
    b = fixed_projection(10, (4, 3, 3), "uniform_positive", 0.5, g)
    assert b.shape == (10, 4, 3, 3) and b.min() >= 0 and b.max() <= 0.5
    assert set(fixed_projection(10, (50,), "sign", 2.0, g).unique().tolist()) == {-2.0, 2.0}
    assert fixed_projection(10, (50,), "kaiming_uniform", 1.0, g).abs().max() <= (6 / 10) ** 0.5
    with pytest.raises(ConfigError):
        fixed_projection(10, (5,), "cauchy", 1.0, g)
    with pytest.raises(ConfigError):
        make_rule("tpsgd", loss="huber")


def _blobs(n, d, c, seed, dim_shape=None):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=torch.Generator().manual_seed(99)) * 1.2
    y = torch.randint(0, c, (n,), generator=g)
    x = centres[y] + torch.randn(n, d, generator=g)
    return (x if dim_shape is None else x.view(n, *dim_shape)), y


def _train(net, rule_name, x, y, xt, yt, steps=120, lr=1e-2, encode=None, **params):
    rule = setup(rule_name, net, **params)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    encode = encode or (lambda v: v.unsqueeze(0))
    g = torch.Generator().manual_seed(5)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (64,), generator=g)
        rule.train_step(net, encode(x[idx]), y[idx], CLS, opt)
    with torch.no_grad():
        return (net.decode_output(net(encode(xt))).argmax(1) == yt).float().mean().item()


def freeze_hidden(net: Network) -> Network:
    """Freeze every layer but the readout: the control in which only the readout learns."""
    for layer in net.layers[:-1]:
        for p in layer.parameters():
            p.requires_grad_(False)
    return net


@pytest.mark.parametrize("name,params", [("dfa", {}), ("drtp", {}), ("drtp", {"margin": 1.0}),
                                         ("tpsgd", {"loss": "l2"}), ("tpsgd", {"loss": "ce"})])
def test_dense_rules_learn(name, params):
    """6-class blobs in 20-d through a 4-unit hidden layer: a random bottleneck loses the classes,
    so the rule must beat the same training with the hidden layer frozen (readout only) by a
    margin. Measured at seeds 0, 10, 20 (full vs readout only): dfa 0.96-0.98 vs 0.61-0.77,
    drtp 0.77-0.93, margin-drtp 0.80-0.89, tpsgd-l2 0.74-0.87, tpsgd-ce 0.78-0.90 (smallest
    margin 0.07); with the hidden updates zeroed the two runs are identical."""
    x, y = _blobs(1200, 20, 6, 0)
    xt, yt = _blobs(600, 20, 6, 1)
    acc = _train(mlp((20, 4, 6), act="tanh", seed=0), name, x, y, xt, yt, **params)
    readout_only = _train(freeze_hidden(mlp((20, 4, 6), act="tanh", seed=0)), name, x, y, xt, yt, **params)
    assert acc > 0.7 and acc > readout_only + 0.05, (acc, readout_only)


def test_conv_tpsgd_learns():
    x, y = _blobs(600, 64, 4, 0, (1, 8, 8))
    xt, yt = _blobs(300, 64, 4, 1, (1, 8, 8))
    torch.manual_seed(0)
    net = Network([Conv2d((1, 8, 8), 4, 3, RateParams("tanh"), pool=2), Dense(36, 4)])
    # the readout learns too: tpSGD's per-position conv targets do not beat a random conv layer
    # with a trained readout on this task (1-2 channels: 0.51-0.80 vs 0.70-0.98), so this test
    # only checks that the conv path trains; the dense tests check that hidden layers learn
    acc = _train(net, "tpsgd", x, y, xt, yt, steps=80)
    assert acc > 0.9, acc
    rule = setup("drtp", net)
    assert rule.matrices[0].shape == (4, 4, 6, 6)  # the label maps to the conv output's shape


def test_conv_channel_target_is_the_gradient_of_the_pooled_local_loss():
    """conv_target='channel': B_k is C x channels x 1 x 1 and tpSGD-l2's conv update equals the
    autograd gradient of ½‖mean_ij h - t‖² with respect to the conv weight (per sample, summed)."""
    torch.manual_seed(0)
    conv = Conv2d((1, 8, 8), 4, 3, RateParams("tanh"), pool=2)
    net = Network([conv, Dense(36, 4)])
    rule = setup("tpsgd", net, conv_target="channel")
    assert rule.matrices[0].shape == (4, 4, 1, 1)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 16, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (16,), generator=g)
    net.zero_grad()
    rule.estimate_gradients(net, x, y, CLS)
    got = conv.weight.grad.clone()
    net.zero_grad()
    with torch.enable_grad():
        _, _, taps = conv.step(x[0], conv.init_state(16))
        target = F.one_hot(y, 4).float() @ rule.matrices[0].flatten(1)
        loss = 0.5 * ((taps.act.mean((2, 3)) - target) ** 2).sum() / 16
        loss.backward()
    torch.testing.assert_close(got, conv.weight.grad, atol=1e-6, rtol=1e-4)
    with pytest.raises(ConfigError, match="conv_target"):
        make_rule("tpsgd", conv_target="pixel")


@pytest.mark.parametrize("deriv", ["window", "lif_rate", "none"])
def test_spiking_drtp_learns_without_surrogate(deriv):
    """A 6-unit LIF bottleneck, 4 classes. With the window factor DRTP beats the readout-only
    control by far (seeds 0, 10: 0.99 vs 0.72-0.77); ``lif_rate`` and ``none`` learn (0.75-0.96)
    but not past the control at every seed, so for them the test asks that they learn and move
    the hidden weights."""
    x, y = _blobs(800, 20, 4, 0)
    xt, yt = _blobs(400, 20, 4, 1)

    def net():
        torch.manual_seed(0)
        return Network([Dense(20, 6, LIFParams(tau_mem=10e-3), init_gain=1.0), Dense(6, 4, LIParams(tau=10e-3))],
                       decode="mean")

    def encode(v):  # a constant current over 8 steps
        return (0.5 * v).unsqueeze(0).expand(8, *v.shape)

    trained = net()
    w0 = trained.layers[0].weight.detach().clone()
    acc = _train(trained, "drtp", x, y, xt, yt, steps=60, encode=encode, spike_derivative=deriv)
    assert acc > 0.7, acc
    assert (trained.layers[0].weight - w0).abs().max() > 1e-2
    if deriv == "window":
        readout_only = _train(freeze_hidden(net()), "drtp", x, y, xt, yt, steps=60, encode=encode,
                              spike_derivative=deriv)
        assert acc > readout_only + 0.15, (acc, readout_only)


def test_recurrent_tpsgd_targets_every_step():
    """A recurrent layer is trained with a per-step projected target (no BPTT). The class is
    shown at the first step only and read at the last: the control with the recurrent layer
    frozen (readout only) stays far behind (seeds 0, 1: 0.91, 0.89 vs 0.65, 0.70)."""
    g = torch.Generator().manual_seed(0)
    n, steps = 600, 6
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, steps, 5, generator=g) * 0.5
    x[:, 0, :3] += 2.0 * F.one_hot(y, 3)  # the class is shown at the first step only

    def net():
        torch.manual_seed(0)
        return Network([Dense(5, 12, RateParams("tanh"), recurrent=True), Dense(12, 3)], decode="last")

    enc = lambda v: v.transpose(0, 1)  # noqa: E731
    acc = _train(net(), "tpsgd", x[300:], y[300:], x[:300], y[:300], steps=100, encode=enc)
    readout_only = _train(freeze_hidden(net()), "tpsgd", x[300:], y[300:], x[:300], y[:300], steps=100, encode=enc)
    assert acc > 0.8 and acc > readout_only + 0.1, (acc, readout_only)


def test_layerwise_step_equals_one_step_for_sgd():
    """Stepping each layer during the forward pass = one step at the end (plain SGD, T = 1)."""
    x, y = batch()
    nets = [mlp(seed=4), mlp(seed=4)]
    for net, layerwise in zip(nets, (True, False)):
        rule = setup("tpsgd", net, layerwise=layerwise)
        rule.train_step(net, x, y, CLS, torch.optim.SGD(net.parameters(), lr=0.1))
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b)


def test_state_dict_round_trip():
    net = mlp()
    rule = setup("drtp", net)
    other = make_rule("drtp")
    other.load_state_dict(rule.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(rule.matrices, other.matrices))


def test_spiking_readout_rejected():
    net = Network([Dense(4, 4, LIFParams()), Dense(4, 2, LIFParams())], decode="sum")
    with pytest.raises(ConfigError):
        setup("drtp", net)


def test_lr_decay_per_epoch():
    """``train.lr_decay`` (used by mlp-mnist's dfa): epoch e trains with lr * decay**(e-1)."""
    from neurolearn.config import resolve_config
    from neurolearn.runs import build_run
    from neurolearn.training import Trainer

    cfg = resolve_config("mlp-digits", rule="dfa", epochs=2, overrides=["train.lr_decay=0.5"])
    trainer = Trainer(build_run(cfg), None, progress=False, log=lambda msg: None)
    seen = []
    step = trainer.run.rule.train_step

    def spy(*args):
        seen.append(args[-1].optimizer.param_groups[0]["lr"])
        return step(*args)

    trainer.run.rule.train_step = spy
    trainer.fit()
    lr = cfg["train"]["lr"]
    assert seen[0] == pytest.approx(lr) and seen[-1] == pytest.approx(0.5 * lr)


@pytest.mark.parametrize("name", ["drtp", "tpsgd", "dfa"])
def test_target_rules_learn_decorrelation_too(name):
    """Decorrelation combines with the target rules: every decorrelated layer's R learns from
    its own input during training (DRTP/tpSGD layer by layer, DFA after the step)."""
    from neurolearn.decorrelation import add_decorrelation, decorrelation_metrics

    torch.manual_seed(0)
    net = Network([Dense(6, 16, RateParams("tanh")), Dense(16, 16, RateParams("tanh")), Dense(16, 3)])
    add_decorrelation(net, lr=1e-2, kappa=0.5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 32, 6, generator=g) @ torch.randn(6, 6, generator=g)  # correlated inputs
    y = torch.randint(0, 3, (32,), generator=g)
    obj = Objective("classification")
    rule = make_rule(name)
    rule.setup(net, obj, torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(3):
        rule.train_step(net, x, y, obj, opt)
    for layer in net.layers:
        assert layer.decorrelation.updates == 3
        assert not torch.equal(layer.decorrelation.R, torch.eye(layer.decorrelation.features))
    assert set(decorrelation_metrics(net)) == {"decor_loss_0", "decor_loss_1", "decor_loss_2"}
