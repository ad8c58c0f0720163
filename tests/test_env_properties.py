"""Property-based tests of the env API (issue 5, item 1), with hypothesis.

Any sequence of actions - finite, NaN, +/-inf, huge, tiny, wrong shapes, wrong dtypes, junk
objects - either steps correctly or raises a clear ``ValueError``/``TypeError`` that leaves the
env untouched; observations are always finite and inside the observation space, rewards are
finite, and ``reset()`` always recovers ``w0``. Run with ``--hypothesis-show-statistics`` to see
how many examples ran. The tasks are the small ``regression2d`` and ``digits`` to stay fast.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from envs import LearningRateEnv

#: env configurations the examples draw from (built once, re-seeded by every example)
CONFIGS = {
    "reg-absolute": dict(task="regression2d", episode_length=6),
    "reg-raw-huge": dict(task="regression2d", action="raw", lr_max=1e6, episode_length=6,
                         features=["lr", "loss_var", "grad_norm"]),
    "reg-relative-nextbatch": dict(task="regression2d", action="relative", reward="next-batch",
                                   relative_factor=1e3, lr_max=1e3, episode_length=6,
                                   reward_transform="log-ratio", features=["step_fraction", "loss_ema"]),
    "reg-validation-adam": dict(task="regression2d", reward="validation", optimizer="adam",
                                validation_size=50, validation_batch_size=20, lr_max=1e4,
                                rotating_validation=True, features=["val_loss"], episode_length=6),
    "reg-3-updates-per-step": dict(task="regression2d", updates_per_step=3, episode_length=7,
                                   lr_max=10.0, eval_every=2, features=["step_fraction"]),
    "digits-per-group": dict(task="digits", per_group=True, lr_max=100.0, episode_length=5,
                             features=["lr"]),
}
_ENVS: dict[str, LearningRateEnv] = {}


def get_env(name: str) -> LearningRateEnv:
    if name not in _ENVS:
        _ENVS[name] = LearningRateEnv(device="cpu", **CONFIGS[name])
    return _ENVS[name]


def weights(env):
    return [v.detach().clone() for v in env.trainer.model.state_dict().values()]


def classify(action, n: int) -> str:
    """Independent oracle: 'ok' for an action the env must accept (a finite real number per
    group, given as a scalar, (n,) or at most 2-d array of n elements), else 'error'."""
    try:
        arr = np.asarray(action)
    except (ValueError, TypeError):
        return "error"
    if arr.dtype.kind not in "biuf" or arr.size != n or arr.ndim > 2:
        return "error"
    with np.errstate(over="ignore"):
        return "ok" if np.all(np.isfinite(arr.astype(np.float64))) else "error"


special = st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 5e-324, 1e300, -1e300,
                           np.finfo(np.float32).max, math.nan, math.inf, -math.inf])
scalars = st.one_of(st.floats(allow_nan=True, allow_infinity=True), special,
                    st.integers(-10**6, 10**6), st.booleans())
arrays = hnp.arrays(
    dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8,
                           np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    elements=None)
junk = st.one_of(st.none(), st.text(max_size=5), st.lists(st.one_of(st.floats(), st.text(max_size=2)),
                                                          max_size=3),
                 st.just(object()), st.dictionaries(st.text(max_size=2), st.floats(), max_size=2),
                 st.just([[0.1], [0.2, 0.3]]), st.just(10**400))
actions = st.one_of(scalars, arrays, junk,
                    st.lists(scalars, min_size=1, max_size=5),
                    st.lists(st.floats(-2, 2), min_size=4, max_size=4))  # the digits per-group size


def check_observation(env, obs):
    assert isinstance(obs, np.ndarray) and obs.dtype == np.float32
    assert np.all(np.isfinite(obs)), obs
    assert env.observation_space.contains(obs), (obs, env.observation_space)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(config=st.sampled_from(sorted(CONFIGS)), sequence=st.lists(actions, min_size=1, max_size=10))
def test_any_action_sequence_steps_or_raises_cleanly(config, sequence):
    env = get_env(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither our code nor numpy/torch may warn
        obs, _ = env.reset(seed=0)
        check_observation(env, obs)
        w0 = weights(env)
        for action in sequence:
            expected = classify(action, env.n_groups)
            before, t_before = weights(env), env._t
            try:
                obs, reward, terminated, truncated, info = env.step(action)
            except (ValueError, TypeError) as exc:
                event(f"refused with {type(exc).__name__}")
                assert expected == "error", f"valid action {action!r} refused: {exc}"
                assert "action" in str(exc)  # the message says what was wrong
                # a refused action changes nothing
                assert env._t == t_before
                assert all(torch.equal(a, b) for a, b in zip(before, weights(env)))
                continue
            assert expected == "ok", f"invalid action {action!r} was accepted"
            event("stepped")
            check_observation(env, obs)
            check_observation(env, info["critic_next_obs"])
            assert isinstance(reward, float) and math.isfinite(reward)
            assert isinstance(terminated, bool) and isinstance(truncated, bool)
            assert terminated == info["diverged"]
            lr = np.atleast_1d(info["lr"])
            assert np.all(lr >= env.lr_min) and np.all(lr <= env.lr_max)  # exactly inside
            if terminated or truncated:
                event("diverged" if terminated else "truncated")
                obs, _ = env.reset()
                check_observation(env, obs)
        # reset() always recovers: w0 back, finite weights, a gentle step works
        obs, _ = env.reset()
        check_observation(env, obs)
        assert all(torch.equal(a, b) for a, b in zip(w0, weights(env)))
        gentle = np.full(env.action_space.shape, env.action_space.low, np.float32)
        obs, reward, terminated, _, _ = env.step(gentle)
        check_observation(env, obs)
        assert math.isfinite(reward) and not terminated


@settings(max_examples=100, deadline=None, derandomize=True)
@given(config=st.sampled_from(sorted(CONFIGS)),
       unit=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=8))
def test_in_range_actions_never_raise_and_report_the_rate_used(config, unit):
    """Actions drawn from inside the action space always step; info['lr'] is the rate applied."""
    env = get_env(config)
    env.reset(seed=1)
    space = env.action_space
    for u in unit:
        # the same point of every group's interval, inside the box
        action = (space.low + (u + 1.0) / 2.0 * (space.high - space.low)).astype(np.float32)
        action = np.clip(action, space.low, space.high)
        assert space.contains(action)
        obs, reward, terminated, truncated, info = env.step(action)
        rates = [g["lr"] for g in env.trainer.optimizer.param_groups]
        np.testing.assert_allclose(np.atleast_1d(info["lr"]), rates, rtol=1e-12)
        assert env.observation_space.contains(obs) and math.isfinite(reward)
        if terminated or truncated:
            env.reset()


@pytest.fixture(scope="module", autouse=True)
def _drop_envs():
    yield
    _ENVS.clear()
