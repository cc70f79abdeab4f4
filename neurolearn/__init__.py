"""neurolearn: rate and spiking neural networks trained with local, neuromorphic-compatible rules.

Layers of the package (imports go one way, top to bottom):

- :mod:`neurolearn.cli`, ``experiments/``: entry points;
- :mod:`neurolearn.training`: the trainer (epochs, evaluation, metrics, checkpoints);
- :mod:`neurolearn.rules`: learning rules (gradient estimators and solvers);
- :mod:`neurolearn.network`, :mod:`neurolearn.layers`: the simulation layer;
- :mod:`neurolearn.neurons`: neuron models on one contract (parameters, state, pure step);
- :mod:`neurolearn.data`, :mod:`neurolearn.encoders`: datasets, tasks, spike encoders;
- edges (optional extras, imported lazily): NIR export, Brian2 backend, snnTorch interop.
"""

from neurolearn.encoders import Encoder
from neurolearn.errors import NeurolearnError
from neurolearn.layers import Conv2d, Dense, Taps
from neurolearn.network import Network, Record
from neurolearn.neurons import (AdExParams, ALIFParams, IzhikevichParams, LIFParams, LIParams, Neuron,
                                RateParams)

__version__ = "0.1.0"

__all__ = ["Encoder", "NeurolearnError", "Conv2d", "Dense", "Taps", "Network", "Record",
           "Neuron", "LIFParams", "LIParams", "RateParams", "ALIFParams", "IzhikevichParams", "AdExParams",
           "__version__"]
