r"""Run configuration: model files, per-rule defaults and command-line overrides, on one typed schema.

A model file (TOML, in ``models/``) describes the network and its training defaults::

    name = "mlp-digits"
    data = "digits"            # dataset name (options in [data_options]); later also "module:function"
    dt = 1e-3                  # seconds, for every neuron of the model
    decode = "last"            # how the output over time becomes a prediction
    input = [64]               # the sample shape the model expects (checked against the data)
    default_rule = "bp"        # the rule when --rule is not given
    [encoder]                  # kind = direct | rate | poisson | latency | sequence; steps = T; gain; threshold
    [[layers]]                 # type = dense | recurrent | conv2d; size; neuron = "tanh" or a table
    [train]                    # epochs, batch_size, lr, optimizer, momentum, weight_decay, ...
    [decor]                    # input decorrelation (enabled, lr, kappa, ...; neurolearn.decorrelation)
    [data_options]             # keyword options of the dataset loader (train_limit, ...)
    [rules.anp]                # per-rule overrides: train keys go to [train], others to the rule
    [rules.anp.decor]          # per-rule [decor] entries
    [rules.anp.set]            # per-rule dotted-path overrides, like --set ("model.layers.0.init" = "...")

The resolved run configuration is one plain dict (saved as ``config`` in metrics.json, all
that is needed to rerun)::

    {"model": {...the model file...}, "data": {"name", "options"}, "rule": {"name", "params"},
     "train": {...every TRAIN key...}, "decor": {...every DECOR key...}}

``--set key=value`` overrides any entry by its dotted path (``train.lr=0.1``,
``rule.params.sigma=1e-3``, ``model.layers.0.size=256``, ``decor.enabled=true``); the value
is parsed as TOML (numbers, booleans, strings, lists) and falls back to a plain string.

**The schema** (:data:`MODEL_SCHEMA`, :data:`ENCODER_SCHEMA`, :data:`LAYER_SCHEMAS`,
:data:`TRAIN_SCHEMA`, :data:`DECOR_SCHEMA`, :data:`RUN_SCHEMA`) is the one home of every
section's keys, types, ranges and defaults. Every table is checked by :func:`check_table`:
an unknown key is a :class:`ConfigError` naming the nearest valid key; a boolean where a
number belongs, a number out of range, a string of the wrong kind are errors. Neuron tables
(``neuron = {model = "lif", ...}``) are checked by the neuron model, rule parameters by
``make_rule``; this module passes them through.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from neurolearn.errors import ConfigError, expect_number, nearest, unknown_key, unknown_name

_REQUIRED = object()
SEED_LIMIT = 2**63


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default and allowed range.

    ``kind`` is ``int``, ``number`` (int or float, never bool), ``bool``, ``str``, ``table``,
    ``list`` or ``any``; ``lo``/``hi`` bound numbers (``lo_open``/``hi_open``: strict);
    ``choices`` lists the valid strings; ``check`` is an extra test ``check(where, value)``
    that raises :class:`ConfigError`; ``default`` is filled in when the key is absent
    (``_REQUIRED``: the key must be given; ``None``: absent stays absent).
    """

    kind: str
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    check: Callable[[str, Any], None] | None = None
    doc: str = ""


def _range_text(key: Key) -> str:
    def num(v: float) -> str:
        return "2**63" if v == SEED_LIMIT else f"{v:g}"

    if key.lo is not None and key.hi is not None:
        return f"in {'(' if key.lo_open else '['}{num(key.lo)}, {num(key.hi)}{')' if key.hi_open else ']'}"
    if key.lo is not None:
        return f"{'>' if key.lo_open else '>='} {num(key.lo)}"
    return f"{'<' if key.hi_open else '<='} {num(key.hi)}"


