"""Export a trained network to NIR and run it in snnTorch, spike for spike.

Needs the ``nir`` extra (``pip install -c constraints.txt -e ".[nir]"``). About 5 s.
"""

import nir
import torch
from snntorch.import_nir import import_from_nir

from neurolearn import Dense, Encoder, LIFParams, Network
from neurolearn.export import write
from neurolearn.objectives import Objective
from neurolearn.rules import make_rule

torch.set_num_threads(1)
torch.manual_seed(0)

# A spiking network NIR can express: LIF with reset to a value (NIR has no subtractive reset);
# the readout spikes too (snnTorch's NIR import has no leaky-integrator node), decoded by count.
lif = LIFParams(tau_mem=20e-3, dt=1e-3, threshold=0.5, reset="value")
net = Network([Dense(16, 24, lif, init_gain=2.0), Dense(24, 4, lif, init_gain=2.0)],
              encoder=Encoder("rate", steps=20), decode="sum")

# Train it a little with BPTT (any rule would do).
g = torch.Generator().manual_seed(1)
x = torch.rand(64, 16, generator=g)
y = x.reshape(64, 4, 4).sum(-1).argmax(-1)
rule, objective = make_rule("bp"), Objective("classification")
rule.setup(net, objective, g)
opt = torch.optim.Adam(net.parameters(), lr=5e-3)
for _ in range(20):
    rule.train_step(net, net.encode(x, g), y, objective, opt)

# Export: one file, the graph written for snnTorch's fixed step (1e-4 s; docs/results/nir.md).
write("model.nir", net)
snn_model = import_from_nir(nir.read("model.nir"))

# Run both on the same spikes.
spikes = net.encode(x[:8], torch.Generator().manual_seed(2))
outs, state = [], None
with torch.no_grad():
    for t in range(spikes.shape[0]):
        out, state = snn_model(spikes[t]) if state is None else snn_model(spikes[t], state)
        outs.append(out)
    ours = net.run(spikes).output
print("output spikes, neurolearn:", int(ours.sum()), " snnTorch:", int(torch.stack(outs).sum()),
      " identical:", torch.equal(torch.stack(outs), ours))
assert ours.sum() > 0 and torch.equal(torch.stack(outs), ours)
