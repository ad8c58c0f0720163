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
    vec = gymnasium.make_vec("lrrl/LearningRate-Regression2D-v0", num_envs=2, episode_length=5)
    assert type(vec).__name__ == "LearningRateVectorEnv" and vec.reset(seed=0)[0].shape[0] == 2


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


# --------------------------------------------------------------------------- the wheel
_NOT_SOURCE = (".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "runs",
               "results", "tests", "benchmarks", "figures", "mutation")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel ``pip wheel . --no-deps --no-build-isolation`` builds from a copy of the source
    (so the build leaves nothing in the repository)."""
    import shutil

    pytest.importorskip("setuptools", reason="setuptools is not installed, so no wheel can be built here")
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                           "--no-index", "-q", "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (built,) = (tmp / "dist").glob("lrrl-*.whl")
    return built


def test_wheel_holds_the_package_data(wheel):
    import zipfile

    from agents.pretrained import PRETRAINED
    from lrrl.hyperparams import ALGOS

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for name in PRETRAINED:
            for file in ("controller.pt", "settings.json", "CARD.md"):
                assert f"agents/pretrained/{name}/{file}" in names, (name, file)
                assert z.read(f"agents/pretrained/{name}/{file}") == (REPO / "agents" / "pretrained" / name / file).read_bytes()
        for algo in ALGOS:  # the files themselves, not links
            assert z.read(f"lrrl/hyperparams/{algo}.yml") == (REPO / "hyperparams" / f"{algo}.yml").read_bytes()
            assert f"lrrl/hyperparams/{algo}.py" in names
        cards = sorted(p.name for p in (REPO / "docs" / "cards").glob("*.md"))
        assert cards and all(z.read(f"lrrl/cards/{c}") == (REPO / "docs" / "cards" / c).read_bytes() for c in cards)
        assert {"lrrl/__init__.py", "envs/__init__.py", "agents/scheduler.py"} <= names
        assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_installed_wheel_loads_a_shipped_controller_by_name(wheel, tmp_path):
    """Installed into a folder of its own and run from elsewhere: the shipped controllers, their
    cards and the rl-zoo3 hyperparameters come from the installed package, not the repository."""
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                           str(target), str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    code = ("import torch, agents, lrrl\n"
            "from agents import ControllerScheduler\n"
            "from agents.pretrained import PRETRAINED, card\n"
            "model = torch.nn.Linear(3, 1)\n"
            "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
            "s = ControllerScheduler.from_pretrained('sgd', opt, total_steps=50)\n"
            "loss = model(torch.ones(4, 3)).pow(2).mean(); loss.backward(); s.step(loss); opt.step()\n"
            "assert all('measured' in card(n).lower() for n in PRETRAINED)\n"
            "print(agents.__file__, lrrl.__file__, s.get_last_lr()[0] > 0)\n")
    done = _python(code, tmp_path, [target])
    assert done.returncode == 0, done.stderr[-3000:]
    agents_file, lrrl_file, positive = done.stdout.split()
    assert Path(agents_file).is_relative_to(target) and Path(lrrl_file).is_relative_to(target) and positive == "True"
