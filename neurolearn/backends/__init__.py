"""Other simulators at the edge of neurolearn (optional extras, imported lazily).

- :mod:`neurolearn.backends.brian2`: run a trained neurolearn :class:`~neurolearn.network.Network`
  in Brian2 (continuous-time equations, forward Euler with the network's ``dt``) and get back
  the same :class:`~neurolearn.network.Record` as the torch engine.
- :mod:`neurolearn.backends.brian2_plasticity`: local learning rules written as on-synapse
  plasticity inside Brian2 (activity-based node perturbation, DRTP, anti-Hebbian decorrelation).

Nothing here is imported by ``import neurolearn``; Brian2 is imported only when one of these
modules' functions runs (``pip install 'neurolearn[brian2]'``).
"""

BACKENDS = ("torch", "brian2")

__all__ = ["BACKENDS"]
