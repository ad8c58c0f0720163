"""One check of every value at the boundary: the env constructor and reset, the vector env, the
command lines (train_controller.py, evaluate.py) and checkpoints. Each case was a traceback or
was silently accepted; each is now one clear error naming the value."""
import json
import pickle

import numpy as np
import pytest
import torch

import evaluate
import train_controller
from agents.checkpoint import load_controller
from agents.io import CheckpointError
from envs.learning_rate_env import LearningRateEnv
from envs.vector_env import LearningRateVectorEnv
from helpers_cli import TINY, cli, error_line

NAN, INF = float("nan"), float("inf")
PS_TINY = ["--preset", "digits-capped", "--agent", "policy-search", "--episode-length", "100", "--updates-per-step", "25",
           "--population", "4", "--workers", "1", "--no-progress", "--steps", "16"]
EVAL_TINY = ["--task", "digits", "--steps", "5", "--seeds", "1", "--eval-every", "5", "--episodes", "0"]


# --------------------------------------------------------------------------- env constructor
@pytest.mark.parametrize("name,value", [
    ("reward_scale", NAN), ("reward_scale", INF), ("divergence_penalty", NAN), ("divergence_penalty", -INF),
    ("relative_factor", NAN), ("relative_factor", INF), ("initial_lr", NAN), ("initial_lr", INF),
    ("divergence_factor", 0), ("divergence_factor", 0.5), ("divergence_factor", NAN), ("eval_every", -1),
    ("seed", -1), ("device", "tpu"), ("optimizer", "sparseadam"), ("obs_max", NAN),
])
def test_the_env_refuses_a_bad_value_naming_it(name, value):
    with pytest.raises(ValueError) as exc:
        LearningRateEnv("digits", **{name: value})
    message = str(exc.value)
    assert (name if name not in ("device", "optimizer") else repr(value)) in message


def test_reset_refuses_a_negative_seed():
    with pytest.raises(ValueError, match=r"reset\(seed=...\) must be an integer >= 0"):
        LearningRateEnv("digits").reset(seed=-5)
    with pytest.raises(ValueError, match=r"reset\(seed=...\) must be an integer >= 0"):
        LearningRateVectorEnv("digits", 2).reset(seed=-5)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        LearningRateVectorEnv("digits", 2, seed=-1)


def test_step_takes_a_tensor_that_requires_grad():
    """A torch policy's action (requires_grad) is its value: the same step as the plain array."""
    a, b = LearningRateEnv("digits", seed=1), LearningRateEnv("digits", seed=1)
    a.reset(), b.reset()
    action = torch.tensor([0.25], requires_grad=True) * 1.0
    np.testing.assert_array_equal(a.step(action)[0], b.step(np.array([0.25], np.float32))[0])
    va, vb = LearningRateVectorEnv("digits", 2, seed=1), LearningRateVectorEnv("digits", 2, seed=1)
    va.reset(), vb.reset()
    actions = torch.full((2, 1), 0.25, requires_grad=True) * 1.0
    np.testing.assert_array_equal(va.step(actions)[0], vb.step(np.full((2, 1), 0.25, np.float32))[0])


def test_good_values_still_build_and_run():
    env = LearningRateEnv("digits", reward_scale=2.0, divergence_factor=1.5, initial_lr=0.1, action="relative",
                          seed=np.int64(3), eval_every=0)
    env.reset()
    env.step(env.action_space.sample())


@pytest.mark.parametrize("batched", [True, False])
def test_a_vector_env_pickles_and_its_copy_steps_identically(batched):
    env = LearningRateVectorEnv("digits", 2, seed=3, batched=batched)
    env.reset()
    action = np.zeros((2, 1), dtype=np.float32)
    env.step(action)
    copy = pickle.loads(pickle.dumps(env))
    a, b = env.step(action), copy.step(action)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# --------------------------------------------------------------------------- train_controller.py
@pytest.mark.parametrize("flags", [["--lr-min", "0.5"], ["--gamma", "0.5"], ["--preset", "paper"],
                                   ["--seed", "3"], ["--features", "lr"], ["--select-best", "2"]])
def test_resume_refuses_a_flag_it_cannot_honour(flags, run_dir, capsys):
    before = (run_dir / "controller.pt").read_bytes()
    code, err = cli(train_controller.main, ["--resume", run_dir, "--steps", 80, "--no-progress", *flags], capsys)
    assert code == 2
    line = error_line(err)
    assert flags[0] in line and "a resume accepts --steps" in line and "--data-root" in line
    assert (run_dir / "controller.pt").read_bytes() == before


def test_resume_accepts_its_own_flags(run_dir, capsys):
    code, err = cli(train_controller.main, ["--resume", run_dir, "--steps", 80, "--no-progress",
                                            "--checkpoint-every", 20, "--log-every", 3, "--device", "cpu",
                                            "--agent", "actor-critic", "--threads", 1], capsys)
    assert code == 0, err
    assert load_controller(run_dir).model.num_timesteps == 80


@pytest.mark.parametrize("flags", [["--cpus-per-run", "0"], ["--gpus-per-run", "1"], ["--max-retries", "-1"],
                                   ["--ray-address", "auto"]])
