"""Learning rules. ``RULES`` maps each rule's command-line name to its class (a plain dict)."""

from __future__ import annotations

from neurolearn.errors import ConfigError, unknown_name
from neurolearn.rules.backprop import Backprop
from neurolearn.rules.eprop import EProp
from neurolearn.rules.base import GradientRule, Requirements, Rule, StepOutput
from neurolearn.rules.feedback_alignment import DFA
from neurolearn.rules.perturbation import ActivityNodePerturbation, NodePerturbation, WeightPerturbation
from neurolearn.rules.target_projection import DRTP, TPSGD
from neurolearn.rules.sibp import SemiImplicitBP
from neurolearn.rules.zorb import Zorb

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
    EProp.name: EProp,
}


def make_rule(name: str, **params) -> Rule:
    """Instantiate the rule called ``name`` with its hyper-parameters."""
    if name not in RULES:
        raise unknown_name("rule", name, list(RULES))
    try:
        return RULES[name](**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for rule {name!r}: {exc}") from None


__all__ = ["RULES", "make_rule", "Rule", "GradientRule", "Requirements", "StepOutput", "Backprop", "DFA", "DRTP",
           "TPSGD", "WeightPerturbation", "NodePerturbation", "ActivityNodePerturbation", "Zorb", "SemiImplicitBP"]
