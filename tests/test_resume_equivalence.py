"""kill -9 + resume equals an uninterrupted run, for every agent: the step and episode counters
and the controller itself, bit for bit (the policy search: search mean, std, generation and
checkpoint selection, saved at generation boundaries; the actor-critic and DDPG/TD3: every
network, optimizer and counter, saved at episode boundaries with the replay buffer, the random
generators and the env's next reset, agents/snapshot.py). The kill is a real SIGKILL of a
training process, sent from inside it right after a chosen env step."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train_controller
from agents.checkpoint import load_controller

ROOT = Path(__file__).resolve().parents[1]

# a policy search of 4 candidates x 4 env steps (16 steps a generation), checkpoint selection on
PS = ["--preset", "digits-capped", "--agent", "policy-search", "--episode-length", "100", "--updates-per-step", "25", "--population", "4",
      "--workers", "1", "--no-progress", "--log-every", "50"]
AC = ["--preset", "paper", "--episode-length", "40", "--no-progress", "--log-every", "50"]
TD3 = ["--preset", "paper", "--agent", "td3", "--episode-length", "20", "--learning-starts", "10",
       "--batch-size", "8", "--buffer-size", "500", "--no-progress", "--log-every", "50"]
# a replay buffer smaller than the run: it is full and overwritten when the kill comes
DDPG = ["--preset", "paper", "--agent", "ddpg", "--episode-length", "20", "--learning-starts", "10",
        "--batch-size", "8", "--buffer-size", "30", "--no-progress", "--log-every", "50"]

KILLER = """
import os, signal, sys
import agents.callbacks as cb
import train_controller
kill_at = int(sys.argv[1])
real = cb.EnvInfoCallback._on_step
def on_step(self):
    if self.num_timesteps >= kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self)
