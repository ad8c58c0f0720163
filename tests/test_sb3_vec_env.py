"""agents.vec_env: SB3 algorithms train unmodified on LearningRateVectorEnv."""
from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import DDPG, PPO, SAC, TD3

from agents.sb3 import make_sb3_agent
from agents.vec_env import SB3VecEnv, make_sb3_vec_env
from envs import LearningRateEnv
from envs.vector_env import LearningRateVectorEnv


def test_adapter_follows_sb3_conventions_and_equals_the_single_env():
    venv = SB3VecEnv(LearningRateVectorEnv("regression2d", num_envs=3, device="cpu", episode_length=2))
    venv.seed(7)
    obs = venv.reset()
    single = LearningRateEnv("regression2d", device="cpu", episode_length=2)
    o, _ = single.reset(seed=8)
    assert obs.shape == (3, 1) and np.allclose(obs[1], o, rtol=1e-5)
    for t in range(2):
        venv.step_async(np.full((3, 1), -0.5, np.float32))
        obs, rewards, dones, infos = venv.step_wait()
        o, r, te, tr, info = single.step(np.array([-0.5], np.float32))
        assert isinstance(infos, list) and len(infos) == 3 and rewards.shape == (3,)
        assert np.isclose(rewards[1], r, rtol=1e-4, atol=1e-6)
    # the episode (2 updates) ended: SB3's keys, and the observation is the new episode's
    assert dones.all() and tr
    assert np.allclose(infos[1]["terminal_observation"], o, rtol=1e-5)
    assert infos[1]["TimeLimit.truncated"] is True and infos[1]["step"] == 2
    assert np.allclose(obs[1], single.reset()[0], rtol=1e-5)
    assert venv.get_attr("num_envs") == [3, 3, 3]


def test_adapter_refuses_next_step_autoreset():
    import gymnasium as gym

    sync = gym.make_vec("envs:LearningRate-Regression2D-v0", num_envs=2, vectorization_mode="sync",
                        device="cpu")
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnv(sync)


@pytest.mark.parametrize("algo", [DDPG, TD3, SAC, PPO])
def test_sb3_algorithms_train_on_the_vector_env(algo):
    env = make_sb3_vec_env("regression2d", num_envs=4, device="cpu", episode_length=20)
    kwargs = dict(n_steps=32, batch_size=64) if algo is PPO else dict(learning_starts=40, batch_size=32)
    model = algo("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [16]}, **kwargs)
    model.learn(256)
    assert model.num_timesteps >= 256
    # episodes of 20 updates in 4 sub-envs: VecMonitor saw 4 * 256 / (4 * 20) of them
    assert len(model.ep_info_buffer) >= 10
    action, _ = model.predict(env.reset(), deterministic=True)
    assert action.shape == (4, 1)


def test_make_sb3_agent_accepts_the_vector_env():
    env = make_sb3_vec_env("regression2d", num_envs=2, device="cpu", episode_length=10)
    model = make_sb3_agent("td3", env, device="cpu", learning_starts=20, batch_size=16, net_arch=[8])
    model.learn(60)
    assert model.num_timesteps >= 60 and model.get_env().num_envs == 2


def test_collapse_and_finite_horizon_equal_the_single_env_wrappers():
    from agents.wrappers import CollapseTermination, FiniteHorizon

    kwargs = dict(device="cpu", action="raw", lr_max=10.0, episode_length=12)
    collapse = dict(drop=0.8, fraction=0.9)
    venv = SB3VecEnv(LearningRateVectorEnv("regression2d", num_envs=2, **kwargs), collapse=collapse,
                     finite_horizon=True)
    venv.seed(0)
    obs = venv.reset()
    singles = [FiniteHorizon(CollapseTermination(LearningRateEnv("regression2d", **kwargs), **collapse))
               for _ in range(2)]
    for i, env in enumerate(singles):
        assert np.allclose(obs[i], env.reset(seed=i)[0], rtol=1e-5)
    # sub-env 0 trains, then its rate makes SGD unstable (loss x4 per step): a collapse long
    # before divergence; sub-env 1 trains throughout and is truncated -> terminated
    collapsed = 0
    for t in range(14):
        a = np.array([[0.05 if t < 6 else 1.5], [0.05]], np.float32)
        venv.step_async(a)
        obs, rewards, dones, infos = venv.step_wait()
        for i, env in enumerate(singles):
            o, r, te, tr, info = env.step(a[i])
            assert not tr  # FiniteHorizon
            assert dones[i] == te and np.isclose(rewards[i], r, rtol=1e-4, atol=1e-6), (t, i)
            if te:
                collapsed += bool(info.get("collapsed"))
                assert infos[i].get("collapsed", False) == info.get("collapsed", False)
                assert infos[i]["TimeLimit.truncated"] is False
                assert np.allclose(infos[i]["terminal_observation"], o, rtol=1e-5)
                o, _ = env.reset()
            assert np.allclose(obs[i], o, rtol=1e-5), (t, i)
    assert collapsed >= 1


def test_partial_reset_restarts_only_the_masked_sub_envs():
    kwargs = dict(device="cpu", episode_length=50)
    vec = LearningRateVectorEnv("regression2d", num_envs=2, **kwargs)
    single = LearningRateEnv("regression2d", **kwargs)
    vec.reset(seed=0)
    single.reset(seed=1)
    obs, *_ = vec.step(np.zeros((2, 1), np.float32))
    single.step(np.zeros(1, np.float32))
    new, infos = vec.reset(options={"reset_mask": np.array([False, True])})
    assert np.array_equal(new[0], obs[0]) and infos["_step"].tolist() == [False, True]
    assert np.allclose(new[1], single.reset()[0], rtol=1e-5)
