"""Issue 14: the env in Gymnasium's and SB3's default multiprocessing set-ups.

Each scenario runs in a fresh interpreter with a timeout, so that a hang fails the test instead of
hanging the suite. The parent first uses torch's intra-op thread pool with two threads, as any
training script does before it vectorises; before the fix the forked workers then waited for ever
in ``gomp_team_barrier_wait_end``.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PARENT_USES_TORCH_POOL = """
import numpy as np, torch
torch.set_num_threads(2)
x = torch.randn(256, 1, 8, 8)
torch.nn.Conv2d(1, 16, 3)(x).sum().backward()
a = torch.randn(512, 512)
(a @ a).sum()
"""

SCENARIOS = {
    # gym.make_vec's async mode: AsyncVectorEnv with the default (fork) context; it builds a
    # first env in the parent, so envs is imported before the fork
    "gym-make-vec-async": """
import gymnasium as gym
venv = gym.make_vec("envs:LearningRate-v0", num_envs=2, vectorization_mode="async", device="cpu")
venv.reset(seed=0)
_, reward, _, _, _ = venv.step(np.zeros((2, 1), np.float32))
venv.close()
print("rewards", reward.tolist())
""",
    # SB3's SubprocVecEnv with fork: the workers build (and import) the env themselves
    "sb3-subproc-fork": """
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv
venv = make_vec_env("envs:LearningRate-v0", n_envs=2, vec_env_cls=SubprocVecEnv,
                    vec_env_kwargs={"start_method": "fork"}, env_kwargs={"device": "cpu"})
venv.seed(0)
venv.reset()
_, reward, _, _ = venv.step(np.zeros((2, 1), np.float32))
venv.close()
print("rewards", reward.tolist())
""",
}


def run_python(code: str, timeout: float) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter that imports this checkout's packages."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is the default start method on Linux only")
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_forked_vector_env_workers_do_not_hang(scenario):
    try:
        done = run_python(PARENT_USES_TORCH_POOL + SCENARIOS[scenario], timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{scenario}: the forked workers hung (no answer within 240 s)")
    assert done.returncode == 0, done.stderr[-3000:]
    rewards = [float(r) for r in done.stdout.split("rewards", 1)[1].strip(" []\n").split(",")]
    assert len(rewards) == 2 and all(r == r for r in rewards)


def test_forked_child_runs_torch_single_threaded():
    """The hook itself: a child forked after ``import envs`` has one torch thread, the parent keeps
    its own; and a multiprocessing worker that imports ``envs`` late protects itself."""
    code = PARENT_USES_TORCH_POOL + """
import multiprocessing as mp, os
import envs

def child_threads(queue):
    queue.put(torch.get_num_threads())

ctx = mp.get_context("fork")
queue = ctx.Queue()
worker = ctx.Process(target=child_threads, args=(queue,))
worker.start(); worker.join(60)
print("child", queue.get(timeout=60), "parent", torch.get_num_threads())
"""
    done = run_python(code, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["child", "1", "parent", "2"]
