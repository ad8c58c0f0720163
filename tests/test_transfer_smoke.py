"""benchmarks/transfer.py at tiny sizes: controllers for SGD, momentum and Adam and a multi-task
controller train and evaluate; transfer to another task and to a user task built from tensors
is run and labelled; fashion-mnist without files is skipped with its reason."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is not an installed package
from benchmarks import transfer  # noqa: E402

USER_TASK = "benchmarks.transfer:wine_task"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer")
    argv = ["--preset", "actor-critic-relative", "--controllers", "digits@sgd,digits@momentum,digits@adam,digits+regression2d@sgd",
            "--tests", f"digits,fashion-mnist,{USER_TASK}", "--train-steps", "20", "--episode-length", "10",
            "--eval-updates", "10", "--seeds", "1", "--grid", "paper", "--out", str(out), "--no-progress"]
    assert transfer.main(argv) == 0
    return out, json.loads((out / "transfer.json").read_text())


def test_each_optimizer_trains_and_evaluates(tiny_run):
    out, report = tiny_run
    for optimizer in ("sgd", "momentum", "adam"):
        run_dir = out / "runs" / f"digits-{optimizer}"
        settings = json.loads((run_dir / "settings.json").read_text())
        assert settings["env_kwargs"]["optimizer"] == optimizer
        assert json.loads((run_dir / "summary.json").read_text())["steps_total"] == 20
    # evaluate.py ran each controller with its own primary optimizer
    runs = [json.loads(p.read_text()) for p in (out / "eval-digits" / "runs").glob("ctrl-*.json")]
    assert sorted(r["spec"]["optimizer"] for r in runs) == ["adam", "momentum", "sgd", "sgd"]
    assert all(r["status"] in ("ok", "diverged") for r in runs)
    rows = report["rows"]
    assert len(rows) == 4 * 2  # 4 controllers x (digits, wine); fashion-mnist skipped
    for row in rows:
        for key in ("controller_loss", "tuned_sgd", "tuned_adam"):
            cell = row[key]
            assert cell["seeds"] == 1
            assert (cell["mean"] is not None and math.isfinite(cell["mean"])) or cell["diverged"] == 1


def test_transfer_to_a_user_task_is_run_and_labelled(tiny_run):
    out, report = tiny_run
    user_rows = [r for r in report["rows"] if r["test_task"] == USER_TASK]
    assert {r["train_task"] for r in user_rows} == {"digits", "digits,regression2d"}
    results = json.loads((out / f"eval-{USER_TASK.replace(':', '_')}" / "results.json").read_text())
    methods = [r["method"] for r in results["summary"] if r["protocol"] == "controller"]
    assert "digits-sgd (trained on digits)" in methods
    assert "digits+regression2d-sgd (trained on digits,regression2d)" in methods
    table = (out / "transfer.md").read_text()
    assert f"| digits,regression2d | {USER_TASK} | digits+regression2d-sgd (sgd) |" in table


def test_fashion_mnist_without_files_is_skipped_with_the_reason(tiny_run):
    _, report = tiny_run
    assert [s["test_task"] for s in report["skipped"]] == ["fashion-mnist"]
    assert "network" in report["skipped"][0]["reason"] and "--data-root" in report["skipped"][0]["reason"]


def test_multi_task_controller_trains_round_robin(tiny_run):
    out, _ = tiny_run
    run_dir = out / "runs" / "digits+regression2d-sgd"
    settings = json.loads((run_dir / "settings.json").read_text())
    assert settings["train"]["task"] == "digits,regression2d"
    # 20 env steps of episodes of 10 updates: at least two episodes, so both tasks were trained on
    assert json.loads((run_dir / "summary.json").read_text())["episodes_this_run"] >= 2

    from lrrl.config import TrainSettings
    from lrrl.training import make_training_env

    env = make_training_env(TrainSettings.from_json(settings))
    tasks = [env.reset(seed=i)[1]["task"] for i in range(4)]
    assert tasks == ["digits", "regression2d", "digits", "regression2d"]
    _, _, _, _, info = env.step(env.action_space.sample())
    assert info["task"] == "regression2d"


def test_user_task_errors_are_clear():
    from envs.tasks import make_task

    with pytest.raises(ValueError, match="cannot import"):
        make_task("benchmarks.transfer:no_such_task")
    with pytest.raises(ValueError, match="not an envs.Task"):
        make_task("benchmarks.transfer:build_parser")
    assert make_task(USER_TASK).name == "wine"