def test_backend_flags_without_seeds_are_refused(flags, tmp_path, capsys):
    code, err = cli(train_controller.main, ["--steps", 40, "--out", tmp_path / "r", *TINY, *flags], capsys)
    assert code == 2
    assert flags[0] in error_line(err) and "--seeds" in error_line(err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("task", ["", " ", ",", "../../x:y", ".x:y"])
def test_an_empty_or_path_like_task_is_refused(task, tmp_path, capsys):
    code, err = cli(train_controller.main, ["--task", task, "--steps", 40, "--out", tmp_path / "r", *TINY], capsys)
    assert code == 2
    assert "task" in error_line(err)
    assert not (tmp_path / "r").exists()


def test_sparseadam_is_refused_at_start(tmp_path, capsys):
    code, err = cli(train_controller.main, ["--optimizer", "sparseadam", "--steps", 40, "--out", tmp_path / "r",
                                            *TINY], capsys)
    assert code == 2 and "sparse gradients" in error_line(err)


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path, capsys):
    out = tmp_path / ("a" * 300) / "run"
    code, err = cli(train_controller.main, ["--steps", 40, "--out", out, *TINY], capsys)
    assert code != 0 and "too long" not in err.split("error:")[0] and "more than the file system allows" in error_line(err)
    code, err = cli(evaluate.main, [*EVAL_TINY, "--baselines", "sgd", "--out", out], capsys)
    assert code != 0 and "more than the file system allows" in error_line(err)
    code, err = cli(evaluate.main, ["--suite", "test", "--families", "attention-tokens", "--instances", "1",
                                    "--baselines", "sgd", "--out", out], capsys)
    assert code == 2 and "more than the file system allows" in error_line(err)


def test_a_deeply_nested_policy_search_settings_json_is_a_checkpoint_error(tmp_path, capsys):
    out = tmp_path / "ps"
    assert train_controller.main([*PS_TINY, "--out", str(out)]) == 0
    ckpt = out / "controller.pt"
    payload = torch.load(ckpt, weights_only=True)
    payload["settings_json"] = "[" * 100_000 + "]" * 100_000
    torch.save(payload, ckpt)
    with pytest.raises(CheckpointError, match="settings_json"):
        load_controller(out)
    code, err = cli(train_controller.main, ["--resume", out, "--steps", 16, "--no-progress"], capsys)
    assert code == 2 and "settings_json" in error_line(err)
    from agents.scheduler import ControllerScheduler

    model = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="settings_json"):
        ControllerScheduler(str(out), torch.optim.SGD(model.parameters(), lr=0.1), total_steps=10)


# --------------------------------------------------------------------------- evaluate.py
@pytest.mark.parametrize("task", ["../../x:y", ".x:y"])
def test_evaluate_refuses_a_path_like_task(task, tmp_path, capsys):
    code, err = cli(evaluate.main, ["--task", task, "--steps", 5, "--seeds", 1, "--baselines", "sgd",
                                    "--out", tmp_path / "ev"], capsys)
    assert code == 2 and "dotted Python names" in error_line(err)


@pytest.mark.parametrize("change,words", [
    (lambda s: s["env_kwargs"].update(features=["no_such_feature"]), "no_such_feature"),
    (lambda s: s["env_kwargs"].update(action="no_such_action"), "no_such_action"),
    (lambda s: s["env_kwargs"].update(optimizer="no_such_optimizer"), "no_such_optimizer"),
    (lambda s: s["env_kwargs"].update(optimizer_kwargs={"no_such_kwarg": 1}), "no_such_kwarg"),
    (lambda s: s["env_kwargs"].update(features=["lr", "grad_norm"]), "shape"),
])
def test_evaluate_refuses_a_controller_whose_settings_cannot_run(change, words, run_dir, tmp_path, capsys):
    path = run_dir / "settings.json"
    settings = json.loads(path.read_text())
    change(settings)
    path.write_text(json.dumps(settings))
    out = tmp_path / "ev"
    code, err = cli(evaluate.main, [*EVAL_TINY, "--baselines", "sgd", "--out", out, run_dir], capsys)
    assert code == 2
    line = error_line(err)
    assert str(run_dir) in line and words in line
    assert not out.exists()  # refused before any run


def test_evaluate_refuses_a_controller_whose_reward_cannot_run(run_dir, tmp_path, capsys):
    """The reward shapes only the policy evaluation (--episodes > 0, in the controller's training
    env): an unknown one is refused there, before any run; the other runs never read it."""
    path = run_dir / "settings.json"
    settings = json.loads(path.read_text())
    settings["env_kwargs"]["reward"] = "no_such_reward"
    path.write_text(json.dumps(settings))
    out = tmp_path / "ev"
    args = EVAL_TINY[:-2]  # without --episodes 0
    code, err = cli(evaluate.main, [*args, "--episodes", "1", "--baselines", "sgd", "--out", out, run_dir], capsys)
    assert code == 2
    line = error_line(err)
    assert str(run_dir) in line and "no_such_reward" in line
    assert not out.exists()


def test_a_zero_agent_reward_scale_is_refused(tmp_path, capsys):
    code, err = cli(train_controller.main, ["--reward-scale", 0, "--steps", 40, "--out", tmp_path / "r", *TINY],
                    capsys)
    assert code == 2 and "--reward-scale must be a finite number > 0" in error_line(err)