cb.EnvInfoCallback._on_step = on_step
train_controller.main(sys.argv[2:])
"""


def killed_run(argv, kill_at: int) -> None:
    """Run ``train_controller.py argv`` in a process that SIGKILLs itself at env step ``kill_at``."""
    proc = subprocess.run([sys.executable, "-c", KILLER, str(kill_at), *map(str, argv)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]


def clean_runs(*argvs) -> None:
    """Run ``train_controller.py`` with each of ``argvs`` in turn in one fresh process, as
    :func:`killed_run` does: the runs compared bit for bit then share their numerics (a test
    process that earlier tests ran in may compute the last bits differently)."""
    main = ("import json, sys, train_controller\n"
            "for argv in json.loads(sys.argv[1]):\n"
            "    assert train_controller.main(argv) == 0, argv\n")
    proc = subprocess.run([sys.executable, "-c", main, json.dumps([[str(a) for a in argv] for argv in argvs])],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def counters(model) -> tuple[int, int]:
    return int(model.num_timesteps), int(model._episode_num)


def learning_state(model) -> dict:
    """Every tensor of the controller and its learning state: networks, targets, optimizers."""
    from stable_baselines3.common.base_class import BaseAlgorithm

    from agents.snapshot import capture_model

    if isinstance(model, BaseAlgorithm):
        return {**model.get_parameters(), "n_updates": model._n_updates}
    captured = capture_model(model)
    return {**captured["params"], "noise": captured["noise"], **captured["counters"]}


def assert_same(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a, key=str) == sorted(b, key=str), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif hasattr(a, "shape"):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), where
    else:
        assert a == b, where


@pytest.mark.parametrize("flags,steps,every,kill_at", [
    pytest.param(PS, 64, 10, 40, id="policy-search"),  # due at 10, 20, 30: mid-generation every time
    pytest.param(AC, 120, 30, 70, id="actor-critic"),  # killed mid-episode, after a mid-episode checkpoint
    pytest.param(TD3, 60, 15, 50, id="td3"),  # due at 15, 30, 45: mid-episode; the one at 45 writes step 40
    pytest.param(DDPG, 60, 15, 50, id="ddpg"),
    pytest.param([*AC, "--select-best", "1", "--eval-seed", "900"], 120, 30, 70, id="actor-critic-select-best"),
    # two tasks in turn, a fresh w0 each episode: the env's next reset is the task index and the w0 draw
    pytest.param([*TD3, "--task", "digits,regression2d", "--fresh-w0"], 60, 15, 50, id="td3-two-tasks-fresh-w0"),
])
def test_kill_9_and_resume_equals_an_uninterrupted_run(flags, steps, every, kill_at, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    killed_run([*flags, "--steps", steps, "--out", cut, "--checkpoint-every", every], kill_at)
    saved = load_controller(cut).model
    assert 0 < saved.num_timesteps < kill_at
    # the uninterrupted run and the resume, in one fresh process
    clean_runs([*flags, "--steps", steps, "--out", whole, "--checkpoint-every", "0"],
               ["--resume", cut, "--steps", steps, "--no-progress"])
    a, b = load_controller(whole).model, load_controller(cut).model
    assert counters(b) == counters(a)
    if "policy-search" in flags:
        assert saved.num_timesteps % 16 == 0  # a generation boundary
        assert b.generation == a.generation
        np.testing.assert_array_equal(b.mean, a.mean)
        np.testing.assert_array_equal(b.std, a.std)
        assert b.selection_state["best_timestep"] == a.selection_state["best_timestep"]
        assert b.selection_state["best_return"] == a.selection_state["best_return"]
    else:
        length = int(flags[flags.index("--episode-length") + 1])
        assert saved.interrupted_episode_steps == 0  # an episode boundary
        if "--task" not in flags:  # (the two-task run's regression episodes may diverge early)
            assert saved.num_timesteps % length == 0
        assert_same(learning_state(b), learning_state(a))
        assert (whole / "controller.pt").exists() == (cut / "controller.pt").exists()
        name = "controller.pt" if (whole / "controller.pt").exists() else "controller.zip"
        if name == "controller.pt":  # the saved weights, bit for bit (the zip holds time stamps)
            pa, pb = (torch.load(d / name, weights_only=True) for d in (whole, cut))
            for key in ("actor", "critic", "obs_rms", "actor_optimizer", "critic_optimizer", "noise_rng"):
                assert_same(pb[key], pa[key], key)


def test_ctrl_c_mid_generation_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    import agents.callbacks as cb

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    base = [*PS, "--steps", "48", "--checkpoint-every", "0"]
    assert train_controller.main([*base, "--out", str(whole)]) == 0
    real = cb.EnvInfoCallback._on_step

    def interrupted(self):
        if self.num_timesteps >= 27:  # in the middle of the second generation
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(cb.EnvInfoCallback, "_on_step", interrupted)
    assert train_controller.main([*base, "--out", str(cut)]) == 130
    monkeypatch.undo()
    assert "interrupted at step 16" in capsys.readouterr().err
    assert load_controller(cut).model.num_timesteps == 16
    assert train_controller.main(["--resume", str(cut), "--steps", "48", "--no-progress"]) == 0
    a, b = load_controller(whole).model, load_controller(cut).model
    assert counters(b) == counters(a) and b.generation == a.generation
    np.testing.assert_array_equal(b.mean, a.mean)


@pytest.mark.parametrize("flags,length", [pytest.param(AC, 40, id="actor-critic"), pytest.param(TD3, 20, id="td3")])
def test_ctrl_c_mid_episode_then_resume_equals_an_uninterrupted_run(flags, length, tmp_path, monkeypatch, capsys):
    """Ctrl-C mid-episode saves the state at that episode's start, names its step, and the resumed
    run ends as an uninterrupted one, controller included."""
    import agents.callbacks as cb

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    base = [*flags, "--steps", str(3 * length), "--checkpoint-every", "0"]
    assert train_controller.main([*base, "--out", str(whole)]) == 0
    real = cb.EnvInfoCallback._on_step

    def interrupted(self):
        if self.num_timesteps >= length + length // 2:  # in the middle of the second episode
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(cb.EnvInfoCallback, "_on_step", interrupted)
    assert train_controller.main([*base, "--out", str(cut)]) == 130
    monkeypatch.undo()
    assert f"interrupted at step {length}" in capsys.readouterr().err
    assert load_controller(cut).model.num_timesteps == length
    assert train_controller.main(["--resume", str(cut), "--steps", str(3 * length), "--no-progress"]) == 0
    a, b = load_controller(whole).model, load_controller(cut).model
    assert counters(b) == counters(a)
    assert_same(learning_state(b), learning_state(a))
