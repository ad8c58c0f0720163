"""What train_controller.py tells its user: the summary reports the saved controller's own result
on the validation seed (against constant SGD on the same seed), never an exploration episode as
the result; a budget below one policy-search generation is refused; ``--help`` quotes the presets'
own budgets; a log file gets progress lines."""
import json
import re

import pytest

import train_controller
from agents.baselines import ControllerPolicy, run_episode
from agents.checkpoint import load_controller
from envs.learning_rate_env import LearningRateEnv
from lrrl.config import TrainSettings
from lrrl.presets import PRESETS

PS = ["--preset", "digits-capped", "--agent", "policy-search", "--episode-length", "100", "--updates-per-step", "25", "--population", "4",
      "--workers", "1", "--log-every", "50"]


def cli(argv, capsys):
    capsys.readouterr()
    try:
        code = train_controller.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_summary_is_the_saved_controllers_own_result(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = cli([*PS, "--steps", 32, "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    ctrl = load_controller(out)
    env = LearningRateEnv("digits", eval_every=100, **ctrl.env_kwargs(include_reward=True))
    res = run_episode(env, ControllerPolicy(ctrl.model), summary["validation_seed"])
    assert summary["validation_seed"] == 500
    assert summary["final_train_loss"] == pytest.approx(res.train_loss[-1], rel=1e-6)
    assert summary["final_test_accuracy"] == pytest.approx(res.test_accuracy[-1], rel=1e-6)
    sgd = summary["sgd_reference"]
    assert sgd["lr"] == 0.1 and sgd["final_train_loss"] is not None
    assert summary["final_train_loss"] != summary["last_training_episode"]["final_train_loss"]
    lines = stdout.strip().splitlines()
    assert lines[-2].startswith("  saved controller on validation seed 500: final train loss")
    assert lines[-1].startswith("  constant SGD at lr 0.1, same seed: final train loss")
    assert any("last training episode (exploration, not the saved controller)" in line for line in lines)


def test_a_budget_below_one_generation_is_refused(tmp_path, capsys):
    code, _, err = cli([*PS, "--steps", 15, "--out", tmp_path / "run", "--no-progress"], capsys)
    assert code == 2
    assert "less than one generation" in err and "--steps 16 or more" in err
    assert not (tmp_path / "run").exists()


def test_a_budget_that_is_not_whole_generations_says_so(tmp_path, capsys):
    code, _, err = cli([*PS, "--steps", 20, "--out", tmp_path / "run", "--no-progress"], capsys)
    assert code == 0
    assert "whole generations of 16 steps: --steps 20 trains 16 steps" in err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps_total"] == 16


def test_help_quotes_each_presets_own_budget(capsys):
    with pytest.raises(SystemExit):
        train_controller.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, preset in PRESETS.items():
        settings = TrainSettings.from_preset(name)
        assert f"{name}: {settings.steps} steps" in text
        steps = (preset.get("train") or {}).get("steps")
        if steps is not None:
            assert f"{name}: {steps} steps" in text
    recommended = TrainSettings.from_preset("recommended")
    assert f"generations of {recommended.generation_steps} steps" in text


def test_progress_lines_when_stdout_is_not_a_terminal(tmp_path, capsys):
    code, stdout, err = cli([*PS, "--steps", 32, "--out", tmp_path / "run", "--progress-every", "0.001"], capsys)
    assert code == 0, err
    lines = [line for line in stdout.splitlines() if line.startswith("progress (")]
    assert len(lines) >= 2
    assert re.search(r"32/32 steps \(100%\), \d+m\d\ds elapsed, best episode return so far -?[\d.]", lines[-1])
    code, stdout, _ = cli([*PS, "--steps", 32, "--out", tmp_path / "quiet", "--no-progress"], capsys)
    assert code == 0 and "progress (" not in stdout
