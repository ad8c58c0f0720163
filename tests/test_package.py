"""What the installed package holds and the names it registers: the namespaced env ids (which a
local ``envs/`` folder cannot shadow) and the package data of the wheel."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import pytest

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path, path: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_every_id_is_registered_in_the_namespace_and_as_an_alias():
    import envs

    for env_id, task in envs.ENV_IDS.items():
        for name in (f"lrrl/{env_id}", env_id):
            spec = gymnasium.spec(name)
            assert spec.kwargs == {"task": task} and spec.entry_point == "envs.learning_rate_env:LearningRateEnv"
    env = gymnasium.make("lrrl/LearningRate-v0", episode_length=5)
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.trainer.task.name == "digits" and obs.shape == env.observation_space.shape


def _local_envs_folder(tmp_path: Path) -> Path:
    """A project of one's own with an ``envs/`` package of its own (registers nothing)."""
    local = tmp_path / "project"
    (local / "envs").mkdir(parents=True)
    (local / "envs" / "__init__.py").write_text("MINE = True\n")
    return local


def test_namespaced_id_resolves_past_a_local_envs_folder(tmp_path):
    local = _local_envs_folder(tmp_path)
    # the failure the namespace avoids: 'envs:' imports the local folder, which registers nothing
    done = _python("import gymnasium; gymnasium.make('envs:LearningRate-v0')", local, [local, REPO])
    assert done.returncode != 0 and "NameNotFound" in done.stderr, done.stderr[-2000:]
    code = ("import gymnasium, sys\n"
            "env = gymnasium.make('lrrl:lrrl/LearningRate-v0', episode_length=3)\n"
            "obs, _ = env.reset(seed=0)\n"
            "env.step(env.action_space.sample())\n"
            "import envs\n"
            "print(env.unwrapped.trainer.task.name, envs.__file__)\n")
    done = _python(code, local, [local, REPO])
    assert done.returncode == 0, done.stderr[-3000:]
    task, where = done.stdout.split()
    assert task == "digits" and Path(where).resolve() == REPO / "envs" / "__init__.py"


def test_lrrl_after_a_local_envs_was_imported_is_a_clear_error(tmp_path):
    local = _local_envs_folder(tmp_path)
    done = _python("import envs, lrrl", local, [local, REPO])
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "ImportError: another module named 'envs'" in last and "import lrrl before it" in last