def check_value(where: str, value: Any, key: Key) -> None:
    """Raise :class:`ConfigError` unless ``value`` fits ``key`` (``where`` names it, e.g. ``train.lr``)."""
    kind = key.kind
    if kind in ("int", "number"):
        expect_number(where, value, integer=kind == "int")
        if isinstance(value, float) and not math.isfinite(value):  # inf passes lo/hi checks but is no setting
            raise ConfigError(f"{where} must be a finite number, got {value}")
        too_low = key.lo is not None and (value <= key.lo if key.lo_open else value < key.lo)
        too_high = key.hi is not None and (value >= key.hi if key.hi_open else value > key.hi)
        if too_low or too_high:
            note = f" ({key.doc})" if key.doc else ""
            raise ConfigError(f"{where} must be {_range_text(key)}{note}, got {value!r}")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r} ({type(value).__name__})")
    elif kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r} ({type(value).__name__})")
        if key.choices is not None and value not in key.choices:
            guess = nearest(value, key.choices)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise ConfigError(f"{where}: unknown value {value!r}{hint}; valid: {', '.join(key.choices)}")
    elif kind == "table":
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r} ({type(value).__name__})")
    elif kind == "list":
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r} ({type(value).__name__})")
    if key.check is not None:
        key.check(where, value)


def check_table(where: str, table: Any, schema: dict[str, Key], *, fill: bool = True) -> dict[str, Any]:
    """A copy of ``table`` checked against ``schema``, with the schema's defaults filled in (``fill``).

    An unknown key raises :class:`ConfigError` naming the nearest valid key; a missing
    required key and every wrong type or range raise one too. ``where`` names the table in
    messages (``train``, ``model.layers.0``, ``model file x.toml [encoder]``).
    """
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table, got {table!r} ({type(table).__name__})")
    for name in table:
        if name not in schema:
            raise unknown_key(where.rstrip(":") or "config", name, schema)
    out = dict(table)
    for name, key in schema.items():
        if name in table:
            check_value(join(where, name), table[name], key)
        elif key.default is _REQUIRED:
            raise ConfigError(f"{where.rstrip(':') or 'config'}: the key {name!r} is required")
        elif fill and key.default is not None:
            out[name] = list(key.default) if isinstance(key.default, list) else key.default
    return out


def join(where: str, name: str | int) -> str:
    """The dotted name of entry ``name`` of table ``where`` (``where`` ending in ``:`` is a file)."""
    if not where:
        return str(name)
    return f"{where} {name}" if where.endswith(":") else f"{where}.{name}"


def defaults(schema: dict[str, Key]) -> dict[str, Any]:
    """The defaults of a schema's optional keys."""
    return {k: key.default for k, key in schema.items() if key.default is not None and key.default is not _REQUIRED}


# ---------------------------------------------------------------------------- extra checks
def _positive_int_list(where: str, value: Any) -> None:
    if not (isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                      for v in value)):
        raise ConfigError(f"{where} must be a list of positive integers (the sample shape), got {value!r}")


def _positive_number_list(where: str, value: Any) -> None:
    if not (isinstance(value, list) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in value)):
        raise ConfigError(f"{where} must be a non-empty list of positive numbers, got {value!r}")


def _device(where: str, value: str) -> None:
    if value not in ("cpu", "cuda") and not (value.startswith("cuda:") and value[5:].isdigit()):
        raise ConfigError(f"{where} must be cpu, cuda or cuda:N, got {value!r}")


def _neuron(where: str, value: Any) -> None:
    if not isinstance(value, (str, dict)):
        raise ConfigError(f"{where} must be a neuron name (\"tanh\") or a table ({{model = \"lif\", ...}}), "
                          f"got {value!r} ({type(value).__name__})")


def _decor_layers(where: str, value: Any) -> None:
    ok = value == "all" or (isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                                            for i in value))
    if not ok:
        raise ConfigError(f"{where} must be \"all\" or a list of layer indices, got {value!r}")


def _subsample(where: str, value: Any) -> None:
    if isinstance(value, int) and value < 1:
        raise ConfigError(f"{where} must be a share in (0, 1] or a row count >= 1, got {value!r}")
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise ConfigError(f"{where} must be a share in (0, 1] or a row count >= 1, got {value!r}")


def _set_table(where: str, value: dict[str, Any]) -> None:
    for path in value:
        if path.split(".", 1)[0] not in RUN_SCHEMA:
            raise ConfigError(f"{where}: {path!r} must start with one of {', '.join(RUN_SCHEMA)}")


