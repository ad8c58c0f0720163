"""train_controller.py: each agent trains, saves a loadable checkpoint and resumes; bad flags
give one-line errors; a SIGKILLed run resumes from its last periodic checkpoint."""
import base64
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import train_controller
from agents.checkpoint import load_controller
from agents.io import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
# the CLI mechanics are tested on the paper preset (one update per env step, actor-critic by
# default); "recommended" holds rates for 25 updates and runs a policy search on the suite
TINY = ["--preset", "paper", "--episode-length", "40", "--no-progress", "--checkpoint-every", "0", "--log-every", "5"]
SB3_TINY = ["--learning-starts", "40", "--batch-size", "16"]


def run(argv):
    assert train_controller.main([str(a) for a in argv]) == 0


@pytest.mark.parametrize("agent", ["actor-critic", "ddpg", "td3"])
def test_train_load_and_resume(tmp_path, agent):
    out = tmp_path / agent
    extra = SB3_TINY if agent != "actor-critic" else []
    run(["--agent", agent, "--steps", 120, "--out", out, *TINY, *extra])
    settings = json.loads((out / "settings.json").read_text())
    assert settings["agent"] == agent and settings["train"]["steps"] == 120
    assert {"agent", "preset", "env_kwargs", "agent_kwargs", "train"} <= set(settings)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps_total"] == 120 and summary["episodes_this_run"] == 3
    assert summary["final_train_loss"] is not None or summary["diverged"]
    assert any((out / "tb").iterdir())

    controller = load_controller(out)
    assert controller.agent == agent and controller.env_kwargs(include_reward=True)["episode_length"] == 40
    action, state = controller.predict(np.array([2.3], np.float32))
    assert action.shape == (1,) and -1 <= action[0] <= 1
    batch, _ = controller.predict(np.array([[2.3], [1.0]], np.float32))
    assert batch.shape == (2, 1)

    if agent != "actor-critic":  # a run written before noise_std had one name still loads, same noise
        assert settings["agent_kwargs"]["noise_std"] == 0.1
        old = {**settings, "agent_kwargs": {("action_noise_std" if k == "noise_std" else k): v
                                            for k, v in settings["agent_kwargs"].items()}}
        (out / "settings.json").write_text(json.dumps(old))
        assert load_controller(out).model.action_noise._sigma[0] == pytest.approx(0.1)

    run(["--resume", out, "--steps", 200, *TINY[4:]])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_step"] == 120 and summary["steps_total"] == 200
    assert load_controller(out).model.num_timesteps == 200


def test_evaluate_policy_works_with_a_controller(tmp_path):
    from stable_baselines3.common.evaluation import evaluate_policy

    from envs import LearningRateEnv

    run(["--steps", 40, "--out", tmp_path, *TINY])
    controller = load_controller(tmp_path / "controller.pt")
    env = LearningRateEnv("digits", episode_length=10, device="cpu", seed=5)
    mean, std = evaluate_policy(controller, env, n_eval_episodes=2, warn=False)
    assert np.isfinite(mean)


def test_multi_task_round_robin(tmp_path):
    run(["--task", "digits,regression2d", "--steps", 80, "--out", tmp_path, *TINY])
    assert json.loads((tmp_path / "summary.json").read_text())["episodes_this_run"] == 2


def test_sb3_zip_with_malicious_pickle_does_not_run_code(tmp_path):
    out = tmp_path / "run"
    run(["--agent", "td3", "--steps", 45, "--out", out, *TINY, *SB3_TINY])
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    payload = {":serialized:": base64.b64encode(pickle.dumps(Evil())).decode()}
    ckpt = out / "controller.zip"
    with zipfile.ZipFile(ckpt) as z:
        members = {name: z.read(name) for name in z.namelist()}
    data = json.loads(members["data"])
    data["observation_space"] = payload
    data["something_new"] = payload
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(ckpt, "w") as z:
        for name, content in members.items():
            z.writestr(name, content)
    controller = load_controller(out)  # loads, using settings.json instead of the pickles
    assert controller.predict(np.array([1.0], np.float32))[0].shape == (1,)
    assert not marker.exists()
    ckpt.write_bytes(ckpt.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="controller.zip"):
        load_controller(out)


@pytest.mark.parametrize("argv, message", [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--steps", "-5"], "must be >= 1"),
    (["--agent", "ppo"], "invalid choice"),
    (["--resume", "/nonexistent/run"], "does not exist"),
    (["--noise", "nan"], "must be finite"),
    (["--data-root", "/nonexistent/dir"], "not a directory"),
])
def test_bad_flags_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        train_controller.main(argv + ["--out", "/tmp/never-written"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not Path("/tmp/never-written").exists()


def test_corrupt_checkpoint_on_resume_is_a_clear_error(tmp_path, capsys):
    run(["--steps", 40, "--out", tmp_path, *TINY])
    (tmp_path / "controller.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(SystemExit) as exc:
        train_controller.main(["--resume", str(tmp_path), "--steps", "80", "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "truncated or corrupt" in err and "Traceback" not in err


def test_sigkill_mid_run_then_resume(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train_controller.py"), "--preset", "paper", "--steps", "100000",
           "--episode-length", "40",
           "--checkpoint-every", "30", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.time() + 60
        # checkpoints are due every 30 steps and hold the last episode boundary (agents/snapshot.py):
        # the one due at 30 holds step 0, the one due at 60 step 40
        while not (out / "controller.pt").exists() or load_controller(out).model.num_timesteps < 40:
            assert proc.poll() is None, "training exited early"
            assert time.time() < deadline, "no checkpoint past the first episode within 60 s"
            time.sleep(0.05)
        time.sleep(0.3)  # let it get further, likely mid-way through another checkpoint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = load_controller(out).model
    done = saved.num_timesteps
    assert done >= 40 and done % 40 == 0 and saved.interrupted_episode_steps == 0  # an episode boundary
    (out / ".controller.pt.leftover.tmp").write_bytes(b"half a checkpoint")  # as a kill mid-write leaves
    run(["--resume", out, "--steps", done + 50, "--no-progress"])
    assert load_controller(out).model.num_timesteps == done + 50
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_threads_default_to_one_and_to_every_core_with_a_vector_env():
    from lrrl.training import default_threads
    from train_controller import build_parser

    assert build_parser().parse_args([]).threads is None
    assert default_threads(None, None) == 1 and default_threads(None, 1) == 1
    assert default_threads(None, 12) == 0  # torch's default: every core for the batched step
    assert default_threads(3, 12) == 3 and default_threads(0, None) == 0
    assert default_threads(None, 12, cpus=4) == 4 and default_threads(None, 1, cpus=4) == 1  # the study's jobs
