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