# ---------------------------------------------------------------------------- the schema
TRAIN_SCHEMA: dict[str, Key] = {
    "epochs": Key("int", 10, lo=1),
    "batch_size": Key("int", 64, lo=0, doc="0 = the whole training set"),
    "lr": Key("number", 1e-3, lo=0, lo_open=True),
    "optimizer": Key("str", "adam", choices=("sgd", "adam")),
    "momentum": Key("number", 0.0, lo=0),
    "beta1": Key("number", 0.9, lo=0, hi=1, hi_open=True,
                 doc="Adam's first-moment decay; higher: longer averaging of noisy estimates"),
    "beta2": Key("number", 0.999, lo=0, hi=1, hi_open=True, doc="Adam's second-moment decay"),
    "weight_decay": Key("number", 0.0, lo=0),
    "seed": Key("int", 0, lo=0, hi=SEED_LIMIT, hi_open=True),
    "device": Key("str", "cpu", check=_device),
    "precision": Key("str", "fp32", choices=("fp32", "bf16"),
                     doc="bf16: the training step's matrix products under bfloat16 autocast (every rule, BPTT "
                         "too); weights, state and optimizer stay fp32"),
    "exact_sums": Key("bool", False,
                      doc="local rules form their batch sums in float64 and the update seam rounds the (all-reduced) "
                          "sum to the weights' dtype once: W processes train what one process trains "
                          "(neurolearn.learning.grads); costs the weight-gradient products in float64"),
    "eval_batch_size": Key("int", 1000, lo=1),
    "lr_decay": Key("number", 1.0, lo=0, lo_open=True,
                    doc="per-epoch factor: epoch e trains with lr * lr_decay**(e-1); 1.0 = constant"),
    "average": Key("number", 0.0, lo=0, hi=1, hi_open=True,
                   doc="weight averaging: evaluate and keep the EMA of the weights, decay per step; 0 = off"),
}

# The [decor] table: ``enabled`` plus the keyword arguments of neurolearn.decorrelation.Decorrelation
# (whose signature carries the same defaults; a test keeps the two equal) and ``layers``.
DECOR_SCHEMA: dict[str, Key] = {
    "enabled": Key("bool", False),
    "lr": Key("number", 1e-3, lo=0, doc="eta_R"),
    "kappa": Key("number", 0.5, lo=0, hi=1, doc="whitening weight: 0 = decorrelate only, 1 = unit variances only"),
    "centring": Key("bool", True),
    "momentum": Key("number", 0.1, lo=0, hi=1),
    "subsample": Key("number", 1.0, check=_subsample),
    "lower_triangular": Key("bool", False),
    "max_gain": Key("number", 1e3, lo=0, lo_open=True),
    "min_variance": Key("number", 1e-2, lo=0),
    "layers": Key("any", "all", check=_decor_layers),
}

ENCODER_SCHEMA: dict[str, Key] = {
    "kind": Key("str", "direct", choices=("direct", "rate", "poisson", "latency", "sequence")),
    "steps": Key("int", 1, lo=1),
    "gain": Key("number", 1.0, lo=0),
    "threshold": Key("number", 0.01),
}

# The [env] table of a reinforcement-learning model (neurolearn.rl): the gymnasium environment, the
# observation encoding, the return and the episode budget.
ENV_SCHEMA: dict[str, Key] = {
    "name": Key("str", "CartPole-v1", doc="gymnasium environment id"),
    "steps": Key("int", 5, lo=1, doc="network (simulation) steps per environment step, each dt long"),
    "obs_scale": Key("list", [2.4, 3.0, 0.21, 3.0], check=_positive_number_list,
                     doc="observation scale per dimension (clip at +-clip after)"),
    "clip": Key("number", 2.0, lo=0, lo_open=True, doc="|observation / scale| is clipped to this"),
    "gain": Key("number", 1.0, lo=0, lo_open=True, doc="input current per unit of scaled observation"),
    "gamma": Key("number", 0.99, lo=0, hi=1, doc="discount of the return"),
    "episodes": Key("int", 1000, lo=1, doc="training budget in episodes"),
    "solve_window": Key("int", 100, lo=1, doc="solved: mean return over this many consecutive episodes"),
    "solve_return": Key("number", 475.0, doc="... at least this (CartPole-v1's reward_threshold)"),
    "stop_when_solved": Key("bool", True),
}

