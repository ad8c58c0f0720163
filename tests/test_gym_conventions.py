"""Issue 14: Gymnasium conventions an RL researcher relies on: copies and pickles, rendering,
the spec's episode length, unseeded resets, registering your own task as an id."""
from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs import LearningRateEnv

CPU = {"device": "cpu"}
ACTIONS = [np.array([a], np.float32) for a in (-0.4, 0.1, -0.8, 0.3, -0.2)]


def _roll(env, actions):
    return [env.step(a) for a in actions]


def _assert_same_steps(a, b):
    for (obs_a, r_a, te_a, tr_a, info_a), (obs_b, r_b, te_b, tr_b, info_b) in zip(a, b):
        np.testing.assert_array_equal(obs_a, obs_b)
        assert (r_a, te_a, tr_a) == (r_b, te_b, tr_b)
        assert (info_a["lr"], info_a["loss_after"], info_a["step"]) == \
               (info_b["lr"], info_b["loss_after"], info_b["step"])


def _pickle_copy(env):
    return pickle.loads(pickle.dumps(env))


# ----------------------------------------------------------------------------- copies and pickles
@pytest.mark.parametrize("copier", [copy.deepcopy, _pickle_copy], ids=["deepcopy", "pickle"])
@pytest.mark.parametrize("kwargs", [
    dict(task="digits"),
    dict(task="regression2d", optimizer="momentum", features=["loss_ema", "grad_norm"]),
    dict(task="digits", optimizer="adam", reward="validation", updates_per_step=2),
], ids=["digits-sgd", "regression2d-momentum", "digits-adam-validation"])
def test_a_copy_made_mid_episode_continues_exactly_like_the_original(copier, kwargs):
    env = LearningRateEnv(**kwargs, episode_length=12, seed=0, **CPU)
    env.reset(seed=3)
    _roll(env, ACTIONS[:3])  # mid-episode: a gradient is pending in .grad, optimizer state exists
    twin = copier(env)
    original_steps, twin_steps = _roll(env, ACTIONS), _roll(twin, ACTIONS)
    # the first step of the copy applies the pending update (it used to apply none: reward 0)
    assert original_steps[0][1] != 0.0
    _assert_same_steps(original_steps, twin_steps)
    for p, q in zip(env.trainer.parameters(), twin.trainer.parameters()):
        assert torch.equal(p, q) and p is not q
    # and they are independent: stepping one leaves the other alone
    before = [p.detach().clone() for p in twin.trainer.parameters()]
    env.step(ACTIONS[0])
    assert all(torch.equal(b, q) for b, q in zip(before, twin.trainer.parameters()))


def test_a_gym_make_env_pickles_with_its_wrappers():
    env = gym.make("envs:LearningRate-Regression2D-v0", episode_length=6, **CPU)
    env.reset(seed=1)
    env.step(ACTIONS[0])
    twin = _pickle_copy(env)
    _assert_same_steps(_roll(env, ACTIONS), _roll(twin, ACTIONS))


def _linear_factory():
    return torch.nn.Linear(3, 2)


def test_a_task_with_a_lambda_model_factory_refuses_to_pickle_with_the_fix():
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    task = envs.Task.from_tensors(x, y, x, y, model_factory=lambda: torch.nn.Linear(3, 2),
                                  batch_size=8, name="mine")
    env = LearningRateEnv(task, seed=0, **CPU)
    env.reset()
    with pytest.raises(pickle.PicklingError, match=r"task 'mine'.*model_factory.*lambda.*`def` at the top level"):
        pickle.dumps(env)
    # a deepcopy shares functions, so it works with a lambda too
    twin = copy.deepcopy(env)
    _assert_same_steps(_roll(env, ACTIONS), _roll(twin, ACTIONS))
    # the fix the message gives: a module-level function
    fixed = envs.Task.from_tensors(x, y, x, y, model_factory=_linear_factory, batch_size=8, name="mine")
    assert pickle.loads(pickle.dumps(fixed)).model_factory is _linear_factory
