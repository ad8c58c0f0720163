"""Named configurations for ``train_controller.py --preset``: LearningRateEnv kwargs + agent kwargs.

- ``paper``: the paper's configuration (Xu et al. 2017): same-batch raw reward, absolute
  log-lr action, the mini-batch loss as the only state, separate-sample update on, no target
  networks or normalisation. Values the paper does not state (gamma, m_phi, m_theta, noise,
  episode length e, lr range) are our documented choices (see ``agents/actor_critic.py``).
- ``recommended``: what measurement showed works best (issue 8; see the comment above it).
  Besides ``env`` and ``agent`` it has ``algo`` (the default ``--agent``), ``sb3`` (overrides of
  ``agents.sb3.SB3_HYPERPARAMS``) and ``train`` (checkpoint selection and training-only env
  wrappers, see ``train_controller.py``).

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
# ``recommended``: the paper's actor-critic on a reformulated task: the best configuration
# MEASURED, but it does NOT reach the issue-8 bar. Study (5 controller seeds x 5 held-out
# seeds 1000-1004, 1000 updates, 20k training updates per controller, final full-train loss):
#   python benchmarks/study_recommended.py --configs paper,paper-no-separate,recommended,rec-td3 \
#       --controller-seeds 5 --eval-seeds 5 --train-steps 20000 --jobs 2 --out results/study-digits
# digits: recommended 0.54 mean / 0.060 median over controllers (per controller 0.035, 2.26,
# 0.025, 0.060, 0.32), beats constant SGD 0.5 (4.5e-4) on 0/5 controller seeds; TD3 on the
# same env ("rec-td3") 0.97 / 0.18 (best controller 4.5e-3, two at chance level); the paper
# preset 2.29 (all 5 at chance level), paper without the separate-sample update 2.18.
# Fine-grid constant SGD 0.6: 3.4e-4; Adam 0.01: 1.2e-4.
# Each lever answers a failure measured on digits:
# - reward "probe", log-ratio: the decrement of log loss on a FIXED batch of training examples
#   (the paper's same-batch reward always prefers a bigger step: divergence happens between
#   batches; the held-out "validation" reward stops improving once the model fits its data);
# - updates_per_step 25, episode_length 1000 (= the evaluation horizon): 40 decisions per
#   episode, each judged over 25 updates;
# - action "relative" (x2^a per decision, from 0.1, the paper's decade-grid pick): a rate that
#   jumps up abruptly kills the CNN (loss back to chance, 2.30) even where the same rate reached
#   gradually is fine, so uniformly random absolute rates mostly explore dead networks;
# - gamma 1 with a finite horizon (train.finite_horizon: the episode's end is terminal; the
#   state holds step_fraction), so the return is log(initial / final probe loss): with gamma
#   0.9 or 0.98 the learned schedules decayed early (short-horizon bias: a lower rate lowers
#   the loss at once and costs more later);
# - train.collapse_termination: a collapse to chance level ends the episode (agents.wrappers);
#   its own log-ratio reward is kept (a -10 penalty made the critic shun every large rate);
# - twin critics, target networks (tau 0.01), 200 warm-up steps of random actions;
# - train.select_best 5: the policy with the best deterministic return on validation primary
#   seed 500 (never a test seed) is saved, not the last one;
# - lr range [1e-3, 1] (the paper's lr_max; the best constant SGD rate, 0.6-0.8, is inside it
#   and 0.9-1.0 collapse).
PRESETS["recommended"] = {
    "env": {
        "reward": "probe",
        "reward_transform": "log-ratio",
        "action": "relative",
        "features": ["lr", "step_fraction"],
        "lr_min": 1e-3,
        "lr_max": 1.0,
        "relative_factor": 2.0,
        "relative_every": 1,
        "initial_lr": 0.1,
        "per_group": False,
        "obs_max": 1e3,
        "optimizer": "sgd",
        "optimizer_kwargs": {},
        "episode_length": 1000,
        "updates_per_step": 25,
        "log_observations": True,
        "fresh_w0": True,
    },
    "agent": {  # gamma / noise_std are shared with TD3; the rest applies to --agent actor-critic
        "gamma": 1.0,
        "m_phi": 1,
        "m_theta": 1,
        "actor_lr": 1e-3,
        "critic_lr": 1e-3,
        "noise_std": 0.1,
        "separate_sample": True,
        "target_tau": 0.01,
        "normalize_obs": False,
        "reward_scale": 1.0,
        "twin_critics": True,
        "learning_starts": 200,
    },
    "algo": "actor-critic",
    "sb3": {"learning_starts": 200},  # for --agent td3/ddpg: 5 episodes of random actions first
    # 800 env steps = 20 episodes = 20,000 primary updates: the study's training budget
    "train": {"steps": 800, "select_best": 5, "eval_seeds": [500], "collapse_termination": True,
              "finite_horizon": True},
}


def get_preset(name: str) -> dict[str, dict]:
    """A deep copy of preset ``name`` (so callers may modify it)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
