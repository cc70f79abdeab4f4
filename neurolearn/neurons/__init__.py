r"""Neuron models: one file each, all on one contract (:class:`~neurolearn.neurons.base.Neuron`).

=================  ==========================  ====================================================
``model``          parameters                  file
=================  ==========================  ====================================================
``rate``           :class:`RateParams`         ``rate.py``: ``h = f(z)``, static or leaky
``lif``            :class:`LIFParams`          ``lif.py``: LIF (reset by subtraction or to a value)
``cuba_lif``       :class:`LIFParams`          ``lif.py``: current-based LIF (``tau_syn`` 5 ms)
``li``             :class:`LIParams`           ``li.py``: leaky-integrator readout
``alif``           :class:`ALIFParams`         ``alif.py``: adaptive-threshold LIF (LSNN, e-prop)
``izhikevich``     :class:`IzhikevichParams`   ``izhikevich.py``: RS, IB, CH, FS regimes
``adex``           :class:`AdExParams`         ``adex.py``: adaptive exponential IF (SI units)
=================  ==========================  ====================================================

A model file picks one with ``neuron = "tanh"`` (an activation name: a static rate unit) or a
table ``neuron = { model = "alif", tau_adapt = 0.2, ... }``; the network's ``dt`` fills in unless
the table sets its own. Unknown keys are refused with the nearest valid one.
"""

from __future__ import annotations

from typing import Any

from neurolearn.errors import ConfigError, unknown_name
from neurolearn.neurons.adex import AdExParams, AdExState
from neurolearn.neurons.alif import ALIFParams, ALIFState
from neurolearn.neurons.base import (SPIKE_DERIVATIVES, SURROGATES, Brian2Neuron, Neuron, NotTranslatable,
                                     check_time_constant, surrogate_spike)
from neurolearn.neurons.izhikevich import REGIMES, IzhikevichParams, IzhikevichState
from neurolearn.neurons.li import LIParams, LIState
from neurolearn.neurons.lif import RESETS, LIFParams, LIFState, cuba_lif
from neurolearn.neurons.rate import (ACTIVATION_RANGES, ACTIVATIONS, RateParams, RateState, activation,
                                     activation_derivative, activation_inverse, rate_expression)

NeuronParams = Neuron  # any neuron model's parameters (the base class of them all)

#: The built-in models by their config name (a plain constant; build your own Neuron and pass it to a layer).
NEURON_MODELS: dict[str, type[Neuron]] = {
    "rate": RateParams,
    "lif": LIFParams,
    "cuba_lif": LIFParams,
    "li": LIParams,
    "alif": ALIFParams,
    "izhikevich": IzhikevichParams,
    "adex": AdExParams,
}


def neuron_from_config(cfg: dict[str, Any] | str | None, dt: float) -> Neuron | None:
    """Build a neuron model from a config entry (``None``: no neurons, a linear layer).

    ``"tanh"`` (any activation name) gives a static rate unit; a model name (``"lif"``) its
    defaults; a table with ``model`` set to a name of :data:`NEURON_MODELS` the full parameter
    set. The network's ``dt`` fills in unless the entry sets its own.
    """
    if cfg is None:
        return None
    if isinstance(cfg, str):
        cfg = {"model": "rate", "activation": cfg} if cfg in ACTIVATIONS else {"model": cfg}
    if not isinstance(cfg, dict):
        raise ConfigError(f"a layer's neuron must be an activation name, a model name or a table "
                          f"{{ model = \"lif\", ... }}, got {cfg!r}")
    cfg = dict(cfg)
    model = cfg.pop("model", "rate")
    if model not in NEURON_MODELS:
        raise unknown_name("neuron model", model, (*NEURON_MODELS, *ACTIVATIONS))
    cls = NEURON_MODELS[model]
    cfg.setdefault("dt", dt)
    if model == "cuba_lif":
        cfg.setdefault("tau_syn", 5e-3)
    try:
        return cls.from_config(cfg)
    except TypeError as exc:  # a wrong argument the dataclass itself rejected
        raise ConfigError(f"bad parameters for neuron model {model!r}: {exc}") from None


__all__ = [
    "Neuron", "NeuronParams", "NotTranslatable", "Brian2Neuron", "NEURON_MODELS", "neuron_from_config",
    "RateParams", "RateState", "LIFParams", "LIFState", "LIParams", "LIState", "ALIFParams", "ALIFState",
    "IzhikevichParams", "IzhikevichState", "AdExParams", "AdExState", "REGIMES", "RESETS", "SURROGATES",
    "SPIKE_DERIVATIVES", "ACTIVATIONS", "ACTIVATION_RANGES", "activation", "activation_derivative",
    "activation_inverse", "rate_expression", "surrogate_spike", "check_time_constant", "cuba_lif",
]
