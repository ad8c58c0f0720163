"""Named configurations for ``train_controller.py --preset``: LearningRateEnv kwargs + agent kwargs.

- ``paper``: the paper's configuration (Xu et al. 2017): same-batch raw reward, absolute
  log-lr action, the mini-batch loss as the only state, separate-sample update on, no target
  networks or normalisation. Values the paper does not state (gamma, m_phi, m_theta, noise,
  episode length e, lr range) are our documented choices (see ``agents/actor_critic.py``).
- ``recommended``: what measurement shows works (filled in by the issue-8 study).

``"agent"`` holds :class:`~agents.actor_critic.ActorCritic` keyword arguments; ``gamma`` and
``noise_std`` are shared with the SB3 baselines (as ``gamma`` / ``action_noise_std``).
"""
from __future__ import annotations

import copy

PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        "env": {
            "reward": "same-batch",
            "reward_transform": "raw",
            "action": "absolute",
            "features": [],
            "lr_min": 1e-5,
            "lr_max": 1.0,
            "relative_factor": 2.0,
            "relative_every": 1,
            "initial_lr": None,
            "per_group": False,
            "obs_max": 1e3,
            "optimizer": "sgd",
            "optimizer_kwargs": {},
            "episode_length": 200,
        },
        "agent": {
            "gamma": 0.9,
            "m_phi": 1,
            "m_theta": 1,
            "actor_lr": 1e-3,
            "critic_lr": 1e-3,
            "noise_std": 0.1,
            "separate_sample": True,
            "target_tau": None,
            "normalize_obs": False,
            "reward_scale": 1.0,
        },
    },
}
PRESETS["recommended"] = copy.deepcopy(PRESETS["paper"])  # replaced by the issue-8 study


def get_preset(name: str) -> dict[str, dict]:
    """A deep copy of preset ``name`` (so callers may modify it)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
