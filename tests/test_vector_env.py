"""LearningRateVectorEnv: sub-env i equals LearningRateEnv(seed=s+i) driven by the same actions;
fallback to single envs; bad input; gymnasium registration (make_vec)."""
from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode

import envs
from envs import LearningRateEnv, Task
from envs.vector_env import LearningRateVectorEnv, unbatch_info

RTOL = 1e-5
FLOAT_KEYS = ("loss_before", "loss_after", "batch_loss")


def user_task() -> Task:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return Task.from_tensors(x[:150], y[:150], x[150:], y[150:], batch_size=16, name="mine",
                             model_factory=lambda: torch.nn.Sequential(
                                 torch.nn.Linear(6, 12), torch.nn.Tanh(), torch.nn.Linear(12, 3)))


def close(a, b, rtol=RTOL, atol=1e-7) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                            rtol=rtol, atol=atol))


def obs_close(a, b, env) -> bool:
    """Observations equal to 1e-5 relative; the ``loss_var`` entry (an EMA of squared differences
    of consecutive losses, each equal to 1e-5 relative) to 1e-5 of the squared loss scale."""
    a, b = np.asarray(a, np.float64).copy(), np.asarray(b, np.float64).copy()
    control = env.control
    if "loss_var" in control.features:
        j = 1
        for name in control.features:
            if name == "loss_var":
                break
            j += control.n_groups if name == "lr" else 1
        va, vb = a[j], b[j]
        if control.log_observations:
            va, vb = 10.0 ** va, 10.0 ** vb
        scale = max(abs(control.ema), 1e-3) ** 2
        if abs(va - vb) > RTOL * scale:
            return False
        a[j] = b[j] = 0.0
    return close(a, b)


def reward_close(r_vec, r_single, info, env) -> bool:
    """Rewards within 1e-5 relative of the losses they are computed from: a reward is a
    difference of two losses (or of their logs), each equal to 1e-5 relative, so its error is
    bounded by 1e-5 of the losses' scale (1 for log-ratio), not of the (small) difference."""
    if env.reward_transform == "log-ratio":
        scale = env.reward_scale
    else:
        scale = env.reward_scale * max(abs(info["loss_before"]), abs(info["loss_after"]))
    return abs(r_vec - r_single) <= RTOL * max(abs(r_single), scale, 1e-12)


def assert_info_equal(vec: dict, single: dict, where: str, env=None) -> None:
    assert set(vec) == set(single), f"{where}: keys {sorted(vec)} != {sorted(single)}"
    for k, want in single.items():
        got = vec[k]
        if isinstance(want, dict):
            assert_info_equal(got, want, f"{where}[{k}]", env)
        elif isinstance(want, (bool, np.bool_)) or k == "step":
            assert got == want, f"{where}[{k}]: {got} != {want}"
        elif k == "critic_next_obs":
            assert obs_close(got, want, env), f"{where}[{k}]: {got} != {want}"
        else:
            assert close(got, want), f"{where}[{k}]: {got} != {want}"


def run_pair(task="digits", num_envs=3, seed=5, steps=6, actions=None, **kwargs):
    """Drive the vector env and num_envs single envs with the same actions; compare everything.
    Returns the vector env (for further checks)."""
    vec = LearningRateVectorEnv(task, num_envs=num_envs, seed=0, batched=True, device="cpu", **kwargs)
    assert vec.batched
    singles = [LearningRateEnv(task, device="cpu", **kwargs) for _ in range(num_envs)]
    obs, infos = vec.reset(seed=seed)
    assert vec.observation_space.contains(obs)
    for i, env in enumerate(singles):
        o, info = env.reset(seed=seed + i)
        assert obs_close(obs[i], o, env), f"reset obs of sub-env {i}"
        assert_info_equal(unbatch_info(infos, i), info, f"reset info of sub-env {i}")
    rng = np.random.default_rng(seed)
    space = vec.single_action_space
    ended = 0
    for t in range(steps):
        if actions is not None:
            a = actions(t, rng)
        else:
            a = rng.uniform(space.low, space.high, size=(num_envs,) + space.shape).astype(np.float32)
            if kwargs.get("action", "absolute") in ("absolute", "capped"):
                a[:, 0] = np.clip(a[:, 0], -1.0, 0.2)  # keep rates where digits trains, not diverges
        obs, rewards, term, trunc, infos = vec.step(a)
        for i, env in enumerate(singles):
            o, r, te, tr, info = env.step(a[i])
            where = f"step {t}, sub-env {i}"
            assert (term[i], trunc[i]) == (te, tr), where
            assert reward_close(rewards[i], r, info, env), f"{where}: reward {rewards[i]} != {r}"
            if te or tr:
                ended += 1
                assert infos["_final_obs"][i] and infos["_final_info"][i], where
                assert obs_close(infos["final_obs"][i], o, env), where
                assert_info_equal(unbatch_info(infos["final_info"], i), info, where + " final_info", env)
                o, info = env.reset()
            assert obs_close(obs[i], o, env), f"{where}: obs {obs[i]} != {o}"
            assert_info_equal(unbatch_info(infos, i), info, where, env)
    for i, env in enumerate(singles):
        want = env.trainer.model.state_dict()
        got = vec.model_state(i)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=RTOL, atol=1e-6, msg=f"weights {k} of sub-env {i}")
    vec.ended = ended
    return vec


