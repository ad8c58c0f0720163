"""PolicySearch (agents/policy_search.py): the cross-entropy method finds a known optimum, its
checkpoints round-trip, and it trains and loads through train_controller.py."""
from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import train_controller
from agents.callbacks import deterministic_return
from agents.checkpoint import load_controller
from agents.io import CheckpointError
from agents.policy_search import LinearPolicy, PolicySearch


class TargetEnv(gym.Env):
    """Episodes of 3 steps; reward -(a - target(obs))^2 per step, target = 0.5 * obs[0] - 0.2,
    obs[0] in [-1, 1] drawn from the reset seed. The best linear-tanh policy is known."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t = 0

    def _obs(self):
        return np.array([self.np_random.uniform(-1, 1), 0.3], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.obs = self._obs()
        return self.obs, {}

    def step(self, action):
        target = 0.5 * float(self.obs[0]) - 0.2
        reward = -(float(action[0]) - target) ** 2
        self.t += 1
        self.obs = self._obs()
        return self.obs, reward, False, self.t >= 3, {}


def test_linear_policy_scales_the_observation_box_and_maps_onto_the_action_box():
    obs_space = spaces.Box(np.array([-8.0, 0.0], np.float32), np.array([3.0, 1.0], np.float32))
    act_space = spaces.Box(np.array([0.0, 10.0], np.float32), np.array([1.0, 20.0], np.float32))
    policy = LinearPolicy(obs_space, act_space)
    assert policy.n_params == 2 * (2 + 1)
    theta = np.zeros(policy.n_params)
    np.testing.assert_allclose(policy.action(theta, obs_space.low), [[0.5, 15.0]])  # tanh(0) = box centre
    theta[-2:] = [20.0, -20.0]  # saturated biases: the box's corners
    np.testing.assert_allclose(policy.action(theta, obs_space.high), [[1.0, 10.0]], atol=1e-6)
    theta = np.zeros(policy.n_params)
    theta[0] = 1.0  # first output = tanh(scaled obs[0]): -1 at the low bound, +1 at the high one
    np.testing.assert_allclose(policy.unit_action(theta, [[-8.0, 0.5], [3.0, 0.5]])[:, 0], np.tanh([-1.0, 1.0]))


def test_cross_entropy_method_finds_the_best_linear_policy():
    agent = PolicySearch(TargetEnv(), population=16, init_std=0.5, noise_decay=8, seed=3)
    before = deterministic_return(agent, TargetEnv(), seeds=(11, 12, 13, 14))
    agent.learn(16 * 3 * 25)  # 25 generations of 16 episodes of 3 steps
    after = deterministic_return(agent, TargetEnv(), seeds=(11, 12, 13, 14))
    assert agent.generation == 25 and agent.num_timesteps == 16 * 3 * 25
    assert before < -0.05 and after > -0.01, (before, after)
    # the learned weights: action ~ 0.5 * obs[0] - 0.2, i.e. tanh(w0 * x0 + w1 * x1 + b) near linear
    grid = np.array([[x, 0.3] for x in np.linspace(-1, 1, 9)], np.float32)
    action, state = agent.predict(grid)
    assert state is None and action.shape == (9, 1)
    np.testing.assert_allclose(action[:, 0], 0.5 * grid[:, 0] - 0.2, atol=0.12)


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    agent = PolicySearch(TargetEnv(), population=4, seed=1)
    agent.learn(4 * 3 * 2)
    path = tmp_path / "controller.pt"
    agent.save(path)
    loaded = PolicySearch.load(path)
    obs = np.array([0.2, 0.3], np.float32)
    np.testing.assert_array_equal(loaded.predict(obs)[0], agent.predict(obs)[0])
    assert loaded.generation == 2 and loaded.num_timesteps == agent.num_timesteps
    # the sampling stream continues where it stopped
    assert loaded.rng.standard_normal() == agent.rng.standard_normal()
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a policy-search checkpoint"):
        PolicySearch.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="even"):
        PolicySearch(TargetEnv(), population=5)


def test_train_controller_trains_saves_and_loads_a_policy_search(tmp_path):
    out = tmp_path / "run"
    argv = ["--preset", "digits-capped", "--agent", "policy-search", "--task", "regression2d", "--episode-length", "20",
            "--updates-per-step", "5", "--action", "capped", "--features", "step_fraction,grad_norm",
            "--population", "4", "--steps", str(4 * 4 * 3), "--select-best", "1", "--out", str(out),
            "--no-progress"]
    assert train_controller.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps_total"] == 48 and summary["best_eval_return"] is not None
    ctrl = load_controller(out)
    assert ctrl.agent == "policy-search"
    action, _ = ctrl.predict(np.zeros(ctrl.model.observation_space.shape, np.float32))
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
    # flags of other agents are refused with the flag's name
    with pytest.raises(SystemExit):
        train_controller.main(argv[:-2] + ["--gamma", "0.9", "--out", str(tmp_path / "x")])


def test_scheduler_holdout_and_learning_curve_scripts(tmp_path, capsys):
    """The two issue-16 benchmark scripts at a tiny size: a controller in an independent plain
    loop (its collapse count and per-seed values), and a run's validation learning curve."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import learning_curve, scheduler_holdout

    run_dir = tmp_path / "run"
    assert train_controller.main(["--preset", "digits-capped", "--agent", "policy-search", "--task", "regression2d", "--episode-length", "20",
                                  "--updates-per-step", "5", "--population", "4", "--steps", "32",
                                  "--select-best", "1", "--workers", "1", "--out", str(run_dir),
                                  "--no-progress"]) == 0
    out = tmp_path / "holdout.json"
    assert scheduler_holdout.main([str(run_dir), "--task", "regression2d", "--updates", "20", "--seeds", "2000-2002",
                                   "--sgd-lr", "0.02", "--sgd-lr", "100", "--clipped", "10,0.01",
                                   "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [len(r["per_seed"]) for r in rows] == [3, 3, 3, 3]
    by_name = {r["method"]: r for r in rows}
    assert by_name["sgd 100"]["collapsed"] == 3  # a rate of 100 on this regression diverges
    assert by_name["sgd 0.02"]["collapsed"] == 0 and math.isfinite(by_name["sgd 0.02"]["mean"])
    curve_json = tmp_path / "curve.json"
    assert learning_curve.main([str(run_dir), "--out", str(curve_json), "--figure", str(tmp_path / "lc.png")]) == 0
    curve = json.loads(curve_json.read_text())[0]
    assert len(curve["return"]) == 2  # one validation episode per generation (the last is not repeated)
    assert (tmp_path / "lc.png").stat().st_size > 1000
    assert "probe loss" in capsys.readouterr().out


def test_the_settings_schema_knows_every_agent_that_has_a_checkpoint_name():
    from agents.checkpoint import CHECKPOINT_NAMES
    from agents.settings_schema import AGENTS

    assert set(AGENTS) == set(CHECKPOINT_NAMES)


def test_a_generation_in_one_vector_env_equals_one_episode_per_candidate():
    """run_candidates_vec: 5 candidates, 3 at a time in one batched vector env (with the
    training wrappers' collapse termination and finite horizon), give the episodes
    run_candidate gives one by one on the single wrapped env: same lengths, rewards and
    return to float rounding (all from the same primary seed)."""
    from agents.policy_search import run_candidate, run_candidates_vec
    from agents.vec_env import make_sb3_vec_env
    from agents.wrappers import CollapseTermination, FiniteHorizon
    from envs.learning_rate_env import LearningRateEnv

    kwargs = dict(episode_length=20, updates_per_step=5, action="capped", features=["step_fraction", "grad_norm"],
                  log_observations=True, reward="probe", reward_transform="log-ratio", lr_min=1e-2, lr_max=1e3)
    single = FiniteHorizon(CollapseTermination(LearningRateEnv("regression2d", **kwargs)))
    vec = make_sb3_vec_env("regression2d", num_envs=3, collapse={}, finite_horizon=True, **kwargs)
    policy = LinearPolicy(single.observation_space, single.action_space)
    thetas = np.random.default_rng(3).normal(0.0, 1.0, (5, policy.n_params))
    batched = run_candidates_vec(vec, policy, thetas[:3], 77) + run_candidates_vec(vec, policy, thetas[3:], 77)
    for theta, steps_vec in zip(thetas, batched):
        steps = run_candidate(single, policy, theta, 77)
        assert len(steps_vec) == len(steps) and steps_vec[-1][1] and not any(d for _, d, _ in steps_vec[:-1])
        np.testing.assert_allclose([r for r, _, _ in steps_vec], [r for r, _, _ in steps], rtol=1e-4, atol=1e-6)
        assert [i.get("collapsed", False) for _, _, i in steps_vec] == [i.get("collapsed", False) for _, _, i in steps]
    with pytest.raises(ValueError, match="candidates"):
        run_candidates_vec(vec, policy, thetas, 77)
    with pytest.raises(ValueError, match="not both"):
        PolicySearch(vec, population=4, workers=2, env_factory=lambda: single)
