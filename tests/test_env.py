"""LearningRateEnv: env checkers, the step protocol against an independent PyTorch loop,
determinism, resets, truncation, registration, divergence and action validation."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import helpers_data as hd
from envs import ACTIONS, ENV_IDS, FEATURES, OPTIMIZERS, REWARDS, LearningRateEnv, make_task

CPU = {"device": "cpu"}


def check_both(env: gym.Env) -> None:
    """gymnasium's and SB3's env checkers, failing on any warning except SB3's advice to use a
    symmetric action box (which the documented ``action="raw"`` mode deliberately is not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*symmetric and normalized.*")
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)


def weights(env: gym.Env) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in env.unwrapped.trainer.model.state_dict().items()}


def assert_same_weights(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if tol:
            torch.testing.assert_close(a[k], b[k], **tol)
        else:
            assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- env checkers


@pytest.mark.parametrize("task", ["digits", "regression2d"])
def test_checkers_pass_on_offline_tasks(task):
    check_both(LearningRateEnv(task=task, episode_length=10, **CPU))


@pytest.mark.parametrize("env_id", ["LearningRate-v0", "LearningRate-Regression2D-v0"])
def test_checkers_pass_through_gym_make(env_id):
    env = gym.make(f"envs:{env_id}", episode_length=10, device="cpu")
    assert env.unwrapped.trainer.task.name == ENV_IDS[env_id]
    check_both(env.unwrapped)  # the checkers want the bare env; gym.make gave it a spec


@pytest.fixture
def tiny_data_root(tmp_path, monkeypatch):
    """MNIST, Fashion-MNIST and CIFAR-10 in their real on-disk formats, tiny (see helpers_data)."""
    # 20 training examples: batches of 20 (batch_size is capped at N) keep the big CNNs quick
    hd.write_mnist(tmp_path, "MNIST", n_train=20, n_test=10, seed=1)
    hd.write_mnist(tmp_path, "FashionMNIST", n_train=20, n_test=10, seed=2)
    hd.write_cifar10(tmp_path, n_per_batch=4, n_test=10)
    hd.trust_tiny_cifar10(monkeypatch, tmp_path)
    return tmp_path


@pytest.mark.parametrize("env_id", ["LearningRate-MNIST-v0", "LearningRate-FashionMNIST-v0",
                                    "LearningRate-CIFAR10-v0"])
def test_checkers_pass_on_torchvision_tasks_from_tiny_files(tiny_data_root, env_id):
    name = ENV_IDS[env_id]
    task = make_task(name, data_root=tiny_data_root, download=False)
    assert len(task.x_train) == 20 and task.batch_size == 20
    env = gym.make(f"envs:{env_id}", data_root=str(tiny_data_root), download=False,
                   episode_length=4, device="cpu")
    assert env.unwrapped.trainer.task is task  # the same files, the same (cached) task
    check_both(env.unwrapped)
    obs, _ = env.reset(seed=0)
    for _ in range(4):
        obs, reward, terminated, truncated, info = env.step(np.array([-0.5], np.float32))
        assert np.isfinite(reward) and env.observation_space.contains(obs)
    assert truncated and info["step"] == 4


@pytest.mark.parametrize("reward", REWARDS)
@pytest.mark.parametrize("action", ACTIONS)
def test_checkers_pass_with_every_reward_and_action_mode_and_all_features(reward, action):
    env = LearningRateEnv(task="regression2d", reward=reward, action=action,
                          reward_transform="log-ratio" if action == "relative" else "raw",
                          features=list(FEATURES), validation_size=50, validation_batch_size=20,
                          episode_length=8, eval_every=3, **CPU)
    assert env.observation_space.shape == (1 + len(FEATURES),)
    check_both(env)


@pytest.mark.parametrize("action", [a for a in ACTIONS if a not in ("capped", "trust")])  # one rate and one cap
def test_checkers_pass_with_per_group_vector_action(action):
    env = LearningRateEnv(task="digits", per_group=True, action=action, features=["lr", "grad_norm"],
                          episode_length=5, **CPU)
    assert env.action_space.shape == (4,)  # two conv and two linear layers
    assert env.observation_space.shape == (1 + 4 + 1,)
    check_both(env)


# ----------------------------------------------------------------------------- the step protocol


def test_reward_is_same_batch_loss_decrement_measured_independently():
    env = LearningRateEnv(task="digits", episode_length=30, **CPU)
    obs, info = env.reset(seed=3)
    tr = env.trainer
    model = tr.task.model_factory()
    for t in range(10):
        idx = env.current_batch.clone()
        model.load_state_dict(weights(env))
        with torch.no_grad():
            before = F.cross_entropy(model(tr.x_train[idx]), tr.y_train[idx]).item()
        assert obs[0] == pytest.approx(before, rel=1e-5)
        obs, reward, terminated, truncated, info = env.step(np.array([0.4 - 0.1 * t], np.float32))
        model.load_state_dict(weights(env))
        with torch.no_grad():
            after = F.cross_entropy(model(tr.x_train[idx]), tr.y_train[idx]).item()
        assert reward == info["loss_before"] - info["loss_after"]  # exactly, by definition
        assert info["loss_before"] == pytest.approx(before, rel=1e-5)
        assert info["loss_after"] == pytest.approx(after, rel=1e-5)
        assert info["critic_next_obs"][0] == np.float32(info["loss_after"])
        assert info["step"] == t + 1 and not info["diverged"] and not (terminated or truncated)


def test_next_batch_and_validation_rewards_use_the_documented_batches():
    env = LearningRateEnv(task="regression2d", reward="next-batch", episode_length=20, **CPU)
    env.reset(seed=0)
    for _ in range(5):
        obs, reward, *_, info = env.step(np.array([0.0]))
        # the reward batch x_j is the next observation's batch: its "after" is the next observation
        assert np.float32(info["loss_after"]) == obs[0]
        assert reward == info["loss_before"] - info["loss_after"]
    env = LearningRateEnv(task="regression2d", reward="validation", validation_size=100,
                          validation_batch_size=40, episode_length=20, **CPU)
    env.reset(seed=0)
    tr, previous_after = env.trainer, None
    for _ in range(5):
        _, reward, *_, info = env.step(np.array([0.0]))
        with torch.no_grad():
            val = F.mse_loss(tr.model(tr.x_val[:40]), tr.y_val[:40]).item()
        assert info["loss_after"] == pytest.approx(val, rel=1e-6)  # the fixed validation batch
        if previous_after is not None:
            assert info["loss_before"] == previous_after
        previous_after = info["loss_after"]
        assert reward == info["loss_before"] - info["loss_after"]
    # the validation split is held out of the training data
    assert len(tr.x_val) == 100 and len(tr.x_train) == 900


def test_log_ratio_reward_and_scale():
    env = LearningRateEnv(task="regression2d", reward_transform="log-ratio", reward_scale=3.0, **CPU)
    env.reset(seed=0)
    _, reward, *_, info = env.step(np.array([0.2]))
    assert reward == pytest.approx(3.0 * (math.log(info["loss_before"]) - math.log(info["loss_after"])))


def _lr_of(a: float, lr_min=1e-5, lr_max=1.0) -> float:
    """The documented absolute action mapping, written out independently."""
    return lr_min * (lr_max / lr_min) ** ((a + 1.0) / 2.0)


@pytest.mark.parametrize("optimizer,make_opt", [
    ("sgd", lambda p, lr: torch.optim.SGD(p, lr=lr)),
    ("momentum", lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)),
    ("adam", lambda p, lr: torch.optim.Adam(p, lr=lr)),
])
def test_constant_action_matches_a_plain_pytorch_loop(optimizer, make_opt):
    action = 0.6 if optimizer != "adam" else -0.4
    lr = _lr_of(action)
    env = LearningRateEnv(task="digits", optimizer=optimizer, episode_length=100, **CPU)
    env.reset(seed=7)
    tr = env.trainer
    # the independent loop: same w0, same batches (read from the env), same lr
    model = tr.task.model_factory()
    model.load_state_dict(weights(env))
    opt = make_opt(model.parameters(), lr)
    for _ in range(15):
        idx = env.current_batch.clone()
        _, _, terminated, truncated, info = env.step(np.array([action], np.float32))
        assert info["lr"] == pytest.approx(lr, rel=1e-6)
        opt.zero_grad()
        F.cross_entropy(model(tr.x_train[idx]), tr.y_train[idx]).backward()
        opt.step()
        assert not (terminated or truncated)
    assert_same_weights(weights(env), model.state_dict(), rtol=1e-5, atol=1e-6)
    # and the loop really trained: the weights moved away from w0
    assert not torch.allclose(model.state_dict()["0.weight"], tr.w0["0.weight"])


