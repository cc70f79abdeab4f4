"""Data-parallel training (neurolearn.distributed): 2 gloo processes on one machine through a file store.

The checks share few spawns (about 5 s each): one runs every rule for an epoch, scalar-only weight
perturbation, a checkpoint and a resume; the parent compares with one process. Design and test
plan: /work/shared/DISTRIBUTED.md §5.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from neurolearn.config import resolve_config
from neurolearn.distributed import (SINGLE, Context, GradSync, init_file_store, keyed_generator, shard_range,
                                    wp_scalar_estimate)
from neurolearn.errors import ConfigError
from neurolearn.runs import build_run
from neurolearn.training import Trainer

pytestmark = pytest.mark.distributed

WORLD = 2
# rule, --set overrides: every gradient rule; np/anp/wp draw keyed noise; decor = decorrelation synchronised
CASES = {
    "bp-adam": ("bp", {"train.optimizer": "adam", "train.lr": 1e-3}),
    "dfa": ("dfa", {}),
    "drtp": ("drtp", {}),
    "tpsgd": ("tpsgd", {}),
    "np": ("np", {"rule.params.draws": 2}),
    "anp": ("anp", {"rule.params.draws": 3}),
    "wp": ("wp", {"rule.params.sigma": 1e-3}),
    "wp-baseline": ("wp", {"rule.params.sigma": 1e-3, "rule.params.passes": "baseline", "train.lr": 1e-3}),
    "danp": ("anp", {"rule.params.draws": 2, "decor.enabled": True}),
}


# the time-domain rules (float64, one epoch): a spiking network (node noise through T steps), the
# time-domain perturbation rules on a recurrent net with a target at every step
# (rules/perturbation_time.py), e-prop on a recurrent ALIF network (model, rule, data, --set)
_MG = {"data.options.n_train": 16, "data.options.n_test": 4, "data.options.length": 40, "train.batch_size": 8}
TIME_CASES = {
    "anp-spiking": ("mlp-digits", "anp", None, {"model.layers.0.neuron": "lif", "model.layers.1.neuron": "lif",
                                                "model.encoder.kind": "rate", "model.encoder.steps": 4,
                                                "rule.params.draws": 2, "train.batch_size": 128}),
    "anp-time-rnn": ("rnn-mackey-glass", "anp", None, {**_MG, "rule.params.draws": 2}),
    "np-time-rnn": ("rnn-mackey-glass", "np", None, {**_MG, "rule.params.draws": 2}),
    "wp-time-rnn": ("rnn-mackey-glass", "wp", None, {**_MG, "rule.params.sigma": 1e-3}),
    "eprop": ("snn-evidence", "eprop", "evidence-ci", {"data.options.n_train": 8, "data.options.n_test": 4,
                                                       "data.options.n_cues": 1, "data.options.delay": 50,
                                                       "train.batch_size": 4}),
}


def time_config(name: str):
    model, rule, data, sets = TIME_CASES[name]
    return resolve_config(model=model, rule=rule, data=data, epochs=1,
                          overrides=[f"{k}={_toml(v)}" for k, v in sets.items()])


def config(rule: str, sets: dict, epochs: int = 1):
    base = {"train.optimizer": "sgd", "train.lr": 0.05, "train.lr_decay": 1.0, "train.batch_size": 128}
    base.update(sets)
    cfg = resolve_config(model="mlp-digits", rule=rule, epochs=epochs,
                         overrides=[f"{k}={_toml(v)}" for k, v in base.items()])
    return cfg


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v)


def build64(cfg, ctx: Context, out: Path | None):
    """A run in float64: the perturbation rules' loss differences amplify float32 rounding (the order
    of the sums differs between 1 and 2 processes) past any useful tolerance after a few steps."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # fixed feedback matrices etc. built in float64 too
    try:
        run = build_run(cfg)
        trainer = Trainer(run, out, progress=False, log=lambda m: None, ctx=ctx)
    finally:
        torch.set_default_dtype(default)
    run.model.double()
    trainer.x_train, trainer.x_test = trainer.x_train.double(), trainer.x_test.double()
    return trainer


