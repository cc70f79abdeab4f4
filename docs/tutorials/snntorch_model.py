"""Your own snnTorch model and DataLoader, trained in place with ANP and with DRTP.

``wrap_snntorch`` reads the model and returns a neurolearn network that holds the very same
``nn.Parameter`` objects: a neurolearn rule trains the network and the snnTorch model changes
with it. About 10 s on one CPU core.
"""

import snntorch as snn
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from neurolearn import Encoder
from neurolearn.interop import wrap_snntorch
from neurolearn.objectives import Objective
from neurolearn.rules import make_rule

torch.set_num_threads(1)

# A tiny task: which of three groups of inputs fires most.
g = torch.Generator().manual_seed(0)
y_all = torch.randint(0, 3, (300,), generator=g)
x_all = torch.full((300, 24), 0.05)
for c in range(3):
    x_all[y_all == c, 8 * c:8 * c + 8] = 0.5
loader = DataLoader(TensorDataset(x_all[:240], y_all[:240]), batch_size=20, shuffle=True,
                    generator=torch.Generator().manual_seed(1))
x_test, y_test = x_all[240:], y_all[240:]


def snntorch_model() -> nn.Sequential:
    """snnTorch's tutorial style, with reset_mechanism="zero": the wrap is then exact (a
    subtract reset is refused, because snnTorch's subtraction spikes differently)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(24, 32), snn.Leaky(beta=0.9, reset_mechanism="zero"),
                         nn.Linear(32, 3), snn.Leaky(beta=0.9, reset_mechanism="none"))


def snntorch_accuracy(model: nn.Sequential, x_spikes: torch.Tensor, y: torch.Tensor) -> float:
    """snnTorch's own forward (explicit state), decoded by the mean readout membrane."""
    lin1, lif1, lin2, lif2 = model
    mem1 = torch.zeros(x_spikes.shape[1], 32)
    mem2 = torch.zeros(x_spikes.shape[1], 3)
    total = 0
    with torch.no_grad():
        for t in range(x_spikes.shape[0]):
            spk, mem1 = lif1(lin1(x_spikes[t]), mem1)
            _, mem2 = lif2(lin2(spk), mem2)
            total = total + mem2
    return float((total.argmax(-1) == y).float().mean())


encoder = Encoder("rate", steps=20)
x_test_spikes = encoder(x_test, torch.Generator().manual_seed(2))
objective = Objective("classification")

for rule_name, params in (("anp", {}), ("drtp", {})):
    model = snntorch_model()
    net = wrap_snntorch(model, dt=1e-3, readout="mem", encoder=encoder, decode="mean")
    assert net.layers[0].weight is model[0].weight  # the same parameters
    rule = make_rule(rule_name, **params)
    gen = torch.Generator().manual_seed(3)
    rule.setup(net, objective, gen)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = snntorch_accuracy(model, x_test_spikes, y_test)
    for epoch in range(3):
        for xb, yb in loader:  # your DataLoader, encoded to [T, B, 24] spikes
            rule.train_step(net, net.encode(xb, gen), yb, objective, optimizer)
    after = snntorch_accuracy(model, x_test_spikes, y_test)
    # the wrapped network and snnTorch's forward are the same network
    with torch.no_grad():
        ours = float((net.decode_output(net(x_test_spikes)).argmax(-1) == y_test).float().mean())
    print(f"{rule_name}: snnTorch model's test accuracy {before:.2f} -> {after:.2f} (neurolearn's forward: {ours:.2f})")
    assert ours == after and after > 0.8
