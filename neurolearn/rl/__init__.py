"""Reinforcement learning with a global reward: a gymnasium environment loop for spiking and rate
policies (optional extra ``pip install neurolearn[rl]``; gymnasium is imported only when an
environment is made).

- :mod:`neurolearn.rl.env`: :func:`load_gymnasium`, :func:`make_env`, :class:`ObservationEncoder`;
- :mod:`neurolearn.rl.episode`: :func:`run_episode`, :func:`solve_stats`;
- :mod:`neurolearn.rl.train`: :func:`train_env` (what ``neurolearn train`` runs for a model with an
  ``[env]`` table) and :func:`build_agent`.

The rules (``np-reward``, ``eprop-reward``, ``rstdp-reward``, ``reinforce``) are in
:mod:`neurolearn.rules.reward`.
"""

from neurolearn.rl.env import ObservationEncoder, load_gymnasium, make_env
from neurolearn.rl.episode import EpisodeResult, run_episode, solve_stats

__all__ = ["ObservationEncoder", "load_gymnasium", "make_env", "EpisodeResult", "run_episode", "solve_stats"]
