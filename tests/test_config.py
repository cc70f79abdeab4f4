"""The typed configuration: every bad value is one clear line through the CLI, defaults have one home."""

import inspect
from pathlib import Path

import pytest

from neurolearn.cli import main
from neurolearn.config import (DECOR_SCHEMA, ENCODER_SCHEMA, LAYER_SCHEMAS, TRAIN_KEYS, check_config, describe,
                               load_model_file, resolve_config)
from neurolearn.errors import ConfigError

# (arguments after `train`, a piece of the one-line message)
BAD = [
    (["--set", "decor.enabeld=true"], "unknown key 'enabeld' (did you mean 'enabled'?)"),
    (["--set", "model.decod=mean"], "unknown key 'decod' (did you mean 'decode'?)"),
    (["--set", "train.lrr=0.1"], "unknown key 'lrr' (did you mean 'lr'?)"),
    (["--set", "model.layers.0.sise=3"], "unknown key 'sise' (did you mean 'size'?)"),
    (["--set", "model.encoder.stesp=3"], "unknown key 'stesp' (did you mean 'steps'?)"),
    (["--set", "rule.parms.sigma=1"], "unknown key 'parms' (did you mean 'params'?)"),
    (["--set", "data.option.train_limit=3"], "unknown key 'option' (did you mean 'options'?)"),
    (["--set", "traim.lr=1"], "did you mean 'train'?"),
    (["--set", "train.lr=true"], "train.lr must be a number, got True"),
    (["--set", "train.epochs=2.5"], "train.epochs must be an integer"),
    (["--set", "train.lr=0"], "train.lr must be > 0"),
    (["--set", "train.lr_decay=-1"], "train.lr_decay must be > 0"),
    (["--set", "train.eval_batch_size=0"], "train.eval_batch_size must be >= 1"),
    (["--set", "train.momentum=-0.1"], "train.momentum must be >= 0"),
    (["--set", "train.weight_decay=-1"], "train.weight_decay must be >= 0"),
    (["--set", "train.beta1=1.0"], "train.beta1 must be in [0, 1)"),
    (["--set", "train.average=1"], "train.average must be in [0, 1)"),
    (["--set", "train.optimizer=3"], "train.optimizer must be a string"),
    (["--set", "train.optimizer=adma"], "did you mean 'adam'?"),
    (["--set", "train.device=gpu"], "train.device must be cpu, cuda or cuda:N"),
    (["--set", "train.seed=true"], "train.seed must be an integer"),
    (["--batch-size", "-5"], "train.batch_size must be >= 0 (0 = the whole training set)"),
    (["--epochs", "0"], "train.epochs must be >= 1"),
    (["--seed", "-1"], "train.seed must be in [0, 2**63)"),
    (["--seed", str(2**63)], "train.seed must be in [0, 2**63)"),
    (["--lr", "-1"], "train.lr must be > 0"),
    (["--set", "model.layers=\"abc\""], "model.layers must be a list"),
    (["--set", "model.layers.0.size=0"], "model.layers.0.size must be >= 1"),
    (["--set", "model.layers.0.bias=1"], "model.layers.0.bias must be true or false"),
    (["--set", "model.layers.0.neuron=3"], "model.layers.0.neuron must be a neuron name"),
    (["--set", "model.dt=-1e-3"], "model.dt must be > 0"),
    (["--set", "model.decode=\"avg\""], "unknown value 'avg'"),
    (["--set", "model.input=[0]"], "model.input must be a list of positive integers"),
    (["--set", "model.encoder.steps=true"], "model.encoder.steps must be an integer"),
    (["--set", "decor.enabled=1"], "decor.enabled must be true or false"),
    (["--set", "decor.kappa=2"], "decor.kappa must be in [0, 1]"),
    (["--set", "decor.lr=true"], "decor.lr must be a number"),
    (["--set", "decor.subsample=0"], "decor.subsample must be a share in (0, 1] or a row count"),
    (["--set", "decor.layers=\"some\""], "decor.layers must be \"all\" or a list"),
    (["--set", "data.options.train_limt=3", "--model", "mlp-mnist"], "did you mean 'train_limit'?"),
]


