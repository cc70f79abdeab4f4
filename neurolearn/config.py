r"""Run configuration: model files, per-rule defaults and command-line overrides.

A model file (TOML, in ``models/``) describes the network and its training defaults::

    name = "mlp-digits"
    data = "digits"            # dataset name (options in [data_options])
    dt = 1e-3                  # seconds, for every neuron of the model
    decode = "last"            # how the output over time becomes a prediction
    [encoder]                  # kind = direct | rate | poisson | latency | sequence; steps = T
    [[layers]]                 # type = dense | recurrent | conv2d; size; neuron = "tanh" or a table
    [train]                    # epochs, batch_size, lr, optimizer, momentum, weight_decay, ...
    [rules.anp]                # per-rule overrides: train keys go to [train], others to the rule
    [rules.anp.set]            # per-rule dotted-path overrides, like --set ("model.layers.0.init" = "...")

The resolved run configuration is one plain dict (saved as ``config`` in metrics.json, all
that is needed to rerun)::

    {"model": {...the model file...}, "data": {"name", "options"}, "rule": {"name", "params"},
     "train": {...}, "decor": {...}}

``--set key=value`` overrides any entry by its dotted path (``train.lr=0.1``,
``rule.params.sigma=1e-3``, ``model.layers.0.size=256``, ``decor.enabled=true``); the value
is parsed as TOML (numbers, booleans, strings, lists) and falls back to a plain string.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from neurolearn.errors import ConfigError

TRAIN_KEYS = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 1e-3,
    "optimizer": "adam",
    "momentum": 0.0,
    "beta1": 0.9,  # Adam's first-moment decay (higher: longer averaging of noisy estimates)
    "beta2": 0.999,
    "weight_decay": 0.0,
    "seed": 0,
    "device": "cpu",
    "eval_batch_size": 1000,
    "lr_decay": 1.0,  # per-epoch factor: epoch e trains with lr * lr_decay**(e-1) (1.0 = constant)
    "average": 0.0,  # weight averaging: evaluate and keep the EMA of the weights, decay per step (0 = off)
}
OPTIMIZERS = ("sgd", "adam")
DECOR_DEFAULTS = {"enabled": False}


def models_dir() -> Path:
    """The folder of ready model definitions (``models/`` at the project's root)."""
    return Path(__file__).resolve().parent.parent / "models"


def available_models() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.toml"))


def load_model_file(name_or_path: str) -> dict[str, Any]:
    """Read a model definition by name (``mlp-digits``) or path (``my/model.toml``)."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.exists()):
        path = models_dir() / f"{name_or_path}.toml"
    if not path.exists():
        raise ConfigError(
            f"unknown model {name_or_path!r}: no such file and no models/{name_or_path}.toml; "
            f"known models: {', '.join(available_models())} (or pass a path to a .toml file)"
        )
    try:
        with open(path, "rb") as fh:
            cfg = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"model file {path} is not valid TOML: {exc}") from None
    cfg.setdefault("name", path.stem)
    for key in ("data", "layers"):
        if key not in cfg:
            raise ConfigError(f"model file {path} has no {key!r} entry")
    return cfg


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as a TOML value, or keep it as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def set_path(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``cfg[a][b][c] = value`` for ``dotted = "a.b.c"`` (list entries by index)."""
    parts = dotted.split(".")
    node: Any = cfg
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i + 1])} is not a valid list index") from None
        else:
            if part not in node or not isinstance(node[part], (dict, list)):
                if part in node:
                    raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i + 1])} is a value, not a table")
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = value
        except (ValueError, IndexError):
            raise ConfigError(f"--set {dotted}: {last!r} is not a valid list index") from None
    else:
        node[last] = value


def parse_overrides(items: list[str] | None) -> list[tuple[str, Any]]:
    out = []
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set train.lr=0.01)")
        key, text = item.split("=", 1)
        out.append((key.strip(), parse_value(text.strip())))
    return out


def resolve_config(
    model: str = "mlp-digits",
    rule: str | None = None,
    data: str | None = None,
    overrides: list[str] | None = None,
    **train_flags: Any,
) -> dict[str, Any]:
    """Merge the model file, its per-rule defaults, command-line flags and ``--set`` overrides."""
    mcfg = load_model_file(model)
    rule = rule or mcfg.get("default_rule", "bp")
    train = dict(TRAIN_KEYS)
    unknown = set(mcfg.get("train", {})) - set(TRAIN_KEYS)
    if unknown:
        raise ConfigError(f"model {mcfg['name']}: unknown [train] keys {sorted(unknown)}; known: {sorted(TRAIN_KEYS)}")
    train.update(mcfg.get("train", {}))
    rule_params: dict[str, Any] = {}
    decor = dict(DECOR_DEFAULTS)
    decor.update(mcfg.get("decor", {}))
    rule_sets: dict[str, Any] = {}
    for key, value in mcfg.get("rules", {}).get(rule, {}).items():
        if key in TRAIN_KEYS:
            train[key] = value
        elif key == "decor":
            decor.update(value)
        elif key == "set":
            rule_sets.update(value)
        else:
            rule_params[key] = value
    for key, value in train_flags.items():
        if value is not None:
            if key not in TRAIN_KEYS:
                raise ConfigError(f"unknown training option {key!r}")
            train[key] = value
    cfg = {
        "model": {k: v for k, v in mcfg.items() if k not in ("train", "rules", "decor")},
        "data": {"name": data or mcfg["data"], "options": dict(mcfg.get("data_options", {}))},
        "rule": {"name": rule, "params": rule_params},
        "train": train,
        "decor": decor,
    }
    for key, value in [*rule_sets.items(), *parse_overrides(overrides)]:
        head = key.split(".", 1)[0]
        if head not in cfg:
            raise ConfigError(
                f"--set {key}: the key must start with one of {sorted(cfg)} (e.g. train.lr, rule.params.sigma, "
                "decor.enabled, model.layers.0.size)"
            )
        set_path(cfg, key, value)
    validate_train(cfg["train"])
    return cfg


def validate_train(train: dict[str, Any]) -> None:
    unknown = set(train) - set(TRAIN_KEYS)
    if unknown:
        raise ConfigError(f"unknown train keys {sorted(unknown)}; known: {sorted(TRAIN_KEYS)}")
    if train["optimizer"] not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {train['optimizer']!r}; known: {', '.join(OPTIMIZERS)}")
    if not (isinstance(train["epochs"], int) and train["epochs"] >= 1):
        raise ConfigError(f"epochs must be a positive integer, got {train['epochs']!r}")
    if not isinstance(train["batch_size"], int):
        raise ConfigError(f"batch_size must be an integer (0 = whole training set), got {train['batch_size']!r}")
    if not (isinstance(train["lr"], (int, float)) and train["lr"] > 0):
        raise ConfigError(f"lr must be a positive number, got {train['lr']!r}")
    if train["device"] not in ("cpu", "cuda") and not str(train["device"]).startswith("cuda:"):
        raise ConfigError(f"device must be cpu or cuda, got {train['device']!r}")
