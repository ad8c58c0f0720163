"""envs.multitask.RoundRobinEnv: episodes cycle through several envs with identical spaces."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import LearningRateEnv
from envs.multitask import RoundRobinEnv

KW = {"device": "cpu", "episode_length": 3}


def two_tasks(**kw):
    return [LearningRateEnv("digits", seed=0, **KW, **kw), LearningRateEnv("regression2d", seed=0, **KW, **kw)]


def test_is_a_gymnasium_env_exported_from_envs():
    assert envs.RoundRobinEnv is RoundRobinEnv
    assert issubclass(RoundRobinEnv, gym.Env)


def test_episodes_cycle_through_the_envs_with_the_task_in_info():
    a, b = two_tasks()
    env = RoundRobinEnv([a, b])
    assert env.observation_space == a.observation_space and env.action_space == a.action_space
    assert env.current is a  # before any reset
    seen = []
    for episode in range(5):
        obs, info = env.reset()
        assert env.observation_space.contains(obs)
        seen.append(info["task"])
        assert env.current is (a, b)[episode % 2]
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(np.zeros(1, np.float32))
            assert info["task"] == seen[-1] and np.isfinite(reward)
            done = terminated or truncated
    assert seen == ["digits", "regression2d", "digits", "regression2d", "digits"]


def test_reset_passes_seed_and_options_to_the_env_whose_turn_it_is():
    env = RoundRobinEnv(two_tasks())
    obs, info = env.reset(seed=7)
    want, want_info = LearningRateEnv("digits", **KW).reset(seed=7)
    np.testing.assert_array_equal(obs, want)
    assert info["seed"] == want_info["seed"] == 7 and info["task"] == "digits"
    obs, info = env.reset(seed=8)
    np.testing.assert_array_equal(obs, LearningRateEnv("regression2d", **KW).reset(seed=8)[0])
    assert info["task"] == "regression2d"


def test_a_single_env_and_wrapped_envs_work():
    env = RoundRobinEnv([gym.wrappers.TimeLimit(LearningRateEnv("regression2d", seed=0, **KW), 2)])
    for _ in range(2):
        _, info = env.reset()
        assert info["task"] == "regression2d"
        _, _, _, truncated, info = env.step(np.zeros(1, np.float32))
        assert not truncated
        _, _, _, truncated, _ = env.step(np.zeros(1, np.float32))
        assert truncated  # the wrapper's limit, through the round robin
    env.close()


@pytest.mark.parametrize("kw_a, kw_b", [({"features": ("lr",)}, {}), ({"action": "capped"}, {})])
def test_different_spaces_are_refused(kw_a, kw_b):
    a = LearningRateEnv("digits", **KW, **kw_a)
    b = LearningRateEnv("regression2d", **KW, **kw_b)
    with pytest.raises(ValueError, match="'digits' and 'regression2d' have different observation/action spaces"):
        RoundRobinEnv([a, b])


def test_no_env_is_refused():
    with pytest.raises(ValueError, match="at least one env"):
        RoundRobinEnv([])
