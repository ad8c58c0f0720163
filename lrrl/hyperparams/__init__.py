"""rl-zoo3 hyperparameter files (``td3``, ``ddpg``, ``sac``, ``ppo``: ``ALGO.yml``, one entry per
registered env id), shipped as package data, so that rl-zoo3 finds them after ``pip install``
without the repository: ``--conf-file lrrl.hyperparams.td3`` names the module :mod:`lrrl.hyperparams.td3`,
whose ``hyperparams`` dict is the file's content (rl-zoo3 reads a module's ``hyperparams``).
In the repository the files are ``hyperparams/*.yml`` (this folder links to them), so
``--conf-file hyperparams/td3.yml`` works there too. Reading them needs PyYAML (rl-zoo3 installs it).
"""
from __future__ import annotations

from pathlib import Path

#: the algorithms with a shipped file
ALGOS = ("td3", "ddpg", "sac", "ppo")


def path(algo: str) -> Path:
    """The shipped ``ALGO.yml``."""
    if algo not in ALGOS:
        raise ValueError(f"no shipped rl-zoo3 hyperparameters for {algo!r}; there are: {', '.join(ALGOS)}")
    return Path(__file__).resolve().parent / f"{algo}.yml"


def load(algo: str) -> dict:
    """``ALGO.yml`` as a dict: env id -> rl-zoo3 hyperparameters."""
    import yaml

    return yaml.safe_load(path(algo).read_text())