def test_updates_per_step_matches_a_plain_loop_and_counts_updates():
    """k updates per env step at one rate: the plain loop over the same batches (recorded as the
    trainer draws them) at the same rate gives the same weights; episodes count updates."""
    env = LearningRateEnv(task="digits", updates_per_step=3, episode_length=10, action="raw",
                          **CPU)
    env.reset(seed=2)
    tr = env.trainer
    drawn = []
    original = tr.next_batch

    def spy():
        idx = original()
        drawn.append(idx.clone())
        return idx

    tr.next_batch = spy
    model = tr.task.model_factory()
    model.load_state_dict(weights(env))
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    steps = []
    for _ in range(4):  # 3 + 3 + 3 + 1 updates: truncated at update 10
        used = [env.current_batch.clone()]
        drawn.clear()
        _, reward, terminated, truncated, info = env.step(np.array([0.2]))
        used += drawn[:-1]  # the last draw is the next observation's batch
        for idx in used:
            opt.zero_grad()
            F.cross_entropy(model(tr.x_train[idx]), tr.y_train[idx]).backward()
            opt.step()
        steps.append((info["step"], truncated, len(used)))
        assert reward == info["loss_before"] - info["loss_after"]
    assert steps == [(3, False, 3), (6, False, 3), (9, False, 3), (10, True, 1)]
    assert_same_weights(weights(env), model.state_dict(), rtol=1e-5, atol=1e-6)
    # stepping on past truncation without reset (undefined in gymnasium) still counts updates
    *_, info = env.step(np.array([1e-5]))
    assert info["step"] == 11


