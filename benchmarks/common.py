"""Helpers shared by the benchmark scripts: random tasks of real shapes, timing, JSON output.

Nothing here trains anything: primary training lives in :mod:`envs.primary`.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

#: default folder for the JSON results of the benchmark scripts
RESULTS_DIR = Path(__file__).resolve().parent.parent / "results" / "bench"

#: tasks of the benchmarks: name -> (input shape, model factory name in envs.tasks), ``None`` = real task
RANDOM_TASKS = {
    "mnist-cnn": ((1, 28, 28), "mnist_cnn"),
    "cifar-cnn": ((3, 32, 32), "cifar10_cnn"),
}
ALL_TASKS = ("digits", *RANDOM_TASKS)


def make_bench_task(name: str, n_train: int = 10_000, n_test: int = 1_000, seed: int = 0):
    """``digits`` (the real offline task), or the paper's MNIST / CIFAR-10 CNN on random inputs
    of the real shape (float32 in [0, 1)) with random labels in 0..9, batch 50.

    The step cost of the env and of a plain loop does not depend on the data's values, only
    on shapes, so random tensors stand in for the datasets (no files needed).
    """
    from envs import tasks

    if name == "digits":
        return tasks.make_task("digits")
    if name not in RANDOM_TASKS:
        raise ValueError(f"unknown benchmark task {name!r}; choose from {', '.join(ALL_TASKS)}")
    shape, factory = RANDOM_TASKS[name]
    g = torch.Generator().manual_seed(seed)
    x_train = torch.rand((n_train, *shape), generator=g)
    y_train = torch.randint(0, 10, (n_train,), generator=g)
    x_test = torch.rand((n_test, *shape), generator=g)
    y_test = torch.randint(0, 10, (n_test,), generator=g)
    return tasks.Task.from_tensors(x_train, y_train, x_test, y_test,
                                   model_factory=getattr(tasks, factory), batch_size=50, name=name)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of ``fn()``: wall time (``perf_counter``, CUDA synchronised on both
    ends) and the CPU time of the calling thread (``thread_time``).

    With one torch thread on CPU, forward, backward and optimizer all run in the calling thread,
    so its CPU time measures the work itself and is far less disturbed than wall time when other
    processes share the cores.
    """
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.thread_time() - cpu


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min and max of ``values``."""
    vals = sorted(values)
    if len(vals) >= 2:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1 = q3 = vals[0]
    return {"median": statistics.median(vals), "q1": q1, "q3": q3,
            "min": vals[0], "max": vals[-1], "n": len(vals)}


def machine_info() -> dict:
    """What the numbers were measured on."""
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    """Write ``payload`` as indented JSON (via a temporary file and a rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def fail(message: str) -> "NoReturn":  # noqa: F821
    """Print a clear error (no traceback) and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
