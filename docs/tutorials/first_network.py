"""Your first network: a two-layer LIF network trained with ANP on your own data.

Run it from any folder: ``python first_network.py``. It writes ``runs/first`` there, a run
directory that ``neurolearn eval runs/first`` reads (with this folder on ``PYTHONPATH``).
About 10 s on one CPU core.
"""

import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

HERE = Path.cwd()

# 1. Your data: a function returning (train, test) torch datasets of (x, y) samples.
#    neurolearn finds it by "module:function", so it lives in an importable module.
(HERE / "mydata.py").write_text('''
import torch
from torch.utils.data import TensorDataset


def make(n_train=512, n_test=128, classes=4, features=16):
    """Random data with a learnable rule: class k raises features 4k..4k+3."""
    g = torch.Generator().manual_seed(0)

    def split(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = 0.3 * torch.rand(n, features, generator=g)
        for k in range(classes):
            x[y == k, 4 * k:4 * k + 4] += 0.6
        return TensorDataset(x, y)

    return split(n_train), split(n_test)
''')
sys.path.insert(0, str(HERE))

# 2. Your network: a model file (TOML) says what neurolearn builds; SI units, dt explicit.
(HERE / "two_layer_lif.toml").write_text('''
description = "two-layer LIF network on mydata"
data = "mydata:make"        # module:function returning (train, test)
dt = 1e-3                   # s
decode = "mean"             # the readout's mean membrane over time = the logits
input = [16]

[encoder]
kind = "rate"               # P(spike per step) = input value
steps = 20

[[layers]]
type = "dense"
size = 32
neuron = { model = "lif", tau_mem = 20e-3, threshold = 1.0, reset = "value" }

[[layers]]
type = "dense"
size = 4                    # one readout unit per class (checked against the data)
neuron = { model = "li", tau = 20e-3 }

[train]
epochs = 5
batch_size = 32
optimizer = "adam"
lr = 1e-2
''')

# 3. Train with activity-based node perturbation (anp) through the Python API.
from neurolearn.config import describe, resolve_config  # noqa: E402
from neurolearn.runs import build_run  # noqa: E402
from neurolearn.training import Trainer  # noqa: E402

torch.set_num_threads(1)
config = resolve_config(model=str(HERE / "two_layer_lif.toml"), rule="anp", seed=0)
print(describe(config))
run = build_run(config)
metrics = Trainer(run, HERE / "runs" / "first", progress=False).fit()
print("test accuracy:", round(metrics["final"]["test_accuracy"], 3))
print("firing rate of layer 0 per epoch:", [round(e["rate_0"], 3) for e in metrics["epochs"]])

# 4. The run directory is an ordinary one: `neurolearn eval runs/first` (mydata.py on the path)
from neurolearn.cli import main  # noqa: E402

assert main(["eval", str(HERE / "runs" / "first")]) == 0
assert metrics["final"]["test_accuracy"] > 0.5  # chance is 0.25