def test_batches_are_an_epoch_wise_shuffle_of_the_training_set():
    env = LearningRateEnv(task="regression2d", episode_length=1000, **CPU)
    env.reset(seed=0)
    seen = []
    for _ in range(100):  # 1000 examples, batch 10: one epoch
        seen.append(env.current_batch.clone())
        env.step(np.array([-1.0]))
    assert sorted(torch.cat(seen).tolist()) == list(range(1000))


# ----------------------------------------------------------------------------- episodes, seeds


def _trajectory(env, actions):
    obs, _ = env.reset(seed=11)
    out = [obs]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated, info["loss_after"], info["lr"]))
    return out, weights(env)


@pytest.mark.parametrize("task", ["digits", "regression2d"])
def test_same_seed_same_trajectory_and_weights(task):
    actions = [np.array([a], np.float32) for a in np.linspace(-1, 0.5, 12)]
    kw = dict(task=task, episode_length=5, features=["loss_ema", "grad_norm"], **CPU)
    traj_a, w_a = _trajectory(LearningRateEnv(**kw), actions)
    traj_b, w_b = _trajectory(LearningRateEnv(**kw), actions)
    assert len(traj_a) == 13
    for x, y in zip(traj_a, traj_b):
        if isinstance(x, tuple):
            np.testing.assert_array_equal(x[0], y[0])
            assert x[1:] == y[1:]
        else:
            np.testing.assert_array_equal(x, y)
    assert_same_weights(w_a, w_b)
    # a different seed gives a different w0 and different batches
    env_a, env_b = LearningRateEnv(**kw), LearningRateEnv(**kw)
    env_a.reset(seed=11)
    env_b.reset(seed=12)
    key = next(iter(w_a))
    assert not torch.equal(env_a.trainer.w0[key], env_b.trainer.w0[key])
    assert not torch.equal(env_a.current_batch, env_b.current_batch)


def test_reset_restores_w0_and_truncates_exactly_at_episode_length():
    env = LearningRateEnv(task="digits", episode_length=7, **CPU)
    env.reset(seed=5)
    w0 = weights(env)
    for episode in range(2):
        for t in range(1, 8):
            obs, reward, terminated, truncated, info = env.step(np.array([0.5], np.float32))
            assert info["step"] == t and not terminated
            assert truncated == (t == 7)
        assert not torch.equal(weights(env)["0.weight"], w0["0.weight"])
        obs, info = env.reset()
        assert_same_weights(weights(env), w0)  # back to the same w0, bit for bit
        assert info["step"] == 0
    # reset(seed=s) re-draws w0 from s
    env.reset(seed=6)
    assert not torch.equal(weights(env)["0.weight"], w0["0.weight"])
    env.reset(seed=5)
    assert_same_weights(weights(env), w0)


