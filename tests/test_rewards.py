"""envs.rewards: the reward plans and transforms LearningRateEnv and LearningRateVectorEnv share;
probe_batch_size; reward_scale multiplies the divergence penalty too."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from envs import REWARDS, LearningRateEnv
from envs.rewards import REWARD_PLANS, TRANSFORMS, Pending, RewardPlan, RewardTransform, reward_plan
from envs.vector_env import LearningRateVectorEnv

CPU = {"device": "cpu"}


def test_one_frozen_plan_per_reward_mode():
    assert tuple(REWARD_PLANS) == REWARDS
    batches = {m: p.batch for m, p in REWARD_PLANS.items()}
    assert batches == {"same-batch": "update", "next-batch": "next", "validation": "validation", "probe": "probe"}
    assert [m for m, p in REWARD_PLANS.items() if p.held] == ["validation", "probe"]
    assert REWARD_PLANS["validation"].split == "val" and REWARD_PLANS["probe"].split == "train"
    with pytest.raises(dataclasses.FrozenInstanceError):
        REWARD_PLANS["probe"].batch = "update"
    with pytest.raises(ValueError, match="reward must be one of"):
        reward_plan("nope")


def test_known_before():
    same, nxt, val = REWARD_PLANS["same-batch"], REWARD_PLANS["next-batch"], REWARD_PLANS["validation"]
    assert same.known_before(1.0, 2.0, rotating=True) == 1.0
    assert nxt.known_before(1.0, 2.0, rotating=False) is None
    assert val.known_before(1.0, 2.0, rotating=False) == 2.0
    assert val.known_before(1.0, 2.0, rotating=True) is None
    with pytest.raises(ValueError, match="no held batch"):
        same.held_batch(None, 3, False)


def test_transforms_and_divergence():
    assert TRANSFORMS == ("raw", "log-ratio")
    raw, log = RewardTransform("raw", 2.0, 10.0), RewardTransform("log-ratio", 3.0, 5.0)
    assert raw(1.0, 0.25) == 2.0 * 0.75
    assert log(1.0, 0.5) == 3.0 * (math.log(1.0) - math.log(0.5))
    assert log(0.0, 0.0) == 0.0  # floored, no -inf
    assert raw(1.0, 0.5, diverged=True) == -20.0 and log(1.0, 0.5, diverged=True) == -15.0
    assert RewardTransform()(1.0, 0.5, diverged=True) == -10.0  # the default penalty, unscaled at scale 1
    with pytest.raises(ValueError, match="reward_transform must be"):
        RewardTransform("sqrt")
    t = RewardTransform(divergence_factor=10.0)
    assert not t.diverged(5.0, 5.0, initial_loss=1.0, obs_max=1e3)
    assert t.diverged(11.0, 5.0, initial_loss=1.0, obs_max=1e3)
    assert t.diverged(0.5, 2.0, initial_loss=1.0, obs_max=1.5)  # the observation cap
    assert t.diverged(math.nan, 1.0, initial_loss=1.0, obs_max=1e3)
    assert t.diverged(1.0, math.inf, initial_loss=1.0, obs_max=1e3)


def test_pending_resolves_by_name():
    p = Pending()
    p.add("a", torch.tensor(1.5))
    p.add("b", torch.tensor(2.5))
    assert p.resolve() == {"a": 1.5, "b": 2.5}
    with pytest.raises(KeyError):
        p.add("a", torch.tensor(0.0))
    rows = Pending()
    rows.add("x", torch.tensor([1.0, 2.0]))
    rows.add("y", torch.tensor([3.0, 4.0]))
    assert rows.resolve_rows() == [{"x": 1.0, "y": 3.0}, {"x": 2.0, "y": 4.0}]


def test_env_uses_the_shared_plan():
    env = LearningRateEnv("regression2d", reward="validation", reward_transform="log-ratio",
                          reward_scale=2.0, validation_batch_size=30, **CPU)
    assert env.reward_plan is REWARD_PLANS["validation"] and isinstance(env.reward_plan, RewardPlan)
    assert env.reward_fn == RewardTransform("log-ratio", 2.0, 10.0, 100.0)
    assert env.reward_scale == 2.0 and env.reward_transform == "log-ratio" and env.reward_mode == "validation"


# ---------------------------------------------------------------------- probe_batch_size
@pytest.mark.parametrize("kwargs, match", [
    ({"reward": "probe", "validation_batch_size": 0}, "validation_batch_size"),
    ({"reward": "probe", "probe_batch_size": 0}, "probe_batch_size"),
    ({"reward": "probe", "probe_batch_size": 2.5}, "probe_batch_size"),
    ({"reward": "probe", "probe_batch_size": True}, "probe_batch_size"),
    ({"reward": "same-batch", "probe_batch_size": -1}, "probe_batch_size"),
    ({"reward": "validation", "validation_batch_size": 0, "probe_batch_size": 10}, "validation_batch_size"),
])
def test_bad_batch_sizes_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LearningRateEnv("regression2d", **CPU, **kwargs)


def test_probe_batch_size_defaults_to_validation_batch_size():
    env = LearningRateEnv("regression2d", reward="probe", validation_batch_size=40, **CPU)
    assert env.probe_batch_size == 40 and env.held_batch_size == 40
    env.reset(seed=0)
    assert len(env.core.held_batch(0)) == 40


def test_probe_batch_size_sizes_the_probe_batch_only():
    env = LearningRateEnv("regression2d", reward="probe", probe_batch_size=25, validation_batch_size=70,
                          features=("val_loss",), **CPU)
    env.reset(seed=0)
    assert len(env.core.held_batch(0)) == 25 and len(env.core.validation_batch(0)) == 70
    tr = env.trainer
    _, reward, _, _, info = env.step(np.zeros(1, np.float32))
    with torch.no_grad():
        probe = tr.loss_fn(tr.model(tr.x_train[env.core.held_batch(0)]), tr.y_train[env.core.held_batch(0)]).item()
    assert info["loss_after"] == pytest.approx(probe, rel=1e-6)
    # the probe reward alone needs no validation split, so validation_batch_size is then unused
    env = LearningRateEnv("regression2d", reward="probe", probe_batch_size=25, validation_batch_size=0, **CPU)
    assert len(env.trainer.x_val) == 0
    env.reset(seed=0)
    assert np.isfinite(env.step(np.zeros(1, np.float32))[1])


def test_probe_batch_size_in_the_vector_env_equals_the_single_env():
    kw = dict(reward="probe", probe_batch_size=20, validation_batch_size=50, features=("val_loss",),
              episode_length=3, **CPU)
    vec = LearningRateVectorEnv("regression2d", num_envs=2, seed=4, batched=True, **kw)
    singles = [LearningRateEnv("regression2d", seed=4 + i, **kw) for i in range(2)]
    vec.reset()
    for s in singles:
        s.reset()
    rng = np.random.default_rng(0)
    for _ in range(4):
        a = rng.uniform(-1, 1, (2, 1)).astype(np.float32)
        _, rewards, *_ = vec.step(a)
        for i, s in enumerate(singles):
            _, r, term, trunc, _ = s.step(a[i])
            assert r == pytest.approx(rewards[i], rel=1e-4, abs=1e-6)
            if term or trunc:
                s.reset()


# ---------------------------------------------------------------------- reward_scale
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_reward_scale_multiplies_the_divergence_penalty(scale):
    env = LearningRateEnv("regression2d", action="raw", lr_max=1e4, reward_scale=scale, episode_length=50, **CPU)
    vec = LearningRateVectorEnv("regression2d", num_envs=2, action="raw", lr_max=1e4, reward_scale=scale,
                                episode_length=50, batched=True, **CPU)
    env.reset(seed=0)
    vec.reset(seed=0)
    for _ in range(20):
        _, reward, terminated, *_ = env.step(np.array([1e4], np.float32))
        if terminated:
            break
    assert terminated and reward == -scale * 10.0
    for _ in range(20):
        _, rewards, terminated, *_ = vec.step(np.full((2, 1), 1e4, np.float32))
        if terminated.any():
            break
    assert rewards[terminated].tolist() == [-scale * 10.0] * int(terminated.sum())


@pytest.mark.parametrize("value, ok", [(None, True), (50, True), (0, False), ("50", False)])
def test_settings_json_accepts_probe_batch_size(value, ok):
    from agents.io import CheckpointError
    from agents.settings_schema import validate_settings

    settings = {"agent": "actor-critic", "agent_kwargs": {}, "train": {"task": "digits", "steps": 10, "seed": 0},
                "env_kwargs": {"episode_length": 5, "reward": "probe", "probe_batch_size": value}}
    if ok:
        validate_settings(settings)
        env = LearningRateEnv("regression2d", **settings["env_kwargs"], **CPU)
        assert env.probe_batch_size == (200 if value is None else value)
    else:
        with pytest.raises(CheckpointError, match="probe_batch_size"):
            validate_settings(settings)


def test_a_controllers_training_env_keeps_its_probe_batch_size():
    """The env a controller was trained in (reward included) is rebuilt with its probe batch; the
    env it is evaluated in needs only its observation/action settings."""
    from agents.checkpoint import Controller

    env_kwargs = {"reward": "probe", "probe_batch_size": 25, "episode_length": 10, "features": ["lr"]}
    ctrl = Controller("c", "actor-critic", None, {"agent": "actor-critic", "train": {"task": "digits"},
                                                  "env_kwargs": env_kwargs})
    assert ctrl.env_kwargs(include_reward=True)["probe_batch_size"] == 25
    assert "probe_batch_size" not in ctrl.env_kwargs() and ctrl.env_kwargs()["features"] == ["lr"]
