"""The command lines under the package's own name: ``python -m lrrl train|evaluate`` and the
console scripts run :mod:`lrrl.train_cli` / :mod:`lrrl.evaluate_cli`, past a package named
``evaluate`` (Hugging Face's import name) and a local ``envs/`` folder; the repository's scripts are
thin and are not installed as modules."""
from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrrl import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_python_m_lrrl_help_names_the_command(command, tmp_path):
    done = subprocess.run([sys.executable, "-m", "lrrl", command, "--help"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m lrrl {command}")


def test_unknown_or_missing_command_is_one_line(capsys):
    assert cli.main(["fit"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'fit'" in err and "Traceback" not in err
    assert cli.main([]) == 2 and "usage: python -m lrrl {train,evaluate}" in capsys.readouterr().out


def test_a_foreign_evaluate_package_and_a_local_envs_folder_do_not_shadow_ours(tmp_path):
    foreign = tmp_path / "site"
    (foreign / "evaluate").mkdir(parents=True)
    (foreign / "evaluate" / "__init__.py").write_text("raise ImportError('the other evaluate package')\n")
    project = tmp_path / "project"
    (project / "envs").mkdir(parents=True)
    (project / "envs" / "__init__.py").write_text("raise ImportError('a local envs folder')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(foreign), str(ROOT)])}
    for command in ("evaluate", "train"):
        done = subprocess.run([sys.executable, "-m", "lrrl", command, "--help"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    make = ("import gymnasium as gym; env = gym.make('lrrl:lrrl/LearningRate-v0'); env.reset(seed=0); "
            "import envs, pathlib; print(pathlib.Path(envs.__file__).parent)")
    done = subprocess.run([sys.executable, "-c", make], cwd=project, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Path(done.stdout.strip()) == ROOT / "envs"


def test_console_scripts_point_into_the_package_and_no_script_is_installed_as_a_module():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = dict(line.split(" = ") for line in config["options.entry_points"]["console_scripts"].split("\n")
                   if line.strip())
    assert scripts == {"lrrl-train": "lrrl.train_cli:main", "lrrl-evaluate": "lrrl.evaluate_cli:main"}
    assert "py_modules" not in config["options"]
    packages = config["options.packages.find"]["include"].split()
    assert {p.split(".")[0] for p in packages} == {"envs", "agents", "lrrl"}
    for script, module in (("train_controller.py", "lrrl.train_cli"), ("evaluate.py", "lrrl.evaluate_cli")):
        text = (ROOT / script).read_text()
        assert f"from {module} import" in text and len(text.splitlines()) <= 20  # thin
