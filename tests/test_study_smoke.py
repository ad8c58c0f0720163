"""Smoke test of benchmarks/study_recommended.py at a tiny size, and of the pieces it relies on
(CollapseTermination, twin critics, checkpoint selection by validation return)."""
import json
import math

import numpy as np
import pytest

from agents.actor_critic import ActorCritic
from agents.wrappers import CollapseTermination
from envs.learning_rate_env import LearningRateEnv
from lrrl.config import HELD_OUT_SEED_START


def test_study_runs_tiny(tmp_path, capsys):
    from benchmarks import study_recommended as study

    out = tmp_path / "study"
    code = study.main(["--configs", "paper,actor-critic-relative", "--controller-seeds", "1", "--eval-seeds", "1",
                       "--updates", "30", "--train-updates", "60", "--jobs", "1", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "study.json").read_text())
    assert [c["name"] for c in results["summary"]["configs"]] == ["paper", "actor-critic-relative"]
    assert len(results["controller_runs"]) == 2  # 2 configs x 1 controller x 1 held-out seed
    assert all(r["seed"] == HELD_OUT_SEED_START for r in results["controller_runs"])
    n_rates = sum(len(rates) for _, _, rates in study.GRIDS["digits"].values())
    assert len(results["baseline_runs"]) == n_rates
    bar = [r for r in results["baseline_runs"] if (r["family"], r["lr"]) == study.BAR][0]
    assert results["summary"]["bar_mean"] == bar["train_loss"]
    for c in results["summary"]["configs"]:
        assert 0 <= c["beats_bar"] <= c["n_controllers"] == 1
        # "beats" is exactly "mean held-out loss below the bar's"
        assert c["beats_bar"] == int(c["per_controller_mean"][0] < bar["train_loss"])
    # the paper config trains 60 env steps, actor-critic-relative 60 / updates_per_step
    steps = {t["config"]: t["env_steps"] for t in results["training"]}
    from lrrl.presets import get_preset

    assert steps["paper"] == 60
    assert steps["actor-critic-relative"] == math.ceil(60 / get_preset("actor-critic-relative")["env"].get("updates_per_step", 1))
    table = capsys.readouterr().out
    assert "beats the bar" in table and "actor-critic-relative" in table
    # a rerun reuses the trained controllers
    assert study.main(["--configs", "actor-critic-relative", "--controller-seeds", "1", "--eval-seeds", "1",
                       "--updates", "30", "--train-updates", "60", "--jobs", "1", "--out", str(out),
                       "--no-baselines"]) == 0
    again = json.loads((out / "study.json").read_text())
    assert again["training"][0]["reused"] is True


def test_study_rejects_unknown_config(tmp_path):
    from benchmarks import study_recommended as study

    with pytest.raises(SystemExit):
        study.main(["--configs", "nope", "--out", str(tmp_path)])


def test_collapse_termination_ends_a_dead_run():
    # lr 0.5 trains digits' CNN below half its initial loss; lr 10 then kills it (chance level)
    env = CollapseTermination(LearningRateEnv("digits", action="raw", lr_min=1e-3, lr_max=20.0,
                                              episode_length=400, updates_per_step=20, device="cpu"))
    env.reset(seed=3)
    for _ in range(8):
        _, reward, terminated, _, info = env.step(np.array([0.5]))
        assert not terminated
    collapsed = False
    for _ in range(10):
        _, reward, terminated, _, info = env.step(np.array([10.0]))
        if terminated:
            collapsed = info["collapsed"] and info["diverged"]
            break
    assert collapsed
    # the step's own (log-ratio-free, raw) reward is kept: the loss went up, so it is negative
    assert reward < 0


def test_twin_critics_and_select_best_restore_the_best_actor():
    from agents.callbacks import SelectBestCallback, deterministic_return

    env = LearningRateEnv("regression2d", episode_length=10, device="cpu")
    eval_env = LearningRateEnv("regression2d", episode_length=10, device="cpu")
    agent = ActorCritic(env, twin_critics=True, target_tau=0.05, learning_starts=5, seed=0, device="cpu")
    assert agent.critic2 is not None and agent.critic2_target is not None
    seen = []

    class Spy(SelectBestCallback):
        def select(self):
            super().select()
            seen.append((deterministic_return(self.model, eval_env, self.seeds), self.best_return))

    selector = Spy(eval_env, eval_freq=1, seeds=(500,))
    agent.learn(40, callback=selector)
    assert len(seen) == 4  # after each of the 4 episodes; the final policy is the 4th episode's: checked
    returns = [r for r, _ in seen]
    assert selector.best_return == pytest.approx(max(returns))
    # the actor in place after learn() is the best one
    assert deterministic_return(agent, eval_env, (500,)) == pytest.approx(max(returns))


def test_twin_critics_checkpoint_round_trip(tmp_path):
    env = LearningRateEnv("regression2d", episode_length=5, device="cpu")
    agent = ActorCritic(env, twin_critics=True, target_tau=0.1, seed=1, device="cpu").learn(6)
    agent.save(tmp_path / "c.pt")
    loaded = ActorCritic.load(tmp_path / "c.pt")
    for a, b in zip(agent.critic2.parameters(), loaded.critic2.parameters()):
        assert np.allclose(a.detach().numpy(), b.detach().numpy())
    assert loaded.hyper["twin_critics"] is True and loaded.hyper["learning_starts"] == 0