@pytest.mark.parametrize("kwargs", [
    {},                                                              # the paper's protocol
    {"reward": "next-batch", "reward_transform": "log-ratio", "log_observations": True,
     "features": ("lr", "step_fraction", "loss_ema", "loss_var", "val_loss", "grad_norm")},
    {"reward": "validation", "validation_batch_size": 40, "reward_scale": 3.0},
    {"reward": "validation", "validation_batch_size": 40, "rotating_validation": True,
     "validation_size": 100, "features": ("val_loss",)},
    {"reward": "probe", "validation_batch_size": 60, "reward_transform": "log-ratio"},
    {"reward": "probe", "validation_batch_size": 60, "rotating_validation": True},
    {"reward": "probe", "probe_batch_size": 30, "validation_batch_size": 60, "features": ("val_loss",)},
    {"action": "relative", "relative_every": 2, "initial_lr": 0.05},
    {"action": "raw", "lr_max": 0.3},
    {"action": "capped", "updates_per_step": 2, "step_cap_min": 1e-3, "step_cap_max": 1.0},
    {"updates_per_step": 3, "episode_length": 7, "eval_every": 4},
    {"fresh_w0": True, "eval_every": 2},
    {"per_group": True, "optimizer": "momentum", "features": ("lr",)},
    {"optimizer": "nesterov", "optimizer_kwargs": {"weight_decay": 1e-3}},
    {"optimizer": "sgd", "optimizer_kwargs": {"momentum": 0.5, "dampening": 0.3}},
    {"optimizer": "adam", "lr_max": 0.01},
    {"optimizer": "adam", "optimizer_kwargs": {"weight_decay": 1e-2, "betas": (0.8, 0.99)}, "lr_max": 0.01},
    {"optimizer": "adamw", "per_group": True, "lr_max": 0.01, "updates_per_step": 2},
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_digits_sub_envs_equal_single_envs(kwargs):
    kwargs = {"episode_length": 4, **kwargs}
    vec = run_pair("digits", steps=7, **kwargs)
    assert vec.ended >= 3  # the autoreset path was exercised


@pytest.mark.parametrize("kwargs", [
    {},
    {"optimizer": "adam", "reward": "next-batch", "features": ("grad_norm", "loss_ema")},
    {"optimizer": "momentum", "updates_per_step": 2, "fresh_w0": True, "reward": "probe"},
    {"action": "capped", "step_cap_min": 1e-3, "step_cap_max": 0.1},
], ids=["default", "adam-next-batch", "momentum-k2-fresh-probe", "capped"])
def test_regression2d_sub_envs_equal_single_envs(kwargs):
    vec = run_pair("regression2d", num_envs=4, steps=8, episode_length=5, **kwargs)
    assert vec.ended >= 4


@pytest.mark.parametrize("kwargs", [{}, {"optimizer": "adamw", "per_group": True, "lr_max": 0.05,
                                         "reward": "validation", "validation_batch_size": 20}])
def test_user_task_sub_envs_equal_single_envs(kwargs):
    run_pair(user_task(), num_envs=2, steps=6, episode_length=3, **kwargs)


def test_reset_with_a_new_seed_mid_run_reseeds_each_sub_env():
    vec = LearningRateVectorEnv("regression2d", num_envs=2, device="cpu", episode_length=50)
    vec.reset(seed=1)
    vec.step(np.zeros((2, 1), np.float32))
    obs, _ = vec.reset(seed=20)
    for i in range(2):
        o, _ = LearningRateEnv("regression2d", device="cpu", episode_length=50).reset(seed=20 + i)
        assert close(obs[i], o)
    # unseeded first reset: sub-env i uses seed + i
    vec = LearningRateVectorEnv("regression2d", num_envs=2, seed=9, device="cpu")
    obs, _ = vec.reset()
    assert close(obs[1], LearningRateEnv("regression2d", seed=10, device="cpu").reset()[0])
    assert not close(obs[0], obs[1])


def test_divergence_in_one_sub_env_terminates_and_autoresets_only_it():
    kwargs = dict(device="cpu", action="raw", lr_max=1e4, episode_length=100)
    vec = LearningRateVectorEnv("regression2d", num_envs=3, **kwargs)
    single = LearningRateEnv("regression2d", **kwargs)
    vec.reset(seed=0)
    single.reset(seed=1)
    actions = np.full((3, 1), 1e-3, np.float32)
    actions[1] = 1e4
    for _ in range(20):
        obs, rewards, term, trunc, infos = vec.step(actions)
        single.step(actions[1])
        if term[1]:
            break
    assert term[1] and not term[0] and not term[2] and not trunc.any()
    assert rewards[1] == -vec.single_env.divergence_penalty
    assert infos["final_info"]["diverged"][1] and infos["_final_info"].tolist() == [False, True, False]
    assert close(obs[1], single.reset()[0])  # sub-env 1 starts again from w0
    assert infos["step"][1] == 0 and infos["step"][0] > 0


@pytest.fixture
def vmap_only(monkeypatch):
    """Every model takes the batched trainer's vmap path (the one CUDA uses), not LayerStack."""
    import envs.batched
    from envs.layerwise import LayerStackUnsupported

    def refuse(*args, **kwargs):
        raise LayerStackUnsupported("refused by the test")

    monkeypatch.setattr(envs.batched, "LayerStack", refuse)


@pytest.mark.parametrize("task, kwargs", [
    ("digits", {}),
    # (Adam with the validation reward is left out: Adam's first steps are ~lr * sign(g), so a
    # 1e-7 rounding difference in a near-zero gradient entry moves a weight by ~1e-6 on either
    # path, in either layout; measured 2e-6 between vmap and the default NCHW layout.)
    ("digits", {"optimizer": "adam", "lr_max": 0.01}),
    ("digits", {"reward": "validation", "validation_batch_size": 40, "features": ("val_loss", "grad_norm")}),
    ("regression2d", {"optimizer": "momentum", "updates_per_step": 2, "fresh_w0": True}),
    ("user", {}),
], ids=["digits", "digits-adam", "digits-validation", "regression2d", "user"])
def test_vmap_path_sub_envs_equal_single_envs(task, kwargs, vmap_only):
    vec = run_pair(user_task() if task == "user" else task, num_envs=3, steps=6, episode_length=4, **kwargs)
    assert vec.trainer.layer_stack is None


@pytest.mark.parametrize("task", ["digits", "regression2d", "user"])
def test_plain_stacks_take_the_layerwise_path_on_the_cpu(task):
    vec = LearningRateVectorEnv(user_task() if task == "user" else task, num_envs=2, batched=True, device="cpu")
    assert vec.trainer.layer_stack is not None
    assert vec.trainer.template.channels_last == (task == "digits")


def test_the_mnist_cnn_is_batched():
    """The paper's MNIST CNN on MNIST-shaped data (benchmarks' random stand-in): its batched
    gradients once differed from the single model's NCHW ones by 0.9 % in norm (a max-pooling
    near-tie; the NCHW float32 gradient was the one off float64), and the vector env fell back to
    single envs."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.common import make_bench_task

    vec = LearningRateVectorEnv(make_bench_task("mnist-cnn"), num_envs=4, batched=True, device="cpu")
    assert vec.batched and vec.trainer.layer_stack is not None


# ---------------------------------------------------------------------- fallback
def bn_task() -> Task:
    base = user_task()
    base.model_factory = lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8),
                                                     torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return base


class Branchy(torch.nn.Module):
    """Data-dependent control flow: which layer runs depends on the input's values."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.a(x) if x.sum() > 0 else self.b(x)


@pytest.mark.parametrize("make, why, deterministic", [
    (lambda: dict(task=bn_task()), "BatchNorm", True),
    (lambda: dict(task=Task.from_tensors(*user_task_tensors(), model_factory=Branchy, batch_size=16)),
     "torch.func", True),
    # dropout draws from torch's global generator: each run differs, so no trajectory comparison
    (lambda: dict(task=Task.from_tensors(*user_task_tensors(), batch_size=16, model_factory=lambda:
                  torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3)))),
     "torch.func", False),
    (lambda: dict(task="regression2d", optimizer="adagrad"), "adagrad", True),
    (lambda: dict(task="regression2d", optimizer="adam", optimizer_kwargs={"amsgrad": True}), "amsgrad", True),
], ids=["batchnorm", "control-flow", "dropout", "adagrad", "amsgrad"])
def test_unbatchable_runs_single_envs_with_one_warning(make, why, deterministic):
    kwargs = make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vec = LearningRateVectorEnv(num_envs=2, device="cpu", episode_length=3, **kwargs)
    ours = [w for w in caught if "LearningRateVectorEnv" in str(w.message)]
    assert len(ours) == 1 and why in str(ours[0].message), [str(w.message) for w in caught]
    assert not vec.batched and why in vec.fallback_reason
    obs, _ = vec.reset(seed=3)
    single = LearningRateEnv(device="cpu", episode_length=3, **kwargs)
    o, _ = single.reset(seed=4)
    assert close(obs[1], o) or not deterministic
    for _ in range(4):  # through an autoreset
        a = np.full((2,) + vec.single_action_space.shape, -0.5, np.float32)
        obs, r, te, tr, infos = vec.step(a)
        o, r1, te1, tr1, _ = single.step(a[1])
        if te1 or tr1:
            o, _ = single.reset()
            assert infos["_final_obs"][1]
        assert (close(obs[1], o) and close(r[1], r1)) or not deterministic
    with pytest.raises(ValueError, match="cannot be batched"):
        LearningRateVectorEnv(num_envs=2, device="cpu", batched=True, **kwargs)