def train(cfg, ctx: Context, out: Path | None = None, resume: bool = False):
    trainer = build64(cfg, ctx, out)
    metrics = trainer.fit(resume=resume)
    model = trainer.run.model
    decor = {k: v.clone() for k, v in model.state_dict().items() if "decorrelation" in k}
    opt = trainer.optimizer.state_dict()["state"] if trainer.optimizer is not None else {}
    return {"params": [p.detach().clone() for p in model.parameters()], "decor": decor, "opt": opt,
            "final": metrics["final"], "bytes": trainer.sync.traffic.bytes,
            "collectives": trainer.sync.traffic.collectives}


# float32 with train.exact_sums (the batch sums in float64, rounded once after the all-reduce):
# 2 ranks train bitwise what 1 process trains. Without it DRTP at the model defaults drifts apart
# (rel. 1e-9 after 2 epochs, 1e-2 by epoch 19, another final accuracy by epoch 30).
EXACT32 = {"drtp-exact32": ("drtp", {"train.exact_sums": True}, 3),
           "anp-exact32": ("anp", {"train.exact_sums": True, "train.batch_size": 100}, 2)}  # shards 50/50, last 37: 19/18


def train32(rule: str, sets: dict, epochs: int, ctx: Context) -> dict:
    cfg = resolve_config(model="mlp-digits", rule=rule, epochs=epochs,
                         overrides=[f"{k}={_toml(v)}" for k, v in sets.items()])
    trainer = Trainer(build_run(cfg), None, progress=False, log=lambda m: None, ctx=ctx)
    metrics = trainer.fit()
    return {"params": [p.detach().clone() for p in trainer.run.model.parameters()], "final": metrics["final"],
            "losses": [e["train_loss"] for e in metrics["epochs"]]}


def wp_problem():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))
    x, y = torch.randn(16, 6), torch.randn(16, 2)
    params = list(model.parameters())
    return model, (lambda: ((model(x) - y) ** 2).mean()), params


def worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    ctx = init_file_store(f"{tmp}/store", rank, WORLD)
    try:
        res: dict = {"runs": {}}
        for name, (rule, sets) in CASES.items():
            res["runs"][name] = train(config(rule, sets), ctx)
        res["time"] = {name: train(time_config(name), ctx) for name in TIME_CASES}
        res["exact32"] = {name: train32(rule, sets, epochs, ctx) for name, (rule, sets, epochs) in EXACT32.items()}
        for draws in (8, 7):  # scalar-only WP: K draws shared out, only K float64 exchanged
            model, loss, params = wp_problem()
            sync = GradSync(ctx)
            wp_scalar_estimate(model, loss, params, 1e-3, draws, (0, 1, 2), ctx, sync.traffic)
            res[f"wp{draws}"] = {"grads": [p.grad.clone() for p in params], "bytes": sync.traffic.bytes}
        # checkpoint after epoch 1 at W=2, keep a copy, resume to epoch 2 at W=2
        cfg1, cfg2 = config("anp", {"rule.params.draws": 2}, 1), config("anp", {"rule.params.draws": 2}, 2)
        run_dir = Path(tmp) / "run"
        train(cfg1, ctx, run_dir)
        if ctx.is_main:
            shutil.copytree(run_dir, Path(tmp) / "run-epoch1")
        ctx.barrier()
        res["resumed"] = train(cfg2, ctx, run_dir, resume=True)
        # bad input is one clear error on every rank, before any collective hangs
        try:
            Trainer(build_run(config("bp", {"train.batch_size": 1})), None, progress=False, ctx=ctx)
        except ConfigError as exc:
            res["refused"] = str(exc)
        torch.save(res, f"{tmp}/rank{rank}.pt")
    finally:
        ctx.close()


def failing_worker(rank: int, tmp: str) -> None:
    ctx = init_file_store(f"{tmp}/store", rank, WORLD)
    if rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    ctx.barrier()  # rank 0 would wait here for ever without the spawn's failure handling


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    mp.spawn(worker, args=(str(tmp),), nprocs=WORLD, join=True)
    return tmp, [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single():
    torch.set_num_threads(1)
    return {name: train(config(rule, sets), SINGLE) for name, (rule, sets) in CASES.items()}


def _close(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-12)) for x, y in zip(a, b))


