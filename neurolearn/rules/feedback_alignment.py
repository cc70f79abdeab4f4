r"""Direct feedback alignment (DFA; Nøkland 2016): the output error broadcast to every hidden
layer through a fixed random matrix.

The error-driven sibling of DRTP (:mod:`neurolearn.rules.target_projection`, which shares
its projections, traces and surrogate-free spike factors: :mod:`neurolearn.learning`): hidden layer ``k`` gets

.. math::  \delta_k[t] = (e[t]\, B_k) \odot \psi_k[t], \qquad
           \nabla W_k = \sum_t \delta_k[t]^\top \bar x_k[t],

with ``e[t] = ∂⟨L⟩_B/∂out[t]`` the output error through the model's decode, ``B_k ∈ R^{C×n_k}``
fixed and random (``projection``, ``scale``; conv layers: ``B_k`` maps the error to the
convolution output's shape), ``ψ_k = f'(z_k)`` (or ``spike_derivative`` for LIF units) and
``x̄_k`` the pre-synaptic trace. The output layer uses its true error. With ``B_k`` equal to
the next layer's forward weights ``W_{k+1}`` of a one-hidden-layer net this is backprop.

Needs per synapse: pre-synaptic trace, post-synaptic ``ψ`` and a broadcast vector (the
output error through fixed random feedback); no weight transport. It is update-locked: the
hidden layers wait for the output error, so this implementation keeps the hidden layers'
traces of the sequence until it ends (an online version would keep eligibility traces).
"""

from __future__ import annotations

import torch

from neurolearn.decorrelation import has_decorrelation
from neurolearn.learning.feedback import FeedbackOptions, FixedFeedback, output_error, project
from neurolearn.learning.grads import add_update, write_grads
from neurolearn.learning.traces import LayerTracer, Signals
from neurolearn.network import LayerRecord, Network, Record, stack_steps
from neurolearn.objectives import Objective
from neurolearn.rules.base import GradientRule, Requirements, StepOutput


class DFA(FixedFeedback, GradientRule):
    """Direct feedback alignment; see the module docstring."""

    name = "dfa"
    summary = "direct feedback alignment: the output error broadcast through fixed random matrices"
    requires = Requirements(pre=True, post=True, broadcast_vector=True)

    Options = FeedbackOptions

    def estimate_gradients(self, model: Network, x: torch.Tensor, y: torch.Tensor,
                           objective: Objective) -> StepOutput:
        self.check_setup()
        model.check_input(x)
        steps, batch = x.shape[0], x.shape[1]
        state = model.init_state(batch, x.device, x.dtype)
        tracers = [LayerTracer(layer, self.spike) for layer in model.layers]
        signals: list[list[Signals]] = [[] for _ in model.layers]
        inputs: list[list[torch.Tensor]] = [[] for _ in model.layers]  # kept for the decorrelation update
        decorrelates = has_decorrelation(model)
        outputs = []
        with torch.no_grad():
            for t in range(steps):
                h = x[t]
                for k, layer in enumerate(model.layers):
                    h, state[k], taps = layer.step(h, state[k])
                    signals[k].append(tracers[k].update(taps))
                    if decorrelates:
                        inputs[k].append(taps.input)
                outputs.append(h)
            e, loss, pred = output_error(model, torch.stack(outputs), y, objective)
            for k, layer in enumerate(model.layers):
                grads: dict[str, torch.Tensor] = {}
                last = k == len(model.layers) - 1
                for t, sig in enumerate(signals[k]):
                    err = e[t] if last else project(e[t], self.matrices[k])
                    add_update(layer, err * sig.deriv, sig, grads, 1.0)
                write_grads(layer, grads)
        record = None
        if decorrelates:  # the update seam updates R from the record's inputs
            record = Record(stack_steps(outputs), [LayerRecord(stack_steps(i), None, None) for i in inputs])
        return StepOutput(loss, pred, record)
