"""rl-baselines3-zoo trains and shows a TD3 controller on the registered id with the shipped
hyperparameter file, exactly as the README's commands do (tiny budgets), and with the file as
shipped in the package (``--conf-file lrrl.hyperparams.td3``), from a folder without the repository.

Skipped, with the reason, when rl-zoo3 (the optional ``zoo`` extra, which brings PyYAML) is absent."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

_REASON = "rl-zoo3 is not installed (the optional extra: pip install -e '.[zoo]')"
pytest.importorskip("rl_zoo3", reason=_REASON)
yaml = pytest.importorskip("yaml", reason=_REASON)

REPO = Path(__file__).resolve().parents[1]
HYPERPARAMS = REPO / "hyperparams"


def test_hyperparameter_files_cover_every_registered_id():
    from envs import ENV_IDS, SUITE_ENV_IDS
    for algo in ("td3", "ddpg", "sac", "ppo"):
        config = yaml.safe_load((HYPERPARAMS / f"{algo}.yml").read_text())
        # every task id, and nothing but registered ids (the suite's training id has a TD3 entry)
        assert set(ENV_IDS) <= set(config) <= set(ENV_IDS) | set(SUITE_ENV_IDS), algo
        assert all(c["policy"] == "MlpPolicy" and c["n_timesteps"] > 0 for c in config.values())
    assert "LearningRate-Suite-v0" in yaml.safe_load((HYPERPARAMS / "td3.yml").read_text())


def test_shipped_modules_give_the_files():
    from lrrl import hyperparams

    for algo in hyperparams.ALGOS:
        module = __import__(f"lrrl.hyperparams.{algo}", fromlist=["hyperparams"])
        assert module.hyperparams == yaml.safe_load((HYPERPARAMS / f"{algo}.yml").read_text())
    with pytest.raises(ValueError, match="no shipped rl-zoo3 hyperparameters for 'a2c'; there are: td3"):
        hyperparams.load("a2c")


def _zoo(module: str, *args: str, cwd: Path, package: str = "envs", env_id: str = "LearningRate-v0") -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", f"rl_zoo3.{module}", "--algo", "td3",
                           "--env", env_id, "--gym-packages", package, "--device", "cpu", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_rl_zoo_train_and_enjoy_td3(tmp_path):
    logs = tmp_path / "logs"
    _zoo("train", "--conf-file", str(HYPERPARAMS / "td3.yml"), "-n", "60", "-f", str(logs),
         "--seed", "0", "--eval-freq", "-1", cwd=tmp_path)
    model = logs / "td3" / "LearningRate-v0_1" / "LearningRate-v0.zip"
    assert model.is_file()
    # rl-zoo3 saves the hyperparameters it used as an OrderedDict's (key, value) pairs
    config = yaml.unsafe_load((model.parent / "LearningRate-v0" / "config.yml").read_text())
    assert dict(config)["gamma"] == 0.9 and dict(config)["batch_size"] == 128  # the shipped file
    # enjoy with rendering on (rl-zoo3's default: render_mode="human" prints a line per step)
    out = _zoo("enjoy", "-f", str(logs), "--exp-id", "1", "-n", "20", cwd=tmp_path)
    steps = [line for line in out.splitlines() if line.startswith("update ") and "reward" in line]
    assert len(steps) == 20 and steps[0].split()[1] == "1/200"


def test_rl_zoo_train_with_the_shipped_module(tmp_path):
    """What works after pip install: the hyperparameters from the package, the ids from lrrl."""
    logs = tmp_path / "logs"
    _zoo("train", "--conf-file", "lrrl.hyperparams.td3", "-n", "30", "-f", str(logs), "--seed", "0",
         "--eval-freq", "-1", cwd=tmp_path, package="lrrl")
    model = logs / "td3" / "LearningRate-v0_1" / "LearningRate-v0.zip"
    config = yaml.unsafe_load((model.parent / "LearningRate-v0" / "config.yml").read_text())
    assert model.is_file() and dict(config)["gamma"] == 0.9 and dict(config)["batch_size"] == 128
    out = _zoo("enjoy", "-f", str(logs), "--exp-id", "1", "-n", "20", cwd=tmp_path, package="lrrl")
    assert len([line for line in out.splitlines() if line.startswith("update ") and "reward" in line]) == 20


def test_rl_zoo_trains_td3_on_the_suite(tmp_path):
    """rl-zoo3 trains TD3 on the suite's training id (a new training instance every episode)."""
    logs = tmp_path / "logs"
    _zoo("train", "--conf-file", str(HYPERPARAMS / "td3.yml"), "-n", "60", "-f", str(logs), "--seed", "0",
         "--eval-freq", "-1", cwd=tmp_path, env_id="LearningRate-Suite-v0")
    assert (logs / "td3" / "LearningRate-Suite-v0_1" / "LearningRate-Suite-v0.zip").is_file()
