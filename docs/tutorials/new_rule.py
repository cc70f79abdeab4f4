r"""Writing a new learning rule on the update seam: a local delta rule for the readout.

A rule *computes* updates into ``.grad`` and hands them to the seam, ``updater.apply(...)``
(:class:`neurolearn.updates.Updater`), which drops frozen parameters' gradients, synchronises
(distributed runs), steps the optimizer, clears ``.grad`` and updates decorrelation. The rule
never touches the weights itself. About 5 s.

The delta rule trains the linear readout ``p = W h + b`` of a network whose hidden layers stay
fixed (random features): for the cross-entropy loss, per sample,

    ΔW ∝ −(softmax(p) − onehot(y)) hᵀ,     Δb ∝ −(softmax(p) − onehot(y))

which needs only the pre-synaptic ``h``, the post-synaptic output and the target: local.
"""

import torch
import torch.nn.functional as F

from neurolearn import Dense, Encoder, Network
from neurolearn.neurons import neuron_from_config
from neurolearn.objectives import Objective
from neurolearn.rules import make_rule
from neurolearn.rules.base import Requirements, Rule, StepOutput


class ReadoutDelta(Rule):
    """Delta rule on the last layer; the other layers are not trained."""

    name = "readout-delta"
    summary = "delta rule on a linear readout (hidden layers fixed)"
    requires = Requirements(pre=True, post=True)  # nothing else: a local rule

    def step(self, model, x, y, objective, updater) -> StepOutput:
        with torch.no_grad():
            record = model.run(x, record=("input",))
            pred = model.decode_output(record.output)  # [B, C]
            err = (F.softmax(pred, -1) - F.one_hot(y, pred.shape[-1]).to(pred.dtype)) / y.shape[0]
            h = record.layers[-1].input[-1].reshape(y.shape[0], -1)  # the readout's input, last step
            readout = model.layers[-1]
            readout.weight.grad = err.T @ h  # ∂(mean CE)/∂W, computed locally
            if readout.bias is not None:
                readout.bias.grad = err.sum(0)
        updater.apply(params=[p for p in readout.parameters()], record=record, generator=self.generator)
        return StepOutput(loss=objective.loss(pred, y), pred=pred, record=record)


torch.set_num_threads(1)
torch.manual_seed(0)
net = Network([Dense(16, 64, neuron_from_config("tanh", 1e-3)), Dense(64, 4, None)],
              encoder=Encoder("direct", steps=1), decode="last")
g = torch.Generator().manual_seed(1)
x = torch.rand(256, 16, generator=g)
y = x.reshape(256, 4, 4).sum(-1).argmax(-1)
objective = Objective("classification")

# 1. The rule's update equals backprop's for the readout (the check every new rule deserves).
rule, bp = ReadoutDelta(), make_rule("bp")
xe = net.encode(x[:32])
with torch.no_grad():
    record = net.run(xe, record=("input",))
    pred = net.decode_output(record.output)
    err = (F.softmax(pred, -1) - F.one_hot(y[:32], 4).float()) / 32
    ours = err.T @ record.layers[-1].input[-1]
net.zero_grad()
objective.loss(net.decode_output(net(xe)), y[:32]).mean().backward()
print("readout update vs backprop's: max difference", float((ours - net.layers[-1].weight.grad).abs().max()))
assert torch.allclose(ours, net.layers[-1].weight.grad, atol=1e-6)
net.zero_grad()

# 2. Train with it like with any rule: a plain optimizer is wrapped in the seam.
rule.setup(net, objective, g)
hidden_before = net.layers[0].weight.detach().clone()
opt = torch.optim.Adam(net.parameters(), lr=2e-2)
for epoch in range(30):
    out = rule.train_step(net, net.encode(x), y, objective, opt)
accuracy = float((out.pred.argmax(-1) == y).float().mean())
print(f"train accuracy after 30 steps: {accuracy:.2f}; hidden weights unchanged:",
      torch.equal(hidden_before, net.layers[0].weight))
assert accuracy > 0.6 and torch.equal(hidden_before, net.layers[0].weight)
