"""Backpropagation (through time for temporal networks): the baseline every rule is measured against."""

from __future__ import annotations

from neurolearn.decorrelation import has_decorrelation
from neurolearn.rules.base import GradientRule, Requirements, StepOutput


class Backprop(GradientRule):
    r"""Exact gradients by autograd: ``∂L/∂W`` through layers and, for recurrent or spiking
    networks, through time (BPTT) with snnTorch's surrogate derivative of the spike.

    Needs weight transport and the stored sequence: not local. Memory grows with ``T``.
    """

    name = "bp"
    summary = "backprop / BPTT with surrogate gradients (baseline)"
    requires = Requirements(weight_transport=True, through_time=True)

    def estimate_gradients(self, model, x, y, objective) -> StepOutput:
        # DBP: the decorrelation update reads the layer inputs; only those are kept
        decorrelates = has_decorrelation(model)
        record = model.run(x, record=("input",) if decorrelates else False)
        pred = model.decode_output(record.output)
        loss = objective.loss(pred, y)
        loss.mean().backward()
        return StepOutput(loss.detach(), pred.detach(), record if decorrelates else None)
