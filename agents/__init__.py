"""The controller side: the paper's actor-critic, baselines, SB3 glue, checkpoints and the scheduler.

- :class:`ActorCritic` (``agents.actor_critic``): the paper's agent, SB3-shaped.
- :class:`PolicySearch` (``agents.policy_search``): the ``recommended`` and ``digits-capped`` presets' agent, an
  episodic cross-entropy-method search over a small deterministic controller, SB3-shaped.
- ``agents.sb3``: DDPG/TD3 from stable-baselines3 on the same env, built by one factory.
- ``agents.callbacks``: the SB3 callbacks every agent trains with (progress, env logging,
  periodic checkpoints, checkpoint selection).
- ``agents.baselines``: tuned-optimizer and adaptive-rate baselines run through the env.
- :func:`load_controller` (``agents.checkpoint``): any trained run, safely; file I/O and
  :class:`CheckpointError` live in ``agents.io``.
- :class:`ControllerScheduler` (``agents.scheduler``): a trained controller in your own loop.
"""
# Public names are loaded on first use (PEP 562), so that ``import agents.settings_schema`` (what
# a command line's --help needs) does not import torch and stable-baselines3.
_PUBLIC = {"ActorCritic": "agents.actor_critic", "PolicySearch": "agents.policy_search",
           "CheckpointError": "agents.io", "Controller": "agents.checkpoint", "load_controller": "agents.checkpoint",
           "ControllerScheduler": "agents.scheduler"}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    import importlib

    if name == "__version__":  # one version for the whole distribution (lrrl)
        return importlib.import_module("envs._version").__version__
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
