"""Learning rules. ``RULES`` maps each rule's command-line name to its class (a plain dict)."""

from __future__ import annotations

from neurolearn.errors import ConfigError, unknown_name
from neurolearn.rules.backprop import Backprop
from neurolearn.rules.base import GradientRule, Requirements, Rule, StepOutput
from neurolearn.rules.eprop import EProp
from neurolearn.rules.feedback_alignment import DFA
from neurolearn.learning.feedback import FeedbackOptions
from neurolearn.rules.perturbation import (ANPOptions, ActivityNodePerturbation, NodePerturbation,
                                           PerturbationOptions, WeightPerturbation)
from neurolearn.rules.target_projection import DRTP, TPSGD, DRTPOptions, TargetProjectionOptions, TPSGDOptions
from neurolearn.rules.rstdp import RSTDP
from neurolearn.rules.reward import REWARD_RULES
from neurolearn.rules.sibp import SemiImplicitBP, SIBPOptions
from neurolearn.rules.stdp import STDP
from neurolearn.rules.zorb import Zorb, ZorbOptions

RULES: dict[str, type[Rule]] = {
    Backprop.name: Backprop,
    DFA.name: DFA,
    DRTP.name: DRTP,
    TPSGD.name: TPSGD,
    WeightPerturbation.name: WeightPerturbation,
    NodePerturbation.name: NodePerturbation,
    ActivityNodePerturbation.name: ActivityNodePerturbation,
    Zorb.name: Zorb,
    SemiImplicitBP.name: SemiImplicitBP,
    STDP.name: STDP,
    RSTDP.name: RSTDP,
    EProp.name: EProp,
    # learn from an environment's reward (models with an [env] table; neurolearn.rl)
    **{r.name: r for r in REWARD_RULES},
}


def make_rule(name: str, **params) -> Rule:
    """Instantiate the rule called ``name`` with its hyper-parameters (the keyword form of its
    ``Options``: an unknown one is a :class:`ConfigError` naming the nearest valid one)."""
    if name not in RULES:
        raise unknown_name("rule", name, list(RULES))
    try:
        return RULES[name](**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for rule {name!r}: {exc}") from None


__all__ = ["RULES", "make_rule", "Rule", "GradientRule", "Requirements", "StepOutput", "Backprop", "DFA", "DRTP",
           "TPSGD", "WeightPerturbation", "NodePerturbation", "ActivityNodePerturbation", "Zorb", "SemiImplicitBP",
           "PerturbationOptions", "ANPOptions", "FeedbackOptions", "TargetProjectionOptions", "DRTPOptions",
           "TPSGDOptions", "ZorbOptions", "SIBPOptions", "STDP", "RSTDP", "EProp"]
