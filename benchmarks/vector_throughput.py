"""Vector-env throughput: primary updates per second of N parallel runs, four ways.

For each task and each N, in one process, per repeat in a rotating order (so that drift of a
shared machine hits every case alike):

- ``vector``: ``envs.LearningRateVectorEnv(task, num_envs=N)``: one batched forward/backward
  (``envs.layerwise.LayerStack`` on the CPU, else ``torch.func.vmap``) and one batched SGD step
  for all N networks per env step;
- ``sequential``: N ``LearningRateEnv`` s stepped one after another (what one had before);
- ``async``: gymnasium's ``AsyncVectorEnv`` of N single envs (N worker processes, one torch
  thread each; only up to ``--async-max`` because every worker loads torch and the data);
- ``plain``: a plain PyTorch loop over N models (forward, backward, ``SGD.step``,
  ``loss.item()`` per model per step): the cost of N runs without any environment.

Figures: primary updates per second (N x env steps / wall seconds), medians over repeats, and
per repeat the ratio of each case to ``sequential`` (= the speed-up over one ``LearningRateEnv``,
whose per-update cost ``sequential`` is). Memory: the peak resident set of a fresh process
running the ``vector`` / ``sequential`` case minus the same process's before building the
envs (CPU), or ``torch.cuda.max_memory_allocated`` (CUDA).

Tasks: ``digits`` and ``regression2d`` (the real offline tasks) and ``mnist-cnn`` (the paper's
MNIST CNN on random tensors of MNIST's shape, ``benchmarks/common.py``).

Run:  python benchmarks/vector_throughput.py                      (minutes on 2 cores)
      python benchmarks/vector_throughput.py --tasks regression2d --n 1 4 16 64 --steps 50
      python benchmarks/vector_throughput.py --device cuda          (where a GPU exists)
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks.common import RESULTS_DIR, fail, machine_info, make_bench_task, summary, write_json

TASKS = ("digits", "regression2d", "mnist-cnn")
CASES = ("vector", "sequential", "async", "plain")
#: default env steps per timed run, per task (each step is N primary updates)
DEFAULT_STEPS = {"digits": 20, "regression2d": 50, "mnist-cnn": 3}
#: default N per task (the MNIST CNN at N = 64 needs ~3 GB and minutes per step on 2 cores)
DEFAULT_N = {"digits": (1, 4, 16, 64), "regression2d": (1, 4, 16, 64), "mnist-cnn": (1, 4, 16)}
ACTION = -0.6  # absolute action -> lr = 1e-5 * 1e5 ** 0.2 = 1e-4: never diverges on these tasks
EPISODE = 10**6  # no episode ends inside a timed run


def build_task(name: str, n_train: int):
    from envs.tasks import make_task

    if name in ("digits", "regression2d"):
        return make_task(name)
    return make_bench_task(name, n_train=n_train)


def _single_env(name: str, n_train: int, seed: int, device: str):
    """A LearningRateEnv in an AsyncVectorEnv worker (module level: picklable). One torch thread
    per worker; AsyncVectorEnv also calls this once in the main process (for the spaces), where
    the thread count is left alone."""
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)
    from envs import LearningRateEnv

    return LearningRateEnv(build_task(name, n_train), seed=seed, device=device, episode_length=EPISODE)


class Case:
    """One way of running N primary runs; ``run(steps)`` does ``steps`` env steps of all N."""

    def __init__(self, kind: str, task, name: str, n: int, device: str, n_train: int) -> None:
        from envs import LearningRateEnv, LearningRateVectorEnv

        self.kind, self.n = kind, n
        if kind == "vector":
            self.env = LearningRateVectorEnv(task, num_envs=n, device=device, episode_length=EPISODE,
                                             batched=True)
            self.env.reset(seed=0)
            self.action = np.full((n, 1), ACTION, np.float32)
        elif kind == "sequential":
            self.envs = [LearningRateEnv(task, seed=i, device=device, episode_length=EPISODE) for i in range(n)]
            for env in self.envs:
                env.reset()
            self.action = np.array([ACTION], np.float32)
        elif kind == "async":
            import gymnasium as gym

            fns = [functools.partial(_single_env, name, n_train, i, device) for i in range(n)]
            self.env = gym.vector.AsyncVectorEnv(fns, context="spawn")
            self.env.reset(seed=0)
            self.action = np.full((n, 1), ACTION, np.float32)
        elif kind == "plain":
            from envs.primary import resolve_device

            dev = resolve_device(device)
            self.models, self.opts = [], []
            for i in range(n):
                torch.manual_seed(i)
                model = task.model_factory().to(dev)
                self.models.append(model)
                self.opts.append(torch.optim.SGD(model.parameters(), lr=1e-4))
            self.x, self.y = task.x_train.to(dev), task.y_train.to(dev)
            self.loss_fn, self.bs = task.loss_fn, task.batch_size
            self.gen = torch.Generator(device=dev).manual_seed(0)
        else:
            raise ValueError(kind)

    def run(self, steps: int) -> None:
        if self.kind in ("vector", "async"):
            for _ in range(steps):
                self.env.step(self.action)
        elif self.kind == "sequential":
            for _ in range(steps):
                for env in self.envs:
                    env.step(self.action)
        else:
            for _ in range(steps):
                for model, opt in zip(self.models, self.opts):
                    idx = torch.randint(len(self.x), (self.bs,), generator=self.gen, device=self.x.device)
                    opt.zero_grad(set_to_none=True)
                    loss = self.loss_fn(model(self.x[idx]), self.y[idx])
                    loss.backward()
                    opt.step()
                    loss.item()

    def close(self) -> None:
        if self.kind == "async":
            self.env.close()


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure_memory(name: str, n: int, kind: str, device: str, n_train: int, steps: int = 2) -> dict:
    """Peak memory of one case (run in a fresh process by the caller on CPU)."""
    task = build_task(name, n_train)
    # first a tiny case of the same kind: lazily loaded code (torch.func, ...) must not count
    Case(kind, build_task("regression2d", n_train), "regression2d", 1, device, n_train).run(1)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        # reset the peak resident set to the current one (Linux), so that the import's peak
        # does not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_mb("VmRSS")
    case = Case(kind, task, name, n, device, n_train)
    case.run(steps)
    if device == "cuda":
        return {"peak_mb": (torch.cuda.max_memory_allocated() - before) / 2**20}
    return {"peak_mb": _status_mb("VmHWM") - before}


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return math.nan


def memory_in_subprocess(name, n, kind, device, n_train, threads) -> float | None:
    code = (f"import sys, json, torch; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
            f"torch.set_num_threads({threads}) if {threads} else None; "
            f"from benchmarks.vector_throughput import measure_memory; "
            f"print(json.dumps(measure_memory({name!r}, {n}, {kind!r}, {device!r}, {n_train})))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
        return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
    except Exception:  # a memory figure is optional; a failure is reported as missing
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--n", nargs="+", type=int, default=None, help="numbers of envs (default per task)")
    p.add_argument("--steps", type=int, default=None, help="env steps per timed run (default per task)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="untimed env steps per case first")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--async-max", type=int, default=4, help="largest N for the async case")
    p.add_argument("--n-train", type=int, default=10_000, help="training examples of mnist-cnn")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--memory-cases", nargs="*", default=["vector"], choices=("vector", "sequential"),
                   help="cases whose peak memory is measured, each in a fresh process (none: skip)")
    p.add_argument("--json", default=None, help="output file (default results/bench/vector_throughput.json)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for flag in ("steps", "repeats", "n_train"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            fail(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.n is not None and any(n < 1 for n in args.n):
        fail(f"--n: every N must be >= 1, got {args.n}")
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for name in args.tasks:
        task = build_task(name, args.n_train)
        steps = args.steps or DEFAULT_STEPS[name]
        for n in (args.n or DEFAULT_N[name]):
            kinds = [k for k in args.cases if not (k == "async" and n > args.async_max)]
            cases = {k: Case(k, task, name, n, args.device, args.n_train) for k in kinds}
            for case in cases.values():
                case.run(args.warmup)
            walls = {k: [] for k in kinds}
            for r in range(args.repeats):
                order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
                for k in order:
                    _sync()
                    t0 = time.perf_counter()
                    cases[k].run(steps)
                    _sync()
                    walls[k].append(time.perf_counter() - t0)
            for case in cases.values():
                case.close()
            del cases
            ups = {k: summary([n * steps / w for w in ws]) for k, ws in walls.items()}
            ratios = {}
            if "sequential" in walls:
                ratios = {k: summary([ws / w for w, ws in zip(walls[k], walls["sequential"])])
                          for k in kinds if k != "sequential"}
            memory = {}
            for k in args.memory_cases:
                if k in kinds:
                    memory[k] = (memory_in_subprocess(name, n, k, args.device, args.n_train, args.threads)
                                     if args.device == "cpu" else measure_memory(name, n, k, "cuda", args.n_train)["peak_mb"])
            res = {"task": name, "n": n, "steps": steps, "updates_per_second": ups,
                   "ratio_to_sequential": ratios, "peak_memory_mb": memory,
                   "raw_wall_seconds": walls}
            results.append(res)
            line = "  ".join(f"{k} {ups[k]['median']:9.1f}" for k in kinds)
            rline = "  ".join(f"{k}/seq {ratios[k]['median']:.2f}x" for k in ratios)
            mem = "  ".join(f"{k} {v:.0f} MB" for k, v in memory.items() if v is not None)
            print(f"{name:12s} N={n:3d}  updates/s: {line}  |  {rline}  |  peak {mem}", flush=True)
    payload = {"machine": machine_info(), "settings": vars(args), "results": results}
    path = write_json(args.json or RESULTS_DIR / "vector_throughput.json", payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
