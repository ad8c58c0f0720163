"""run_episodes: N episodes side by side in a LearningRateVectorEnv == run_episode per sub-env."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from agents import ActorCritic
from agents.baselines import (VSGD, ClippedSGD, ConstantLR, ControllerPolicy, CosineLR, EpisodeResult,
                              FeatureController, GradNormRule, HypergradientSGD, run_episode, run_episodes)
from agents.policy_search import PolicySearch
from envs import LearningRateEnv
from envs.vector_env import LearningRateVectorEnv

RTOL = 1e-5
FLOAT_LISTS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "lr", "effective_lr",
               "batch_loss", "disagreement")


def assert_same(ours: EpisodeResult, ref: EpisodeResult, label: str = "") -> None:
    assert ours.diverged == ref.diverged, label
    assert ours.steps == ref.steps, label
    assert ours.eval_steps == ref.eval_steps, label
    assert ours.trace_steps == ref.trace_steps, label
    for key in FLOAT_LISTS:
        a, b = getattr(ours, key), getattr(ref, key)
        assert len(a) == len(b), (label, key)
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-7, err_msg=f"{label} {key}")
    assert len(ours.weights) == len(ref.weights), label
    if ref.weights:
        np.testing.assert_allclose(ours.weights, ref.weights, rtol=RTOL, atol=1e-6, err_msg=f"{label} weights")
    # the return sums rewards, each a difference of two losses equal to 1e-5 relative: its error is
    # bounded by 1e-5 of the losses' scale per step (as tests/test_vector_env.py's reward_close),
    # not by 1e-5 of the (small) return; rounding errors of the steps add up like a random walk
    finite = [abs(x) for x in ref.batch_loss if np.isfinite(x)]
    scale = max(finite + [1.0]) * 2 * RTOL * max(len(ref.lr), 1) ** 0.5
    np.testing.assert_allclose(ours.episode_return, ref.episode_return, rtol=RTOL, atol=scale, err_msg=label)


def check(task, make_policies, seeds, trace=False, expect_batched=True, **kwargs):
    """run_episodes on a vector env of len(seeds) sub-envs against run_episode per sub-env
    (fresh policy objects from the same factory); returns the results."""
    kwargs = {"device": "cpu", **kwargs}
    vec = LearningRateVectorEnv(task, num_envs=len(seeds), seed=100, **kwargs)
    assert vec.batched == expect_batched
    ours = run_episodes(vec, make_policies(), seeds, trace=trace)
    refs = [run_episode(LearningRateEnv(task, seed=s, **kwargs), p, s, trace=trace)
            for p, s in zip(make_policies(), seeds)]
    for i, (a, b) in enumerate(zip(ours, refs)):
        assert_same(a, b, f"sub-env {i}")
    return ours


DIGITS = {"action": "raw", "episode_length": 30, "eval_every": 10, "lr_min": 1e-5, "lr_max": 1e3}


def sgd_policies_a():
    return [ConstantLR(0.3), CosineLR(0.8), ClippedSGD(0.5, 1.0), FeatureController((0.3, 5.0, 0.0), lr0=0.1, every=5)]


def sgd_policies_b():
    return [GradNormRule(1.0, 10.0, 0.5), HypergradientSGD(beta=0.01, lr0=0.1), ConstantLR(0.05)]


def adam_policies():
    return [ConstantLR(3e-3), CosineLR(1e-2), ClippedSGD(1e-2, 0.5), GradNormRule(1e-3, 1e-2, 0.05)]


@pytest.mark.parametrize("make", [sgd_policies_a, sgd_policies_b], ids=["a", "b"])
def test_digits_sgd_matches_run_episode(make):
    n = len(make())
    res = check("digits", make, [3, 11, 5, 8][:n], optimizer="sgd", **DIGITS)
    assert all(r.steps == 30 and not r.diverged and r.eval_steps == [0, 10, 20, 30] for r in res)
    # the policies differ, so do their curves (the comparison is not vacuous)
    assert len({round(r.lr[-1], 8) for r in res}) == n


def test_digits_adam_matches_run_episode():
    res = check("digits", adam_policies, [1, 2, 3, 4], optimizer="adam", **DIGITS)
    assert all(r.steps == 30 and not r.diverged for r in res)
    assert res[0].effective_lr == res[0].lr


def test_one_sub_env_diverges_early_the_others_go_on():
    res = check("digits", lambda: [ConstantLR(0.2), ConstantLR(500.0), CosineLR(0.5)], [7, 8, 9],
                optimizer="sgd", **DIGITS)
    assert res[1].diverged and res[1].steps < 30 and len(res[1].lr) == res[1].steps
    assert not res[0].diverged and not res[2].diverged
    assert res[0].steps == res[2].steps == 30


def test_regression2d_trace_matches_run_episode():
    def make():
        return [ConstantLR(0.05), CosineLR(0.2), ClippedSGD(0.1, 0.5), HypergradientSGD(beta=0.001, lr0=0.02)]

    res = check("regression2d", make, [0, 4, 2, 9], trace=True, action="raw", lr_min=1e-6, lr_max=10.0,
                episode_length=30, eval_every=10)
    assert all(len(r.weights) == len(r.disagreement) == 30 for r in res)
    assert all(len(r.weights[0]) == 2 for r in res)


def test_updates_per_step_and_trace():
    res = check("regression2d", lambda: [ConstantLR(0.05), GradNormRule(0.01, 0.1, 0.5)], [1, 2], trace=True,
                action="raw", lr_min=1e-6, lr_max=10.0, episode_length=20, eval_every=10, updates_per_step=5)
    assert res[0].trace_steps == [0, 5, 10, 15] and len(res[0].lr) == 20


def test_controller_policies_match_run_episode():
    spaces = LearningRateEnv("digits", device="cpu", episode_length=30)
    ac = ActorCritic(observation_space=spaces.observation_space, action_space=spaces.action_space,
                     seed=3, device="cpu", hidden_size=8, num_layers=1, critic_hidden=4)
    ps = PolicySearch(observation_space=spaces.observation_space, action_space=spaces.action_space, seed=0)
    ps.mean = np.random.default_rng(1).normal(0.0, 0.5, ps.mean.size)

    def make():  # two ControllerPolicy objects share the actor-critic: each keeps its own LSTM state
        return [ControllerPolicy(ac), ControllerPolicy(ac), ControllerPolicy(ps)]

    res = check("digits", make, [5, 6, 7], optimizer="sgd", episode_length=30, eval_every=10)
    assert len({round(r.lr[-1], 8) for r in res}) == 3


def test_fallback_single_envs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check("regression2d", lambda: [ConstantLR(0.05), ClippedSGD(0.1, 0.5)], [1, 2], trace=True,
              expect_batched=False, optimizer="adagrad", action="raw", lr_min=1e-6, lr_max=10.0,
              episode_length=10, eval_every=5)


def test_unbatchable_policy_and_bad_arguments_raise():
    vec = LearningRateVectorEnv("regression2d", num_envs=2, device="cpu", action="raw", episode_length=5)
    with pytest.raises(ValueError, match="vsgd"):
        run_episodes(vec, [ConstantLR(0.1), VSGD()], [0, 1])
    with pytest.raises(ValueError, match="one policy and one seed per sub-env"):
        run_episodes(vec, [ConstantLR(0.1)], [0])
    p = ConstantLR(0.1)
    with pytest.raises(ValueError, match="distinct policy object"):
        run_episodes(vec, [p, p], [0, 1])
    assert not VSGD.batchable and HypergradientSGD.batchable


def test_batched_sweep_benchmark_tiny(capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is not installed
    from benchmarks import batched_sweep

    assert batched_sweep.main(["--n", "2", "--episode-length", "2", "--eval-every", "1", "--repeats", "1",
                               "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "speed-up single/batched" in out and "max rel. diff" in out