def one_line_error(capsys, args: list[str], tmp_path: Path) -> str:
    capsys.readouterr()
    assert main(["train", "--no-progress", "--out", str(tmp_path / "never"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert not (tmp_path / "never").exists()
    return err


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_are_one_line_errors(args, message, capsys, tmp_path):
    assert message in one_line_error(capsys, args, tmp_path)


MODEL_FILES = [
    ('data = "digits"\nlayers = "abc"\n', "layers must be a list"),
    ('data = "digits"\n[[layers]]\nsize = 3\n[train]\nlrr = 1\n', "unknown key 'lrr' (did you mean 'lr'?)"),
    ('data = "digits"\ndecod = "mean"\n[[layers]]\nsize = 3\n', "unknown key 'decod' (did you mean 'decode'?)"),
    ('data = "digits"\n[[layers]]\nsise = 3\n', "unknown key 'sise' (did you mean 'size'?)"),
    ('data = "digits"\n[[layers]]\nsize = 3\n[train]\noptimizer = 3\n', "optimizer must be a string"),
    ('data = "digits"\n[[layers]]\nsize = 3\n[rules.bp]\nlr = true\n', "rules.bp.lr must be a number"),
    ('data = "digits"\n[[layers]]\nsize = 3\n[rules.anp.decor]\nenabeld = true\n', "did you mean 'enabled'?"),
    ('data = "digits"\n[[layers]]\nsize = 3\n[encoder]\nkind = "rate"\nsteps = 0\n', "encoder.steps must be >= 1"),
    ('data = "digits"\n[[layers]]\nsize = 3\n[rules.bp.set]\n"trian.lr" = 1\n', "must start with one of"),
    (b'data = "digits" # \xff\xfe\n[[layers]]\nsize = 3\n', "is not UTF-8 text"),
    ('data = "digits"\n[[layers]\n', "is not valid TOML"),
    ('[[layers]]\nsize = 3\n', "has no 'data' entry"),
]


@pytest.mark.parametrize("text,message", MODEL_FILES, ids=range(len(MODEL_FILES)))
def test_bad_model_files_are_one_line_errors(text, message, capsys, tmp_path):
    path = tmp_path / "m.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert message in one_line_error(capsys, ["--model", str(path)], tmp_path)


def test_every_model_file_resolves_for_every_rule_it_names():
    for path in sorted(Path(load_model_file.__code__.co_filename).parents[1].joinpath("models").glob("*.toml")):
        cfg = load_model_file(str(path))
        for rule in ["bp", *cfg.get("rules", {})]:
            resolved = resolve_config(str(path), rule=rule)
            assert set(resolved["train"]) == set(TRAIN_KEYS) and set(resolved["decor"]) == set(DECOR_SCHEMA)


def test_defaults_have_one_home():
    """The schema's defaults are the ones the objects use when built without them."""
    from neurolearn.decorrelation import Decorrelation
    from neurolearn.encoders import Encoder

    signature = inspect.signature(Decorrelation.__init__).parameters
    for name, key in DECOR_SCHEMA.items():
        if name not in ("enabled", "layers"):
            assert signature[name].default == key.default, name
    enc = Encoder()
    assert {k: getattr(enc, k) for k in ENCODER_SCHEMA} == {k: v.default for k, v in ENCODER_SCHEMA.items()}
    assert set(LAYER_SCHEMAS) == {"dense", "recurrent", "conv2d"}
    cfg = resolve_config("mlp-digits", rule="anp")
    assert cfg["train"]["eval_batch_size"] == TRAIN_KEYS["eval_batch_size"] == 1000
    assert cfg["decor"] == {**{k: v.default for k, v in DECOR_SCHEMA.items()}, "kappa": 0.0, "lr": 1e-3}


def test_old_configs_are_completed_and_hand_edits_checked():
    cfg = resolve_config("mlp-digits")
    old = {**cfg, "train": {k: v for k, v in cfg["train"].items() if k not in ("average", "lr_decay")}}
    del old["decor"]
    done = check_config(old)
    assert done["train"]["average"] == 0.0 and done["decor"]["enabled"] is False
    cfg["train"]["lr"] = True
    with pytest.raises(ConfigError, match="train.lr must be a number"):
        check_config(cfg)


def test_resolved_settings_are_echoed_when_a_run_starts(tmp_path, capsys):
    cfg = resolve_config("mlp-mnist", rule="anp")
    text = describe(cfg)
    assert "rule anp: sigma=0.001, draws=32" in text and "lr_decay=0.9*" in text and "average=0 " in text
    capsys.readouterr()
    assert main(["train", "--no-progress", "--epochs", "1", "--rule", "anp", "--set", "rule.params.draws=1",
                 "--set", "train.eval_batch_size=500", "--set", "decor.enabled=true",
                 "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "rule anp: draws=1" in err and "eval_batch_size=500*" in err and "epochs=1*" in err
    assert "decor: on: lr=0.001, kappa=0," in err  # mlp-digits' [rules.anp.decor]