LAYER_TYPES = ("dense", "recurrent", "conv2d")
_COMMON_LAYER: dict[str, Key] = {
    "type": Key("str", "dense", choices=LAYER_TYPES),
    "neuron": Key("any", None, check=_neuron),  # checked by the neuron model itself
    "bias": Key("bool", True),
    "init": Key("str", "default"),
    "init_gain": Key("number", 1.0, lo=0),
}
LAYER_SCHEMAS: dict[str, dict[str, Key]] = {
    "dense": {**_COMMON_LAYER, "size": Key("int", _REQUIRED, lo=1)},
    "recurrent": {**_COMMON_LAYER, "size": Key("int", _REQUIRED, lo=1),
                  "recurrent_init": Key("str", "orthogonal"), "recurrent_gain": Key("number", 1.0, lo=0)},
    "conv2d": {**_COMMON_LAYER, "channels": Key("int", _REQUIRED, lo=1), "kernel": Key("int", _REQUIRED, lo=1),
               "stride": Key("int", 1, lo=1), "padding": Key("int", 0, lo=0), "pool": Key("int", 1, lo=1),
               "pool_mode": Key("str", "max", choices=("max", "avg", "sum"),
                                doc="avg/sum: pooling NIR can express (spiking conv nets that go to NIR)")},
}

MODEL_SCHEMA: dict[str, Key] = {
    "name": Key("str"),
    "description": Key("str"),
    "data": Key("str"),
    "dt": Key("number", 1e-3, lo=0, lo_open=True, doc="seconds"),
    "decode": Key("str", "last", choices=("last", "mean", "sum", "max", "all")),
    "decode_window": Key("int", lo=1, doc="decode mean/sum/max over the last K steps only (unset: all steps)"),
    "input": Key("list", check=_positive_int_list),
    "default_rule": Key("str"),
    "encoder": Key("table"),
    "layers": Key("list", _REQUIRED),
    "data_options": Key("table"),
    "env": Key("table"),  # reinforcement learning: the environment loop (ENV_SCHEMA, neurolearn.rl)
    # only in model files: resolve_config moves these into the run's train, rule and decor sections
    "train": Key("table"),
    "rules": Key("table"),
    "decor": Key("table"),
}
FILE_ONLY = ("train", "rules", "decor")

RUN_SCHEMA: dict[str, Key] = {
    "model": Key("table", _REQUIRED),
    "data": Key("table", _REQUIRED),
    "rule": Key("table", _REQUIRED),
    "train": Key("table", _REQUIRED),
    "decor": Key("table", {}),  # absent in configs saved before decorrelation existed
}
DATA_SCHEMA: dict[str, Key] = {"name": Key("str", _REQUIRED), "options": Key("table", {})}
RULE_SCHEMA: dict[str, Key] = {"name": Key("str", _REQUIRED), "params": Key("table", {})}
RULE_TABLE_EXTRA: dict[str, Key] = {"decor": Key("table"), "set": Key("table", check=_set_table)}

# Defaults, derived from the schema (kept under their old names for callers).
TRAIN_KEYS: dict[str, Any] = defaults(TRAIN_SCHEMA)
DECOR_DEFAULTS: dict[str, Any] = defaults(DECOR_SCHEMA)
OPTIMIZERS = TRAIN_SCHEMA["optimizer"].choices


# ---------------------------------------------------------------------------- section checks
def check_layers(where: str, layers: Any) -> list[dict[str, Any]]:
    """Every ``[[layers]]`` table checked against its type's schema, defaults filled in."""
    if not (isinstance(layers, list) and layers and all(isinstance(s, dict) for s in layers)):
        raise ConfigError(f"{where} must be a non-empty list of layer tables ([[layers]] in a model file), "
                          f"got {layers!r}")
    return [check_layer(join(where, i), spec) for i, spec in enumerate(layers)]


