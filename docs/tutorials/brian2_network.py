"""A trained network in Brian2: the same weights in continuous-time simulation, the same spikes.

Needs the ``brian2`` extra (``pip install -c constraints.txt -e ".[brian2]"``). About 15 s
(Brian2 generates code for the network once).
"""

import torch

from neurolearn import Dense, Encoder, LIFParams, LIParams, Network
from neurolearn.backends.brian2 import run_brian2
from neurolearn.objectives import Objective
from neurolearn.plotting import encode_samples, layer_info, plot_activity
from neurolearn.rules import make_rule

torch.set_num_threads(1)
torch.manual_seed(0)
net = Network([Dense(16, 20, LIFParams(tau_mem=20e-3, dt=1e-3, reset="value")),
               Dense(20, 4, LIParams(tau=20e-3, dt=1e-3))],
              encoder=Encoder("rate", steps=15), decode="mean")

g = torch.Generator().manual_seed(1)
x = torch.rand(64, 16, generator=g)
y = x.reshape(64, 4, 4).sum(-1).argmax(-1)
rule, objective = make_rule("anp"), Objective("classification")
rule.setup(net, objective, g)
opt = torch.optim.Adam(net.parameters(), lr=5e-3)
for _ in range(10):
    rule.train_step(net, net.encode(x, g), y, objective, opt)

# Brian2 simulates in float64: convert the network, encode each sample alike (encode_samples)
net = net.double()
spikes = encode_samples(net, x[:4])
with torch.no_grad():
    torch_record = net.run(spikes)
brian_record = run_brian2(net, spikes, target="numpy")
same = all(torch.equal(a.act, b.act) for a, b in zip(torch_record.layers[:1], brian_record.layers[:1]))
print("hidden spikes, torch:", int(torch_record.layers[0].act.sum()), " Brian2:", int(brian_record.layers[0].act.sum()),
      " identical:", same)
thresholds, units = layer_info(net)
plot_activity(brian_record, "raster-brian2.png", dt=net.dt, backend="brian2", label=int(y[0]),
              thresholds=thresholds, units=units)
assert same
