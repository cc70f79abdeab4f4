"""The learning rules' shared toolkit, below the rules (:mod:`neurolearn.rules` imports it, it
imports no rule):

- :mod:`~neurolearn.learning.grads`: gradient accumulation into ``.grad`` (frozen parameters,
  ``requires_grad=False``, are skipped: they never receive an update);
- :mod:`~neurolearn.learning.noise`: node noise and the stacked clean/noisy batch
  ``[clean; noisy_1 .. noisy_K]`` of the perturbation rules;
- :mod:`~neurolearn.learning.traces`: pre-synaptic traces and the post-synaptic factors of
  the target-projection / feedback-alignment family;
- :mod:`~neurolearn.learning.feedback`: fixed random feedback matrices;
- :mod:`~neurolearn.learning.options`: validation of the rules' frozen option dataclasses.
"""
