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


# ----------------------------------------------------------------------------- rendering
def test_render_modes_are_declared_and_accepted():
    assert set(LearningRateEnv.metadata["render_modes"]) == {"ansi", "rgb_array", "human"}
    for mode in (None, "ansi", "rgb_array", "human"):
        assert gym.make("envs:LearningRate-Regression2D-v0", render_mode=mode, **CPU).render_mode == mode
    with pytest.raises(ValueError, match="render_mode"):
        LearningRateEnv("regression2d", render_mode="video", **CPU)


def test_render_checked_by_gymnasium_for_every_mode():
    from gymnasium.utils.env_checker import check_env
    env = gym.make("envs:LearningRate-Regression2D-v0", render_mode="ansi", episode_length=5, **CPU)
    check_env(env.unwrapped)  # with the render check: it builds an env per declared mode


def test_ansi_render_shows_the_current_step():
    env = LearningRateEnv("regression2d", render_mode="ansi", episode_length=3, seed=0, **CPU)
    env.reset()
    assert env.render().startswith("update     0/3")
    _, reward, _, _, info = env.step(np.array([0.2], np.float32))
    text = env.render()
    assert f"update     1/3  lr {info['lr']:.3e}" in text
    assert f"{info['loss_before']:.6g} -> {info['loss_after']:.6g}" in text and f"{reward:+.4g}" in text
    env.step(np.array([0.2], np.float32))
    env.step(np.array([0.2], np.float32))
    assert env.render().endswith("(episode end)")


def test_human_render_prints_every_step(capsys):
    env = LearningRateEnv("regression2d", render_mode="human", episode_length=3, seed=0, **CPU)
    env.reset()
    env.step(np.array([0.0], np.float32))
    assert env.render() is None  # rl-zoo3's enjoy calls it after each step: no second line
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["0/3", "1/3"]


def test_rgb_array_render_plots_the_episode_so_far():
    env = LearningRateEnv("regression2d", render_mode="rgb_array", episode_length=20, seed=0, **CPU)
    env.reset()
    first = env.render()
    assert first.shape == (480, 640, 3) and first.dtype == np.uint8
    for a in np.linspace(-1, 1, 10):
        env.step(np.array([a], np.float32))
    frame = env.render()
    assert frame.shape == first.shape and not np.array_equal(frame, first)  # the curves grew
    assert len(env._history["lr"]) == 11
    # the same episode renders the same image (a video of a seeded episode is reproducible)
    env.reset(seed=0)
    for a in np.linspace(-1, 1, 10):
        env.step(np.array([a], np.float32))
    np.testing.assert_array_equal(env.render(), frame)


def test_render_without_a_mode_warns_and_returns_none():
    env = LearningRateEnv("regression2d", seed=0, **CPU)
    env.reset()
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None


# ----------------------------------------------------------------------------- spec
@pytest.mark.parametrize("kwargs, decisions", [
    ({}, 200), ({"episode_length": 50}, 50), ({"episode_length": 50, "updates_per_step": 4}, 13),
    ({"updates_per_step": 8}, 25)])
def test_spec_max_episode_steps_is_the_episode_length_in_env_steps(kwargs, decisions):
    env = gym.make("envs:LearningRate-Regression2D-v0", **kwargs, **CPU)
    assert env.spec.max_episode_steps == decisions == env.unwrapped.max_episode_steps
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.array([-1.0], np.float32))
        steps += 1
        assert not terminated
    assert steps == decisions
    # no second TimeLimit was added: the env truncates itself
    assert not any(isinstance(w, gym.wrappers.TimeLimit) for w in _wrappers(env))


def _wrappers(env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env


def test_spec_is_json_serialisable_and_remakes_the_same_env():
    env = gym.make("envs:LearningRate-v0", episode_length=30, updates_per_step=2, **CPU)
    text = env.spec.to_json()
    again = gym.make(gym.envs.registration.EnvSpec.from_json(text))
    assert again.unwrapped.episode_length == 30 and again.spec.max_episode_steps == 15
    assert gym.spec("LearningRate-v0").to_json()


def test_a_directly_built_env_has_no_spec():
    assert LearningRateEnv("regression2d", **CPU).spec is None


# ----------------------------------------------------------------------------- seeds
def test_unseeded_first_reset_draws_a_random_seed_and_records_it():
    vec = gym.make_vec("envs:LearningRate-Regression2D-v0", num_envs=3, vectorization_mode="sync", **CPU)
    obs, info = vec.reset()
    seeds = info["seed"].tolist()
    assert len(set(seeds)) == 3  # the envs of a vector env differ
    assert len(set(obs[:, 0].tolist())) == 3
    # the recorded seed reproduces the run
    env = LearningRateEnv("regression2d", **CPU)
    _, info = env.reset()
    replay = LearningRateEnv("regression2d", **CPU)
    _, replay_info = replay.reset(seed=info["seed"])
    assert replay_info["seed"] == info["seed"]
    _assert_same_steps(_roll(env, ACTIONS), _roll(replay, ACTIONS))


def test_an_explicit_constructor_seed_stays_deterministic():
    a, b = LearningRateEnv("regression2d", seed=7, **CPU), LearningRateEnv("regression2d", seed=7, **CPU)
    (obs_a, info_a), (obs_b, info_b) = a.reset(), b.reset()
    assert info_a["seed"] == info_b["seed"] == 7
    np.testing.assert_array_equal(obs_a, obs_b)
    _assert_same_steps(_roll(a, ACTIONS), _roll(b, ACTIONS))
    # later unseeded resets continue the run (same w0, new batches): the seed stays recorded
    assert a.reset()[1]["seed"] == 7


# ----------------------------------------------------------------------------- your own id
def test_register_your_own_task_as_an_id(monkeypatch):
    """The README's recipe: a ``module:function`` task name in the registration's kwargs."""
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    env_id = "LearningRate-WineTest-v0"
    gym.register(id=env_id, entry_point="envs.learning_rate_env:LearningRateEnv",
                 kwargs={"task": "user_tasks.wine:make", "episode_length": 40})
    try:
        env = gym.make(env_id, updates_per_step=4, **CPU)
        assert env.unwrapped.trainer.task.name == "wine"
        assert env.spec.max_episode_steps == 10
        spec = gym.envs.registration.EnvSpec.from_json(env.spec.to_json())  # JSON-serialisable
        assert spec.kwargs["task"] == "user_tasks.wine:make"
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        rewards = [env.step(np.array([0.0], np.float32))[1] for _ in range(10)]
        assert sum(rewards) > 0  # a rate of 3e-3 lowers the loss
        # and it pickles (a module-level model factory), so it vectorises with spawn too
        twin = _pickle_copy(env)
        assert twin.unwrapped.trainer.task.name == "wine"
    finally:
        del gym.registry[env_id]


# ----------------------------------------------------------------------------- package facts
def test_versions_and_license_files():
    import agents
    from envs._version import __version__
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    assert envs.__version__ == agents.__version__ == __version__
    assert f"## {__version__}" in (root / "CHANGELOG.md").read_text()
    assert f"version: {__version__}" in (root / "CITATION.cff").read_text()
    assert (root / "LICENSE").read_text().startswith("MIT License")
    assert "1705.11159" in (root / "CITATION.cff").read_text()