@pytest.mark.parametrize("name", list(CASES))
def test_two_ranks_of_half_batches_train_what_one_process_trains(ranks, single, name):
    _, res = ranks
    r0, r1 = res[0]["runs"][name], res[1]["runs"][name]
    one = single[name]
    for a, b in zip(r0["params"], r1["params"]):  # identical on both ranks, bit for bit
        assert torch.equal(a, b)
    assert _close(r0["params"], one["params"]) < 1e-9
    assert r0["final"]["test_accuracy"] == one["final"]["test_accuracy"]
    assert abs(r0["final"]["train_loss"] - one["final"]["train_loss"]) <= 1e-4 * abs(one["final"]["train_loss"])
    for k, v in r0["decor"].items():  # decorrelation R: the same on both ranks, the union batch's update
        assert torch.equal(v, r1["decor"][k])
        assert torch.allclose(v, one["decor"][k], rtol=1e-9, atol=1e-12)
    for k, st in r0["opt"].items():  # optimizer state (Adam moments) identical across ranks
        for key, t in st.items():
            assert torch.equal(t, r1["opt"][k][key])


@pytest.mark.parametrize("name", list(EXACT32))
def test_float32_with_exact_sums_two_ranks_train_bitwise_what_one_process_trains(ranks, name):
    _, res = ranks
    torch.set_num_threads(1)
    rule, sets, epochs = EXACT32[name]
    one = train32(rule, sets, epochs, SINGLE)
    two = res[0]["exact32"][name]
    for a, b, c in zip(two["params"], res[1]["exact32"][name]["params"], one["params"]):
        assert a.dtype == torch.float32
        assert torch.equal(a, b)  # the ranks agree
        assert torch.equal(a, c), f"max |diff| {float((a - c).abs().max()):.3g}"  # and equal one process
    assert two["final"]["test_accuracy"] == one["final"]["test_accuracy"]
    for x, y in zip(two["losses"], one["losses"]):
        assert abs(x - y) <= 1e-12 * abs(y)


def test_exact_sums_change_float32_sums_only_in_their_rounding():
    """The float64 path of the gradient helpers gives the float32 path's numbers up to float32 rounding."""
    from neurolearn.layers import Dense
    from neurolearn.learning.grads import add_grad, bias_grad, exact_sums, has_pending, take_pending, weight_gradient

    torch.manual_seed(0)
    layer = Dense(6, 4)
    post, x = torch.randn(33, 4), torch.randn(33, 6)
    plain = layer.weight_gradient(post, x)
    with exact_sums() as sums:
        g = weight_gradient(layer, post, x)
        add_grad(layer.weight, g)
        add_grad(layer.bias, bias_grad(post))
        assert layer.weight.grad is None  # pending in float64 until the update seam takes it
        assert has_pending(layer.weight)
    assert not has_pending(layer.weight) and take_pending(layer.weight) is None  # scoped to the block
    assert g.dtype == torch.float64
    assert torch.allclose(g.float(), plain, rtol=1e-5, atol=1e-6)
    exact = (post.double().T @ x.double())
    assert torch.equal(sums.take(layer.weight), exact)
    assert torch.equal(sums.take(layer.bias), post.double().sum(0))
    assert sums.take(layer.weight) is None


@pytest.mark.parametrize("name", list(TIME_CASES))
def test_time_domain_rules_on_two_ranks_train_what_one_process_trains(ranks, name):
    _, res = ranks
    torch.set_num_threads(1)
    one = train(time_config(name), SINGLE)
    r0, r1 = res[0]["time"][name], res[1]["time"][name]
    for a, b in zip(r0["params"], r1["params"]):
        assert torch.equal(a, b)
    assert _close(r0["params"], one["params"]) < 1e-9
    assert abs(r0["final"]["train_loss"] - one["final"]["train_loss"]) <= 1e-9 * abs(one["final"]["train_loss"])
    assert r0["final"]["test_loss"] == pytest.approx(one["final"]["test_loss"], rel=1e-9)


def test_decorrelation_and_optimizer_state_are_covered(ranks):
    _, res = ranks
    assert res[0]["runs"]["danp"]["decor"], "the DANP case must have decorrelation matrices"
    assert any("exp_avg" in st for st in res[0]["runs"]["bp-adam"]["opt"].values())


def test_scalar_weight_perturbation_exchanges_only_the_loss_differences(ranks):
    _, res = ranks
    for draws in (8, 7):
        model, loss, params = wp_problem()
        wp_scalar_estimate(model, loss, params, 1e-3, draws, (0, 1, 2))
        for r in range(WORLD):
            got = res[r][f"wp{draws}"]
            for g, p in zip(got["grads"], params):
                assert torch.equal(g, p.grad)  # bitwise the one-process estimate over the same keyed draws
            assert got["bytes"] <= 8 * draws + 64
    # the trainer's wp sends one float64 per step (scalar mode), not the gradients
    wp = res[0]["runs"]["wp"]
    assert wp["bytes"] < 64 * wp["collectives"]


