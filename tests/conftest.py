"""Shared test settings: one torch thread per process keeps the suite fast and steady on 2 cores."""
import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("LRRL_DATA", os.path.join(os.path.dirname(__file__), ".no-data-here"))


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny finished actor-critic run of train_controller.py (40 steps, one episode), once per module."""
    from helpers_cli import TINY
    import train_controller

    out = tmp_path_factory.mktemp("base") / "run"
    assert train_controller.main([str(a) for a in ["--steps", 40, "--out", out, *TINY]]) == 0
    return out


@pytest.fixture
def run_dir(trained_run, tmp_path):
    """A copy of ``trained_run`` that a test may change."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained_run, out)
    return out
