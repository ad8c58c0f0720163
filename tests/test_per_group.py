"""Per-group rates: ``per_group=True`` makes the action a vector, one rate per layer."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import ActorCritic
from envs.learning_rate_env import LearningRateEnv
from envs.primary import layer_groups


def make_env(**kw) -> LearningRateEnv:
    kw = {"episode_length": 20, "device": "cpu", "seed": 3, "per_group": True, **kw}
    return LearningRateEnv("digits", **kw)


def group_weights(env: LearningRateEnv) -> list[torch.Tensor]:
    return [torch.cat([p.detach().reshape(-1) for p in g["params"]]).clone()
            for g in env.trainer.optimizer.param_groups]


def test_action_is_a_box_with_one_entry_per_group():
    env = make_env()
    n_layers = len(layer_groups(env.trainer.model))
    assert n_layers == 4  # digits CNN: conv, conv, linear, linear
    assert isinstance(env.action_space, spaces.Box) and env.action_space.shape == (n_layers,)
    assert env.n_groups == len(env.trainer.optimizer.param_groups) == n_layers
    with pytest.raises(ValueError, match="shape"):
        env.reset(seed=0)
        env.step(np.zeros(n_layers - 1, np.float32))


@pytest.mark.parametrize("changed", [0, 2])
def test_each_group_rate_changes_independently(changed):
    """Two envs, same seed, actions that differ in one entry: only that group's rate and
    weights differ, and each group moves by exactly its own rate times its gradient."""
    env_a, env_b = make_env(action="raw", lr_min=1e-4, lr_max=1.0), make_env(action="raw", lr_min=1e-4, lr_max=1.0)
    env_a.reset(seed=5)
    env_b.reset(seed=5)
    rates_a = np.array([0.01, 0.02, 0.05, 0.1])
    rates_b = rates_a.copy()
    rates_b[changed] = 0.5
    before = group_weights(env_a)
    grads = [torch.cat([p.grad.reshape(-1) for p in g["params"]]).clone()
             for g in env_a.trainer.optimizer.param_groups]
    _, _, _, _, info_a = env_a.step(rates_a.astype(np.float32))
    _, _, _, _, info_b = env_b.step(rates_b.astype(np.float32))
    lrs_a = [g["lr"] for g in env_a.trainer.optimizer.param_groups]
    lrs_b = [g["lr"] for g in env_b.trainer.optimizer.param_groups]
    assert lrs_a == pytest.approx(rates_a, rel=1e-6) and lrs_b == pytest.approx(rates_b, rel=1e-6)
    assert np.asarray(info_a["lr"]) == pytest.approx(rates_a, rel=1e-6)
    after_a, after_b = group_weights(env_a), group_weights(env_b)
    for i in range(4):
        # plain SGD: w1 = w0 - lr_i * g_i, per group
        torch.testing.assert_close(after_a[i], before[i] - lrs_a[i] * grads[i], rtol=1e-5, atol=1e-7)
        if i == changed:
            assert not torch.equal(after_a[i], after_b[i])
        else:
            assert torch.equal(after_a[i], after_b[i])


def test_gymnasium_and_sb3_check_env_pass_with_a_vector_action():
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    for kw in ({}, {"action": "relative", "features": ["step_fraction"]}):
        env = make_env(**kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # their advice on unbounded/asymmetric boxes is not a failure
            gym_check(env, skip_render_check=True)
            sb3_check(make_env(**kw), warn=False)
        assert env.action_space.shape == (4,)


def test_paper_agent_trains_and_predicts_vector_actions():
    env = make_env(features=["lr"])
    agent = ActorCritic(env, seed=0, device="cpu")
    agent.learn(25)  # more than one 20-step episode
    obs, _ = env.reset(seed=1)
    assert obs.shape == (1 + 4,)  # the loss and one lr entry per group
    action, state = agent.predict(obs, deterministic=True)
    assert action.shape == (4,) and np.all(np.abs(action) <= 1)
    actions, _ = agent.predict(np.stack([obs, obs]), deterministic=True)
    assert actions.shape == (2, 4)
    _, _, _, _, info = env.step(action)
    assert np.asarray(info["lr"]).shape == (4,)


def test_sb3_td3_trains_a_few_steps_on_per_group_rates():
    from agents.sb3 import make_sb3_agent

    env = make_env()
    model = make_sb3_agent("td3", env, seed=0, device="cpu", learning_starts=10, batch_size=8)
    model.learn(30)
    action, _ = model.predict(env.reset(seed=2)[0], deterministic=True)
    assert action.shape == (4,)
    assert model.num_timesteps == 30