def test_gradient_rules_all_reduce_once_per_step(ranks):
    _, res = ranks
    bp = res[0]["runs"]["bp-adam"]
    n_params = sum(p.numel() for p in bp["params"])
    steps = -(-1437 // 128)
    # one all-reduce of the gradients per step, plus the evaluation's and the epoch loss's sums
    assert bp["collectives"] == steps + 2
    assert bp["bytes"] >= steps * 8 * n_params  # float64 here


def test_resume_continues_a_two_process_run_also_in_one_process(ranks):
    tmp, res = ranks
    cfg2 = config("anp", {"rule.params.draws": 2}, 2)
    straight = train(cfg2, SINGLE)
    resumed = res[0]["resumed"]
    assert _close(resumed["params"], straight["params"]) < 1e-9
    assert resumed["final"]["test_accuracy"] == straight["final"]["test_accuracy"]
    one = train(cfg2, SINGLE, tmp / "run-epoch1", resume=True)  # W=2 checkpoint, resumed at W=1
    assert _close(one["params"], straight["params"]) < 1e-9


def test_a_batch_smaller_than_the_world_is_refused_on_every_rank(ranks):
    _, res = ranks
    for r in range(WORLD):
        assert "at least the number of processes" in res[r]["refused"]


def test_a_failing_rank_stops_the_run_with_its_error(tmp_path):
    with pytest.raises(Exception, match="rank 1 fails on purpose"):
        mp.spawn(failing_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)


def test_shards_are_contiguous_and_cover_the_batch():
    for n in (1, 7, 32, 33):
        for w in (1, 2, 3):
            parts = [shard_range(n, r, w) for r in range(w)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(h - l for l, h in parts) - min(h - l for l, h in parts) <= 1


def test_keyed_draws_depend_on_the_key_alone():
    a = torch.randn(5, generator=keyed_generator(0, 1, 2))
    assert torch.equal(a, torch.randn(5, generator=keyed_generator(0, 1, 2)))
    assert not torch.equal(a, torch.randn(5, generator=keyed_generator(1, 0, 2)))


# ---------------------------------------------------------------- the data seam (issue 20 item 1)
def _digits_trainer(**data):
    cfg = resolve_config(model="mlp-digits", rule="bp", epochs=1, overrides=["train.batch_size=128"])
    return Trainer(build_run(cfg), None, progress=False, log=lambda m: None, **data)


def test_a_map_style_dataset_trains_exactly_as_the_in_memory_data():
    from torch.utils.data import TensorDataset

    ref = _digits_trainer()
    ds = ref.run.dataset
    own = _digits_trainer(train_data=TensorDataset(ds.x_train, ds.y_train), test_data=TensorDataset(ds.x_test, ds.y_test))
    a, b = ref.fit(), own.fit()
    assert a["final"]["train_loss"] == b["final"]["train_loss"]
    assert a["final"]["test_accuracy"] == b["final"]["test_accuracy"]
    for p, q in zip(ref.run.model.parameters(), own.run.model.parameters()):
        assert torch.equal(p, q)


def test_a_dataloader_and_an_iterable_dataset_train():
    from torch.utils.data import DataLoader, IterableDataset, TensorDataset

    ref = _digits_trainer()
    ds = ref.run.dataset

    class Stream(IterableDataset):
        def __iter__(self):
            return zip(ds.x_train, ds.y_train)

    loader = DataLoader(TensorDataset(ds.x_train, ds.y_train), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    for data in (loader, Stream()):
        out = _digits_trainer(train_data=data, test_data=DataLoader(TensorDataset(ds.x_test, ds.y_test), batch_size=100))
        assert out.fit()["final"]["test_accuracy"] > 0.3


def test_more_classes_than_readout_units_is_one_clear_error():
    from torch.utils.data import TensorDataset

    ref = _digits_trainer()
    x = ref.run.dataset.x_train[:40]
    y = torch.arange(40) % 12
    with pytest.raises(ConfigError, match="12 classes.*readout has 10 units"):
        _digits_trainer(train_data=TensorDataset(x, y)).fit()