def check_layer(where: str, spec: Any) -> dict[str, Any]:
    """One layer table checked against its type's schema (:data:`LAYER_SCHEMAS`), defaults filled in."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a layer table, got {spec!r} ({type(spec).__name__})")
    kind = spec.get("type", "dense")
    if kind not in LAYER_TYPES:
        raise unknown_name("layer type", kind, LAYER_TYPES) if isinstance(kind, str) else \
            ConfigError(f"{join(where, 'type')} must be a string, got {kind!r}")
    for name in spec:
        if name not in LAYER_SCHEMAS[kind]:
            raise unknown_key(f"{where} ({kind} layer)", name, LAYER_SCHEMAS[kind])
    return check_table(where, spec, LAYER_SCHEMAS[kind])


def check_model(model: Any, where: str = "model", *, fill: bool = True, file: bool = False) -> dict[str, Any]:
    """The model section (network description), checked; with ``fill`` the defaults of ``dt``,
    ``decode``, ``[encoder]`` and every layer are filled in (what :func:`neurolearn.build.build_network`
    reads). ``file``: a model file, which may also hold ``[train]``, ``[rules.*]`` and ``[decor]``."""
    schema = MODEL_SCHEMA if file else {k: v for k, v in MODEL_SCHEMA.items() if k not in FILE_ONLY}
    out = check_table(where, model, schema, fill=fill)
    layers = check_layers(join(where, "layers"), out["layers"])
    if fill:
        out["layers"] = layers
    enc = check_table(join(where, "encoder"), out.get("encoder", {}), ENCODER_SCHEMA, fill=fill)
    if fill or "encoder" in out:
        out["encoder"] = enc
    if "decor" in out:
        check_table(join(where, "decor"), out["decor"], DECOR_SCHEMA, fill=False)
    if "env" in out:
        out["env"] = check_table(join(where, "env"), out["env"], ENV_SCHEMA, fill=fill)
    if "train" in out:
        check_table(join(where, "train"), out["train"], TRAIN_SCHEMA, fill=False)
    for rule, table in out.get("rules", {}).items():
        here = join(where, f"rules.{rule}")
        check_value(here, table, Key("table"))
        for name, value in table.items():
            if name in TRAIN_SCHEMA:
                check_value(f"{here}.{name}", value, TRAIN_SCHEMA[name])
            elif name in RULE_TABLE_EXTRA:
                check_value(f"{here}.{name}", value, RULE_TABLE_EXTRA[name])
                if name == "decor":
                    check_table(f"{here}.decor", value, DECOR_SCHEMA, fill=False)
    return out


def check_data(data: Any, where: str = "data") -> dict[str, Any]:
    """The data section: a dataset name and its loader's options (unknown options named with the
    nearest valid one). Names of the form ``module:function`` (a user's loader) pass their options
    through; an unknown name is left to :func:`neurolearn.data.load_dataset` (it lists the known ones)."""
    out = check_table(where, data, DATA_SCHEMA)
    options = out["options"]
    from neurolearn.data import DATASETS, dataset_options

    key = out["name"].strip().lower().replace("_", "-")
    if ":" not in out["name"] and key in DATASETS:
        valid = {**dataset_options(key), "root": None}
        for name, value in options.items():
            if name not in valid:
                raise unknown_key(f"{where}.options (dataset {key!r})", name, valid)
        if "root" in options:
            check_value(f"{where}.options.root", options["root"], Key("str"))
    return out


def check_config(cfg: Any) -> dict[str, Any]:
    """A resolved run configuration checked section by section; the ``train`` and ``decor``
    defaults are filled in (also for configs saved by older versions). Returns a new dict."""
    out = check_table("", cfg, RUN_SCHEMA)
    out["model"] = check_model(out["model"], fill=False)
    out["data"] = check_data(out["data"])
    out["rule"] = check_table("rule", out["rule"], RULE_SCHEMA)
    out["train"] = check_table("train", out["train"], TRAIN_SCHEMA)
    out["decor"] = check_table("decor", out["decor"], DECOR_SCHEMA)
    return out


# ---------------------------------------------------------------------------- model files
def models_dir() -> Path:
    """The folder of ready model definitions (``models/`` at the project's root)."""
    return Path(__file__).resolve().parent.parent / "models"


def available_models() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.toml"))


def load_model_file(name_or_path: str) -> dict[str, Any]:
    """Read and check a model definition by name (``mlp-digits``) or path (``my/model.toml``).

    Returns the file's tables as written (no defaults filled in), plus ``name`` (the file's stem
    if absent). Unknown keys, wrong types and ranges are :class:`ConfigError`.
    """
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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"model file {path} is not UTF-8 text (byte {exc.start}); TOML files must be UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"model file {path} cannot be read: {exc.strerror or exc}") from None
    cfg.setdefault("name", path.stem)
    if "data" not in cfg:
        raise ConfigError(f"model file {path} has no 'data' entry")
    if "layers" not in cfg:
        raise ConfigError(f"model file {path} has no [[layers]]")
    check_model(cfg, f"model file {path}:", fill=False, file=True)
    return cfg


# ---------------------------------------------------------------------------- overrides
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


# ---------------------------------------------------------------------------- resolution
def resolve_config(
    model: str = "mlp-digits",
    rule: str | None = None,
    data: str | None = None,
    overrides: list[str] | None = None,
    data_dir: str | None = None,
    **train_flags: Any,
) -> dict[str, Any]:
    """Merge the schema's defaults, the model file, its per-rule table ``[rules.<rule>]``,
    command-line flags (``train_flags``: TRAIN keys, ``None`` = not given), ``data_dir``
    (``data.options.root``) and ``--set`` overrides, in that order; the result is checked
    by :func:`check_config`."""
    mcfg = load_model_file(model)
    rule = rule or mcfg.get("default_rule", "bp")
    train = dict(TRAIN_KEYS)
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
            if key not in TRAIN_SCHEMA:
                raise unknown_key("training option", key, TRAIN_SCHEMA)
            check_value(f"train.{key}", value, TRAIN_SCHEMA[key])
            train[key] = value
    cfg = {
        "model": {k: v for k, v in mcfg.items() if k not in FILE_ONLY},
        "data": {"name": data or mcfg["data"], "options": dict(mcfg.get("data_options", {}))},
        "rule": {"name": rule, "params": rule_params},
        "train": train,
        "decor": decor,
    }
    if data_dir is not None:
        cfg["data"]["options"]["root"] = str(data_dir)
    sets = [(f"[rules.{rule}.set] {k}", k, v) for k, v in rule_sets.items()]
    sets += [(f"--set {k}", k, v) for k, v in parse_overrides(overrides)]
    for origin, key, value in sets:
        head = key.split(".", 1)[0]
        if head not in cfg:
            guess = nearest(head, cfg)
            raise ConfigError(
                f"{origin}: the key must start with one of {', '.join(cfg)}"
                f"{f' (did you mean {guess!r}?)' if guess else ''} (e.g. train.lr, rule.params.sigma, "
                "decor.enabled, model.layers.0.size)"
            )
        set_path(cfg, key, value)
    return check_config(cfg)


def validate_train(train: dict[str, Any]) -> None:
    """Check a train section (unknown keys, types, ranges); kept for callers of the old name."""
    check_table("train", train, TRAIN_SCHEMA, fill=False)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).replace(" ", "")


def describe(cfg: dict[str, Any]) -> str:
    """The resolved settings of a run in a few lines: the rule's parameters from the model file,
    every train value (marking those that differ from the schema's defaults) and decorrelation."""
    rule = cfg["rule"]
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in rule["params"].items()) or "the rule's defaults"
    train = ", ".join(f"{k}={_fmt(v)}{'' if TRAIN_KEYS.get(k) == v else '*'}" for k, v in cfg["train"].items())
    decor = cfg["decor"]
    dec = ("on: " + ", ".join(f"{k}={_fmt(v)}" for k, v in decor.items() if k != "enabled")
           if decor.get("enabled") else "off")
    return (f"rule {rule['name']}: {params}\n"
            f"train: {train}   (* = not the default)\n"
            f"decor: {dec}\n"
            f"data: {cfg['data']['name']} {cfg['data']['options'] or ''}".rstrip())
