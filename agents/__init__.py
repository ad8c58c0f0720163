"""The controller side: the paper's actor-critic, baselines, SB3 glue, checkpoints and the scheduler.

- :class:`ActorCritic` (``agents.actor_critic``): the paper's agent, SB3-shaped.
- :class:`PolicySearch` (``agents.policy_search``): the ``recommended`` preset's agent, an
  episodic cross-entropy-method search over a small deterministic controller, SB3-shaped.
- ``agents.sb3``: DDPG/TD3 from stable-baselines3 on the same env, built by one factory.
- ``agents.callbacks``: the SB3 callbacks every agent trains with (progress, env logging,
  periodic checkpoints, checkpoint selection).
- ``agents.baselines``: tuned-optimizer and adaptive-rate baselines run through the env.
- :func:`load_controller` (``agents.checkpoint``): any trained run, safely; file I/O and
  :class:`CheckpointError` live in ``agents.io``.
- :class:`ControllerScheduler` (``agents.scheduler``): a trained controller in your own loop.
"""
from envs._version import __version__  # one version for the whole distribution (lrrl)
from agents.actor_critic import ActorCritic
from agents.checkpoint import Controller, load_controller
from agents.io import CheckpointError
from agents.policy_search import PolicySearch
from agents.scheduler import ControllerScheduler

__all__ = ["__version__", "ActorCritic", "PolicySearch", "CheckpointError", "Controller", "load_controller",
           "ControllerScheduler"]