def test_fresh_w0_draws_a_new_w0_per_episode_reproducibly():
    def w0s(env):
        env.reset(seed=1)
        out = [weights(env)]
        for _ in range(2):
            out.append((env.reset(), weights(env))[1])
        return out

    a = w0s(LearningRateEnv(task="regression2d", fresh_w0=True, **CPU))
    b = w0s(LearningRateEnv(task="regression2d", fresh_w0=True, **CPU))
    for x, y in zip(a, b):
        assert_same_weights(x, y)
    assert not torch.equal(a[0]["weight"], a[1]["weight"])
    assert not torch.equal(a[1]["weight"], a[2]["weight"])
    fixed = w0s(LearningRateEnv(task="regression2d", fresh_w0=False, **CPU))
    assert_same_weights(fixed[0], fixed[2])


def test_default_seed_is_used_by_the_first_reset():
    a, b = LearningRateEnv(task="regression2d", seed=4, **CPU), LearningRateEnv(task="regression2d", **CPU)
    obs_a, _ = a.reset()
    obs_b, _ = b.reset(seed=4)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert_same_weights(weights(a), weights(b))


def test_gym_make_passes_kwargs_and_max_episode_steps():
    env = gym.make("envs:LearningRate-v0", max_episode_steps=3, episode_length=50, lr_min=1e-4,
                   lr_max=0.5, optimizer="momentum", features=["step_fraction"], device="cpu")
    inner = env.unwrapped
    assert (inner.episode_length, inner.lr_min, inner.lr_max) == (50, 1e-4, 0.5)
    assert inner.trainer.optimizer.param_groups[0]["momentum"] == 0.9
    assert env.spec.max_episode_steps == 3 and env.observation_space.shape == (2,)
    env.reset(seed=0)
    results = [env.step(np.array([0.0], np.float32)) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]  # TimeLimit at 3, not at 50
    assert results[-1][0][1] == pytest.approx(3 / 50)
    env = gym.make("envs:LearningRate-Regression2D-v0", episode_length=2, device="cpu")
    env.reset(seed=0)
    assert [env.step(np.array([0.0], np.float32))[3] for _ in range(2)] == [False, True]


def test_step_before_reset_and_bad_constructor_arguments():
    env = LearningRateEnv(task="regression2d", **CPU)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0.0]))
    bad = [dict(episode_length=0), dict(lr_min=0.0), dict(lr_min=1.0, lr_max=0.1),
           dict(lr_max=float("inf")), dict(action="sideways"), dict(reward="profit"),
           dict(reward_transform="sqrt"), dict(features=["colour"]), dict(relative_factor=1.0),
           dict(reward="validation", validation_size=0), dict(optimizer="no-such-optimizer"),
           dict(device="cuda") if not torch.cuda.is_available() else dict(episode_length=-1)]
    for kwargs in bad:
        with pytest.raises(ValueError):
            LearningRateEnv(task="regression2d", **{"device": "cpu", **kwargs})


def test_held_batch_sizes_are_integers_from_one():
    """``validation_batch_size`` / ``probe_batch_size``: an integer >= 1 (1 included, numpy
    integers too), not 0, negative, a bool or a float."""
    for kwargs in (dict(reward="validation", validation_batch_size=1), dict(reward="probe", probe_batch_size=1),
                   dict(reward="probe", probe_batch_size=np.int64(2))):
        LearningRateEnv(task="regression2d", **{"device": "cpu", **kwargs})
    for kwargs in (dict(reward="validation", validation_batch_size=0),
                   dict(reward="validation", validation_batch_size=2.0),
                   dict(reward="validation", validation_batch_size=True), dict(reward="probe", probe_batch_size=0),
                   dict(reward="probe", probe_batch_size=-3)):
        with pytest.raises(ValueError, match="integer >= 1"):
            LearningRateEnv(task="regression2d", **{"device": "cpu", **kwargs})


