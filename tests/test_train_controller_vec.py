"""train_controller.py --num-envs: SB3 agents on the batched vector env; clear errors elsewhere."""
import json

import pytest

import train_controller
from agents.checkpoint import load_controller

TINY = ["--preset", "paper", "--episode-length", "20", "--no-progress", "--checkpoint-every", "40",
        "--log-every", "5", "--learning-starts", "20", "--batch-size", "16"]


@pytest.mark.parametrize("agent", ["ddpg", "td3"])
def test_sb3_agent_trains_on_num_envs_parallel_runs(tmp_path, agent):
    out = tmp_path / agent
    assert train_controller.main(["--agent", agent, "--num-envs", "3", "--steps", "120",
                                  "--task", "regression2d", "--out", str(out), *TINY]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["train"]["num_envs"] == 3 and settings["agent_kwargs"]["gradient_steps"] == 3
    summary = json.loads((out / "summary.json").read_text())
    # 120 transitions = 40 vector steps of 3 runs; episodes of 20 updates: 2 per run
    assert summary["steps_total"] == 120 and summary["episodes_this_run"] == 6
    assert summary["final_train_loss"] is not None or summary["diverged"]
    controller = load_controller(out)  # a single-env controller, usable as before
    assert controller is not None


def test_actor_critic_learns_from_parallel_episodes(tmp_path):
    """The paper's agent on N parallel episodes: every transition counted and learned from (one
    train_step each), episodes of every sub-env counted, checkpoint selection and resume work."""
    out = tmp_path / "ac"
    flags = ["--preset", "paper", "--episode-length", "10", "--no-progress", "--checkpoint-every", "15",
             "--task", "regression2d", "--select-best", "2"]
    assert train_controller.main(["--agent", "actor-critic", "--num-envs", "3", "--steps", "60",
                                  "--out", str(out), *flags]) == 0
    summary = json.loads((out / "summary.json").read_text())
    # 60 transitions = 20 vector steps of 3 runs; episodes of 10 updates: 2 per run
    assert summary["steps_total"] == 60 and summary["episodes_this_run"] == 6
    assert summary["best_eval_return"] is not None
    ctrl = load_controller(out)
    assert ctrl.model._n_updates == 60  # m_phi = 1: one critic update per transition, as with one env
    assert train_controller.main(["--resume", str(out), "--steps", "90", "--no-progress"]) == 0
    assert load_controller(out).model.num_timesteps == 90


def test_policy_search_on_num_envs(tmp_path, capsys):
    """The policy search runs a generation's candidates N at a time in one vector env; with
    --workers > 1 as well it is a clear error (one of the two)."""
    out = tmp_path / "run"
    argv = ["--preset", "digits-capped", "--agent", "policy-search", "--task", "regression2d", "--episode-length", "20",
            "--updates-per-step", "5", "--population", "4", "--steps", str(4 * 4 * 2), "--select-best", "1",
            "--no-progress"]
    assert train_controller.main([*argv, "--num-envs", "3", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps_total"] == 32 and summary["best_eval_return"] is not None
    with pytest.raises(SystemExit):
        train_controller.main([*argv, "--num-envs", "2", "--workers", "2", "--out", str(tmp_path / "x")])
    assert "either in --workers processes or in one --num-envs vector env" in capsys.readouterr().err


def test_num_envs_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        train_controller.main(["--agent", "td3", "--num-envs", "0"])
    assert "--num-envs" in capsys.readouterr().err
