"""make_optimizer: torch's fused kernels where they exist (else foreach), the same update as the
reference implementation, and optimizer state that survives a checkpoint either way (issue 19)."""

from __future__ import annotations

import pytest
import torch

from neurolearn.build import fast_kernels, make_optimizer

TRAIN = {"adam": {"optimizer": "adam", "lr": 1e-2, "weight_decay": 1e-3},
         "sgd": {"optimizer": "sgd", "lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-3}}
REFERENCE = {"adam": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-3, foreach=False),
             "sgd": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, weight_decay=1e-3, foreach=False)}


def params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in [(7, 5), (7,), (3, 7), (3,)]]


def steps(opt: torch.optim.Optimizer, ps: list[torch.nn.Parameter], n: int, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()


def fused_on_cpu() -> bool:
    try:
        torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], fused=True)
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_make_optimizer_uses_fused_kernels_where_torch_has_them(name):
    opt = make_optimizer(params(), TRAIN[name])
    if fused_on_cpu():
        assert opt.defaults.get("fused") is True
    else:
        assert opt.defaults.get("foreach") is True


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_make_optimizer_matches_the_per_parameter_reference(name):
    ps, ref = params(), params()
    opt, want = make_optimizer(ps, TRAIN[name]), REFERENCE[name](ref)
    steps(opt, ps, 20)
    steps(want, ref, 20)
    for p, r in zip(ps, ref):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-5, atol=1e-6)
    assert any((p - q).abs().max() > 1e-3 for p, q in zip(ps, params()))  # it did train


def test_fast_kernels_falls_back_to_foreach_when_there_is_no_fused_kernel():
    class NoFused(torch.optim.Adam):
        def __init__(self, params, fused=None, **kw):
            if fused:
                raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of "
                                   "supported devices")
            super().__init__(params, **kw)

    opt = fast_kernels(NoFused, params(), lr=1e-3)
    assert opt.defaults.get("foreach") is True and not opt.defaults.get("fused")


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimizer_state_survives_a_checkpoint_between_implementations(name):
    """State saved by a foreach optimizer (an older checkpoint) or by make_optimizer's loads into
    make_optimizer's, and training goes on as the uninterrupted run."""
    ps = params()
    old = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[name](
        ps, foreach=True, **{k: v for k, v in TRAIN[name].items() if k != "optimizer"})
    steps(old, ps, 5)
    saved = old.state_dict()
    resumed = make_optimizer(ps, TRAIN[name])
    resumed.load_state_dict(saved)
    steps(resumed, ps, 5, seed=2)
    again = make_optimizer(ps, TRAIN[name])  # and the new optimizer's own state, round-tripped
    again.load_state_dict(resumed.state_dict())
    steps(again, ps, 5, seed=3)
    ref = params()
    want = REFERENCE[name](ref)
    steps(want, ref, 5)
    steps(want, ref, 5, seed=2)
    steps(want, ref, 5, seed=3)
    for p, r in zip(ps, ref):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-5, atol=1e-6)