def test_eval_every_puts_full_evaluation_in_info():
    env = LearningRateEnv(task="regression2d", eval_every=3, episode_length=7, **CPU)
    _, info = env.reset(seed=0)
    assert set(info["eval"]) == {"train_loss", "test_loss"}
    due = []
    for _ in range(7):
        *_, info = env.step(np.array([0.0]))
        due.append("eval" in info)
    assert due == [False, False, True, False, False, True, True]  # every 3 and at truncation
    tr = env.trainer
    with torch.no_grad():
        test_loss = F.mse_loss(tr.model(tr.x_test), tr.y_test).item()
    assert info["eval"]["test_loss"] == pytest.approx(test_loss, rel=1e-5)


# ----------------------------------------------------------------------------- divergence

#: D-adaptation and Prodigy multiply ``lr`` by an adapted step d that starts at d0 = 1e-6, so
#: their "huge" rate must be huge relative to 1/d0: at lr=1e6 they take steps of about 1 and
#: (measured) need not diverge on regression2d within an episode.
D_ADAPTED = ("prodigy", "dadapt-sgd", "dadapt-adam")


@pytest.mark.parametrize("task", ["regression2d", "digits"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_huge_learning_rate_diverges_cleanly_for_every_optimizer(task, optimizer, capfd):
    huge = 1e12 if optimizer in D_ADAPTED else 1e6
    env = LearningRateEnv(task=task, optimizer=optimizer, action="raw", lr_max=huge,
                          episode_length=50, **CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning of any kind, from torch or the optimizer
        env.reset(seed=0)
        for _ in range(50):
            obs, reward, terminated, truncated, info = env.step(np.array([huge], np.float32))
            if terminated or truncated:
                break
        assert terminated and not truncated and info["diverged"]
        assert reward == -env.divergence_penalty
        assert env.observation_space.contains(obs) and np.all(np.isfinite(obs))
        assert np.all(np.isfinite(info["critic_next_obs"]))
        # usable again after reset: w0 restored, a small rate trains normally
        obs, _ = env.reset()
        assert env.observation_space.contains(obs) and obs[0] < 10
        assert all(torch.isfinite(v).all() for v in weights(env).values())
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(np.array([1e-3], np.float32))
            assert not terminated and not info["diverged"] and np.isfinite(reward)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no warning spam on stdout/stderr either


def test_divergence_by_threshold_without_nan():
    """A loss above divergence_factor x the first observation counts as divergence too."""
    env = LearningRateEnv(task="regression2d", action="raw", lr_max=3.0, divergence_factor=1.5,
                          episode_length=100, **CPU)
    env.reset(seed=0)
    for _ in range(100):
        _, reward, terminated, truncated, info = env.step(np.array([3.0]))
        if terminated or truncated:
            break
    assert terminated and info["diverged"] and reward == -10.0
    assert math.isfinite(info["loss_after"]) or math.isfinite(info["batch_loss"])


def test_initial_loss_above_obs_max_warns_once_instead_of_failing_silently():
    """A user task whose loss starts above obs_max would 'diverge' at every step: say so, once."""
    from envs import Task

    x = torch.randn(40, 2)
    y = 1000.0 * torch.randn(40, 1)  # MSE around 1e6 > obs_max = 1e3
    task = Task.from_tensors(x, y, x, y, model_factory=lambda: torch.nn.Linear(2, 1),
                             loss_fn=F.mse_loss, batch_size=10)
    env = LearningRateEnv(task=task, fresh_w0=True, **CPU)
    with pytest.warns(UserWarning, match="obs_max"):
        env.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.reset()  # not again
        _, reward, terminated, *_ = env.step(np.array([0.0]))
    assert terminated and reward == -10.0  # the documented consequence
    env = LearningRateEnv(task=task, obs_max=1e9, **CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.reset(seed=0)
        assert not env.step(np.array([-1.0]))[2]


# ----------------------------------------------------------------------------- actions


@pytest.mark.parametrize("action_mode", ACTIONS)
def test_non_finite_actions_raise_value_error(action_mode):
    env = LearningRateEnv(task="regression2d", action=action_mode, **CPU)
    env.reset(seed=0)
    w = weights(env)
    bads = (np.nan, np.inf, -np.inf, [np.nan], np.array([np.inf], np.float32))
    if env.action_space.shape == (2,):  # capped: a rate and a cap, either one non-finite
        bads = ([np.nan, 0.0], [0.0, np.inf], np.array([-np.inf, 0.5], np.float32))
    for bad in bads:
        with pytest.raises(ValueError, match="finite"):
            env.step(bad)
    assert_same_weights(weights(env), w)  # a refused action changes nothing


def test_non_numeric_actions_raise_type_error():
    env = LearningRateEnv(task="regression2d", **CPU)
    env.reset(seed=0)
    for bad in ("0.5", ["0.5"], None, [None], object(), {"lr": 0.1}, np.array([0.5 + 1j]),
                np.array([1], dtype="timedelta64[s]"), np.array(["a"])):
        with pytest.raises(TypeError, match="numeric"):
            env.step(bad)


def test_wrong_shapes_raise_value_error():
    env = LearningRateEnv(task="regression2d", **CPU)
    env.reset(seed=0)
    for bad in ([], [0.1, 0.2], np.zeros((2, 1)), np.zeros((1, 1, 1)), np.zeros(0)):
        with pytest.raises(ValueError, match="shape"):
            env.step(bad)
    group_env = LearningRateEnv(task="digits", per_group=True, **CPU)
    group_env.reset(seed=0)
    for bad in ([0.0], np.zeros(3), np.zeros(5)):
        with pytest.raises(ValueError, match=r"shape \(4,\)"):
            group_env.step(bad)
    # accepted forms of a correct action: python float, 0-d and (1,) arrays, ints, bools, tensors
    for ok in (0.0, 0, np.float64(0.1), np.array(0.3), [0.2], np.array([[0.1]]), True,
               np.array([0.5], np.float16), torch.tensor([0.3])):
        env.step(ok)


@pytest.mark.parametrize("action_mode,action,expected", [
    ("absolute", 5.0, 1.0), ("absolute", -7.0, 1e-5), ("absolute", 1e30, 1.0),
    ("raw", 1e9, 1.0), ("raw", -3.0, 1e-5), ("raw", 0.0, 1e-5),
    ("relative", 10.0, math.sqrt(1e-5) * 2.0), ("relative", -1e6, math.sqrt(1e-5) / 2.0),
])
def test_finite_out_of_range_actions_are_clipped(action_mode, action, expected):
    env = LearningRateEnv(task="regression2d", action=action_mode, **CPU)
    env.reset(seed=0)
    *_, info = env.step(np.array([action]))
    assert info["lr"] == pytest.approx(expected, rel=1e-6)
    assert env.trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-6)


def test_relative_action_multiplies_the_rate_within_bounds():
    env = LearningRateEnv(task="regression2d", action="relative", initial_lr=0.01, relative_every=2,
                          **CPU)
    obs, _ = env.reset(seed=0)
    assert obs[1] == pytest.approx(env.lr_to_unit(0.01)[()], rel=1e-5)  # the lr feature is on
    lrs = [env.step(np.array([1.0]))[4]["lr"] for _ in range(4)]
    assert lrs == pytest.approx([0.02, 0.02, 0.04, 0.04])  # decisions every 2nd step only
    for _ in range(40):
        *_, info = env.step(np.array([1.0]))
    assert info["lr"] == pytest.approx(1.0)  # held at lr_max


def test_per_group_actions_set_one_rate_per_group():
    env = LearningRateEnv(task="digits", per_group=True, action="raw", **CPU)
    env.reset(seed=0)
    rates = np.array([0.1, 0.01, 0.001, 0.5])
    *_, info = env.step(rates)
    np.testing.assert_allclose(info["lr"], rates, rtol=1e-6)
    np.testing.assert_allclose([g["lr"] for g in env.trainer.optimizer.param_groups], rates, rtol=1e-6)


# ----------------------------------------------------------------------------- fresh interpreter


def test_gym_make_works_in_a_fresh_interpreter(tmp_path):
    """Relies on the installed package (pip install -e .), not on the repo being the cwd."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import gymnasium as gym; e = gym.make('envs:LearningRate-v0', device='cpu'); "
            "o, _ = e.reset(seed=0); r = e.step(e.action_space.sample()); "
            "print(type(e.unwrapped).__name__, o.shape, e.unwrapped.trainer.task.name)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["LearningRateEnv", "(1,)", "digits"]