def user_task_tensors():
    t = user_task()
    return t.x_train, t.y_train, t.x_test, t.y_test


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("n", [0, -1, 2.5, "3", True, None])
def test_num_envs_must_be_a_positive_integer(n):
    with pytest.raises(ValueError, match="num_envs"):
        LearningRateVectorEnv("regression2d", num_envs=n, device="cpu")


@pytest.mark.parametrize("batched", [True, False])
def test_bad_actions_name_the_shape_or_the_sub_env(batched):
    vec = LearningRateVectorEnv("regression2d", num_envs=3, device="cpu", batched=batched)
    obs, _ = vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(3, 1\)"):
        vec.step(np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"\(3, 1\)"):
        vec.step(np.zeros((3, 2)))
    bad = np.zeros((3, 1))
    bad[2] = np.nan
    with pytest.raises(ValueError, match="sub-env 2"):
        vec.step(bad)
    # a refused step changed nothing: the next step equals a fresh env's first step
    obs1, *_ = vec.step(np.zeros((3, 1)))
    fresh = LearningRateVectorEnv("regression2d", num_envs=3, device="cpu", batched=batched)
    fresh.reset(seed=0)
    assert close(obs1, fresh.step(np.zeros((3, 1)))[0])


def test_step_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="reset"):
        LearningRateVectorEnv("regression2d", num_envs=2, device="cpu").step(np.zeros((2, 1)))


