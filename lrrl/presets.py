"""Named configurations for ``train_controller.py --preset``: LearningRateEnv kwargs + agent kwargs.

- ``paper``: the paper's configuration (Xu et al. 2017): same-batch raw reward, the actor's
  output is the learning rate itself (``actor_output="linear"`` on ``action="raw"``, clipped to
  ``[lr_min, lr_max]``), the mini-batch loss as the only state, separate-sample update on, no
  target networks or normalisation. Every value and rule the paper does not state (gamma,
  m_phi, m_theta, noise, episode length e, the rate's range and clipping, the divergence rule,
  the reuse of ``x_j``, ...) is listed, with the paper's words, in ``docs/paper-deviations.md``.
  The log-uniform parametrisation it had before 0.3.0 is the study configuration
  ``paper-log-uniform`` (``--action absolute --actor-output tanh``).
- ``actor-critic-relative``: the paper's actor-critic with a relative action and the state
  (loss, lr, step_fraction); the ``recommended`` of earlier releases (docs/results.md).
- ``digits-capped``: a specialist of the ``digits`` task, found by measurement there (see the
  comment above it): a rate and a step-length cap set by a policy search; the shipped
  ``pretrained:sgd`` and ``pretrained:adam``. The ``recommended`` before the suite-trained one.
  Besides ``env`` and ``agent`` it has ``algo`` (the default ``--agent``), ``policy_search``
  (:class:`~agents.policy_search.PolicySearch` keyword arguments), ``sb3`` (overrides of
  ``agents.sb3.SB3_HYPERPARAMS``) and ``train`` (budget, checkpoint selection and training-only
  env wrappers, see ``train_controller.py``).
- ``recommended`` (the default): a controller for problems it never saw, trained on the task
  suite's train families (``task: suite-train``) in the model's own units: the trust action,
  scale-free observations, a linear anneal of every step to zero, the safety net, candidates scored on four problems each (see the
  comment above it and docs/generalization.md); the shipped ``pretrained:general``.
- ``held-out-loss``: ``recommended`` with the reward and the checkpoint selection on a validation
  split held out of the training set instead of the training loss.

``"agent"`` holds :class:`~agents.actor_critic.ActorCritic` keyword arguments; ``gamma`` and
``noise_std`` are shared with the SB3 agents.
"""
from __future__ import annotations

import copy

