"""Determinism on CPU (issue 5, item 6): the same seed gives the same trained controller and the
same evaluation table. (The same trajectory of the env itself is tested in test_env.py.)"""
from __future__ import annotations

import csv

import torch

import evaluate
import train_controller
from agents.io import safe_torch_load

TINY = ["--preset", "paper", "--episode-length", "30", "--steps", "90", "--no-progress",
        "--checkpoint-every", "0", "--log-every", "10", "--seed", "3"]


def _train(out) -> dict:
    assert train_controller.main([*TINY, "--out", str(out)]) == 0
    return safe_torch_load(out / "controller.pt", map_location="cpu")


def _tensors(obj, prefix=""):
    """All tensors in a nested checkpoint, by path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}/{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}/{i}")


def test_same_seed_same_trained_controller(tmp_path):
    first, second = _train(tmp_path / "a"), _train(tmp_path / "b")
    a, b = dict(_tensors(first)), dict(_tensors(second))
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_same_seed_same_evaluation_table(tmp_path):
    args = ["--task", "regression2d", "--steps", "30", "--seeds", "2", "--baselines", "sgd,hd",
            "--grid", "paper", "--episodes", "0", "--eval-every", "10"]

    def table(out):
        assert evaluate.main([*args, "--out", str(out)]) == 0
        with open(out / "summary.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            row.pop("wall_time")  # the only column that may differ
        return rows

    first = table(tmp_path / "a")
    assert first and first == table(tmp_path / "b")