# ---------------------------------------------------------------------- registration
def test_metadata_declares_same_step_autoreset():
    vec = LearningRateVectorEnv("regression2d", num_envs=2, device="cpu")
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert vec.action_space.shape == (2, 1) and vec.observation_space.shape == (2, 1)


@pytest.mark.parametrize("env_id", sorted(envs.ENV_IDS))
def test_make_vec_returns_the_vector_env_for_every_id(env_id):
    spec = gym.spec(env_id)
    assert spec.vector_entry_point is not None
    if envs.ENV_IDS[env_id] not in envs.OFFLINE_TASKS:
        return  # needs a download; the entry point is the same class
    vec = gym.make_vec(env_id, num_envs=2, episode_length=5, device="cpu")
    assert isinstance(vec.unwrapped, LearningRateVectorEnv) and vec.unwrapped.batched
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, 1)
    vec.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec_sync_and_async_still_work(mode):
    vec = gym.make_vec("envs:LearningRate-Regression2D-v0", num_envs=2, vectorization_mode=mode,
                       episode_length=5, device="cpu")
    try:
        obs, _ = vec.reset(seed=0)
        ours = LearningRateVectorEnv("regression2d", num_envs=2, episode_length=5, device="cpu")
        assert close(obs, ours.reset(seed=0)[0])
        obs, r, *_ = vec.step(np.zeros((2, 1), np.float32))
        assert obs.shape == (2, 1) and r.shape == (2,)
    finally:
        vec.close()


def test_batched_evaluation_of_a_cnn_is_the_single_envs_bit_for_bit():
    """On the CPU a CNN's runs are evaluated one at a time by PrimaryTrainer's own evaluation."""
    from envs.batched import BatchedPrimaryTrainer
    from envs.primary import PrimaryTrainer

    batched = BatchedPrimaryTrainer(PrimaryTrainer("digits", device="cpu", validation_size=50), [3, 4])
    got = batched.evaluate([1, 0], splits=("train", "val"))
    for row, seed in zip(got, (4, 3)):
        assert row == PrimaryTrainer("digits", device="cpu", seed=seed, validation_size=50).evaluate(("train", "val"))