PRESETS: dict[str, dict[str, dict]] = {
    "paper": {
        "env": {
            "reward": "same-batch",
            "reward_transform": "raw",
            # the paper: "a is a continuous value", "computes learning rate a = pi(s)": the
            # actor's output is the rate, clipped to [lr_min, lr_max] (positive and finite)
            "action": "raw",
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
            # not in the paper (which has no rule for it): a non-finite loss, or one above 100x the
            # episode's first, ends the episode with reward -10 (the env's defaults, listed here
            # because they are part of this configuration; docs/paper-deviations.md)
            "divergence_factor": 100.0,
            "divergence_penalty": 10.0,
        },
        "agent": {
            "gamma": 0.9,
            "m_phi": 1,
            "m_theta": 1,
            "actor_lr": 1e-3,
            "critic_lr": 1e-3,
            "noise_std": 0.1,  # in learning-rate units (the actor's output is the rate)
            "separate_sample": True,
            "target_tau": None,
            "normalize_obs": False,
            "reward_scale": 1.0,
            "actor_output": "linear",
        },
    },
}
# ``digits-capped``: a controller that sets a rate AND a step-length cap, found by an episodic
# policy search on digits. Measured on digits (1,000 updates, final full-train loss; the commands
# and the held-out results are in README.md, "Results"):
# - the headroom is the gradient norm: SGD with every step capped at length ~0.5-1
#   (``min(rate, cap / ||g_t||)``) trains this CNN orders of magnitude further than any constant
#   rate (constant SGD's best, 0.6, collapses at 0.9-1.0; a capped step never kills the network,
#   and then larger rates are better: rate 2 / 4 / 8 / 1000 at cap 0.7 measured 2e-5 / 1e-5 /
#   2e-6 / 2e-9 on training seeds 0-1), so the action is ``capped`` with the rate range reaching
#   1000 (pure normalised steps) and the cap range 0.01-10 (a cap of 2 already collapses);
# - the state is the mini-batch loss, the time left (``step_fraction``) and the gradient norm
#   (``grad_norm``), log-scaled: what a rule like ``min(rate_t, cap / ||g_t||)`` needs;
# - agent: the cross-entropy method over a linear-tanh policy (agents/policy_search.py). With
#   the same env, TD3 (4 critics' worth of data in 60 episodes) and the paper's actor-critic
#   learned to avoid the cliff next to the best caps by retreating to small caps or rates (TD3's
#   validation return 2-4, the actor-critic's 0.45, where a fixed cap of 0.7 at rate 1000 earns
#   ~21): comparing whole episodes on the same primary seed is what finds the edge;
# - reward "probe", log-ratio: per decision the decrement of log loss on a fixed batch of
#   training examples, so an episode's return is log(initial / final probe loss): the criterion;
# - updates_per_step 25, episode_length 1000 (= the evaluation horizon): 40 decisions per episode;
# - train.collapse_termination ends an episode whose loss climbs back to chance level (its
#   telescoped return is then ~0), which also saves the rest of a dead episode's compute;
# - train.select_best 1: after every generation the mean policy runs on validation seed 500,
#   and the best one is saved.
PRESETS["digits-capped"] = {
    "env": {
        "reward": "probe",
        "reward_transform": "log-ratio",
        "action": "capped",
        "features": ["step_fraction", "grad_norm"],
        "lr_min": 1e-2,
        "lr_max": 1e3,
        "step_cap_min": 1e-2,
        "step_cap_max": 10.0,
        "relative_factor": 2.0,
        "relative_every": 1,
        "initial_lr": None,
        "per_group": False,
        "obs_max": 1e3,
        "optimizer": "sgd",
        "optimizer_kwargs": {},
        "episode_length": 1000,
        "updates_per_step": 25,
        "log_observations": True,
        "fresh_w0": True,
    },
    # for --agent actor-critic on this env (the levers of the actor-critic-relative study); gamma / noise_std are shared with TD3
    "agent": {
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
    "algo": "policy-search",
    "policy_search": {"population": 12, "elite_fraction": 0.25, "init_std": 0.5, "min_std": 0.02,
                      "noise_decay": 10},
    "sb3": {"learning_starts": 200},  # for --agent td3/ddpg: 5 episodes of random actions first
    "train": {"steps": 5760, "select_best": 1, "collapse_termination": True,
              "finite_horizon": True},
}


# ``recommended``: a controller meant for problems it never saw. Everything it sees and sets is in the
# model's own units, and it is trained and selected on the task suite's train families only
# (envs/suite.py; the test families stay held out):
# - action ``trust``: a rate as a multiple of ||w_0|| / ||g_0|| and a step cap as a fraction of
#   ||w_t|| (a trust ratio); normalised SGD with a cap of 0.1 ||w|| and a linear decay, by hand,
#   matches tuned SGD's final loss (geometric mean 1.0, no collapse) on the six train families'
#   first scoring instances and trains the digits task's CNN to 0-2e-7, where held at 0.1 without a
#   decay it ends above chance and 0.2 always kills it (benchmarks/hand_rules.py): the search
#   chooses caps up to 0.1;
# - the state: log(loss / first loss) (``relative_loss``), the time left, log(||g|| / ||g_0||) and
#   the loss trend: no absolute scale, so nothing it learns is tied to one problem's units;
# - ``anneal="linear"``: every rate and cap it sets is multiplied by the fraction of the horizon
#   left, a linear decay to zero (the schedule the literature finds best for the last iterate, e.g.
#   Defazio et al. 2023, and the one that makes the hand rule above work): without it each
#   training seed learned its own end-of-training decay, which the train families do not pin
#   down, and the seeds' scores on the test split were far apart (docs/generalization.md);
# - ``safety_net``: a loss that has lost half its progress (back towards the untrained
#   network's) halves every later rate;
# - the search scores each candidate on 4 problems per generation (common to all candidates) by
#   its rank in each, a collapse scoring below last place: it does not reward the edge of
#   stability on one problem; selection runs the mean policy on 12 selection-seed problems and
#   ranks a policy with fewer failed (collapsed or diverged) problems first.
PRESETS["recommended"] = {
    # the digits-capped env (probe reward, log-ratio, 25 updates per decision, fresh w0, ...) with
    # the trust action and the scale-free state; episode_length 1000 is the longest suite
    # horizon: the budget's unit (instances use their own)
    "env": {**copy.deepcopy(PRESETS["digits-capped"]["env"]),
            "action": "trust", "features": ["step_fraction", "grad_ratio", "loss_trend"], "relative_loss": True,
            "safety_net": True, "anneal": "linear", "lr_min": 1e-3, "lr_max": 10.0, "step_cap_min": 1e-3,
            "step_cap_max": 0.1},
    "agent": copy.deepcopy(PRESETS["digits-capped"]["agent"]),
    "algo": "policy-search",
    "policy_search": {"population": 12, "elite_fraction": 0.25, "init_std": 0.5, "min_std": 0.02,
                      "noise_decay": 10, "episodes_per_candidate": 4},
    "sb3": {"learning_starts": 200},
    "train": {"task": "suite-train", "steps": 15_000, "select_best": 2, "eval_seeds": list(range(500, 512)),
              "collapse_termination": True, "finite_horizon": True},
}


# ``held-out-loss``: ``recommended`` for a user whose goal is the loss on data the model does not
# train on. Each decision's reward is the decrement of log loss on a validation split held out of
# the training set (one batch of 200 examples, at most a quarter of a small training set), so the
# search and the checkpoint selection rank policies by held-out progress; the controller then runs
# on the whole training set like any other (its features do not read the validation split).
PRESETS["held-out-loss"] = copy.deepcopy(PRESETS["recommended"])
PRESETS["held-out-loss"]["env"]["reward"] = "validation"


# ``actor-critic-relative``: the ``recommended`` before ``digits-capped``: the paper's actor-critic with a relative
# action from 0.1, the state (loss, lr, step_fraction), 800 env steps. Kept so that the README's
# earlier results tables (docs/results.md) stay reproducible (``--preset actor-critic-relative``); it does not beat a tuned rate
# (5 controller seeds x 5 held-out seeds: 0.54 mean, 0.060 median against SGD 0.6's 3.4e-4).
PRESETS["actor-critic-relative"] = {
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
    "train": {"steps": 800, "select_best": 5, "collapse_termination": True,
              "finite_horizon": True},
}


def get_preset(name: str) -> dict[str, dict]:
    """A deep copy of preset ``name`` (so callers may modify it); its ``env`` names only env
    settings (:class:`envs.config.EnvConfig`, whose checks its values pass)."""
    from envs.config import EnvConfig

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset = copy.deepcopy(PRESETS[name])
    EnvConfig.from_flat(preset["env"])
    return preset
