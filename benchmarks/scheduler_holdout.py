"""A trained controller outside our own evaluation code: a plain PyTorch loop, its own seeding.

    python benchmarks/scheduler_holdout.py runs/recommended-seed0 --sgd-lr 0.6 --clipped 5,0.1

Trains the task's model with a loop written here (``torch.manual_seed`` for the initial
weights, a ``DataLoader`` with its own shuffling generator, ``model(x)``, ``loss.backward()``,
``optimizer.step()``): no :class:`~envs.LearningRateEnv`, no :class:`~envs.primary.PrimaryTrainer`.
The rate comes from :class:`agents.ControllerScheduler` (``loss.backward(); scheduler.step(loss);
optimizer.step()``), or is a constant (``--sgd-lr``), or is SGD with ``clip_grad_norm_``
(``--clipped LR,MAX_NORM``), on seeds that neither controller training (0-499), checkpoint
selection (500) nor ``evaluate.py`` (1000+) use: ``--seeds`` default 2000-2009. Prints, per
method, the mean, median and per-seed final full training loss and the collapse count, and
writes them to ``--out`` (JSON).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/scheduler_holdout.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("controllers", nargs="*", help="run directories of train_controller.py")
    p.add_argument("--task", default="digits",
                   help="task name or package.module:function returning an envs.Task (its data and model)")
    p.add_argument("--updates", type=int, default=1000, help="optimizer updates per run")
    p.add_argument("--seeds", default="2000-2009", help="first-last, or a comma-separated list")
    p.add_argument("--sgd-lr", type=float, action="append", default=[],
                   help="a constant SGD rate to compare with (repeatable)")
    p.add_argument("--clipped", action="append", default=[], metavar="LR,MAX_NORM",
                   help="SGD with clip_grad_norm_(MAX_NORM) at rate LR (repeatable)")
    p.add_argument("--optimizer", default="sgd", choices=("sgd", "adam"),
                   help="the optimizer every method drives (a controller for Adam needs adam)")
    p.add_argument("--jobs", type=int, default=1, help="runs side by side in worker processes")
    p.add_argument("--out", default="results/scheduler-holdout.json", help="JSON output")
    return p


def parse_seeds(text: str) -> list[int]:
    if "-" in text and "," not in text:
        first, last = (int(v) for v in text.split("-"))
        return list(range(first, last + 1))
    return [int(v) for v in text.split(",") if v.strip()]


def run_job(job: dict) -> tuple[float, float]:
    """One run in a worker: load the task and the controller there (never pickled across)."""
    import torch

    from agents.checkpoint import load_controller
    from envs.tasks import make_task

    torch.set_num_threads(1)
    controller = load_controller(job["controller"]) if job.get("controller") else None
    return train_plain(make_task(job["task"]), job["seed"], job["updates"], job["optimizer"], job["lr"],
                       job.get("max_norm"), controller)


def train_plain(task, seed: int, updates: int, optimizer_name: str, lr: float, max_norm: float | None = None,
                controller=None) -> tuple[float, float]:
    """One run of the plain loop: ``(initial, final)`` full training loss."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from agents import ControllerScheduler

    torch.manual_seed(seed)
    model = task.model_factory()
    make = torch.optim.SGD if optimizer_name == "sgd" else torch.optim.Adam
    optimizer = make(model.parameters(), lr=lr)
    scheduler = ControllerScheduler(controller, optimizer, total_steps=updates) if controller is not None else None
    loader = DataLoader(TensorDataset(task.x_train, task.y_train), batch_size=task.batch_size, shuffle=True,
                        drop_last=True, generator=torch.Generator().manual_seed(seed + 7919))

    def full_loss() -> float:
        with torch.no_grad():
            return float(task.loss_fn(model(task.x_train), task.y_train))

    initial, done = full_loss(), 0
    while done < updates:
        for x, y in loader:
            optimizer.zero_grad()
            loss = task.loss_fn(model(x), y)
            loss.backward()
            if scheduler is not None:
                scheduler.step(loss)
            if max_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            done += 1
            if done == updates:
                break
    final = full_loss()
    return initial, final if math.isfinite(final) else math.inf


def summarize(name: str, runs: list[tuple[float, float]], seeds: list[int]) -> dict:
    import numpy as np

    from lrrl.stats import COLLAPSE_FRACTION, mean_std  # the one collapse rule and mean ± std

    finals = [f for _, f in runs]
    finite = [f for f in finals if math.isfinite(f)]
    return {"method": name, "seeds": seeds, "per_seed": finals,
            "mean": float(np.mean(finals)) if len(finite) == len(finals) else math.inf,
            "median": float(np.median(finals)),
            "std": mean_std(finite)[1],
            "collapsed": sum(not (f < COLLAPSE_FRACTION * i) for i, f in runs)}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import concurrent.futures as cf
    import multiprocessing

    from tqdm.auto import tqdm

    from agents.checkpoint import load_controller

    seeds = parse_seeds(args.seeds)
    methods: list[tuple[str, dict]] = []
    for path in args.controllers:
        load_controller(path)  # a bad run directory is an error before any work starts
        methods.append((f"controller {path}", {"controller": path, "lr": 0.1}))
    for lr in args.sgd_lr:
        methods.append((f"{args.optimizer} {lr:g}", {"lr": lr}))
    for pair in args.clipped:
        lr, max_norm = (float(v) for v in pair.split(","))
        methods.append((f"{args.optimizer} {lr:g}, clipped at {max_norm:g}", {"lr": lr, "max_norm": max_norm}))
    if not methods:
        build_parser().error("nothing to run: give controllers, --sgd-lr or --clipped")
    jobs = [{"task": args.task, "seed": seed, "updates": args.updates, "optimizer": args.optimizer, **kw}
            for _, kw in methods for seed in seeds]
    start = time.time()
    with tqdm(total=len(jobs), desc="plain loops", unit="run") as bar:
        if args.jobs > 1:
            with cf.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = []
                for result in pool.map(run_job, jobs):
                    results.append(result)
                    bar.update(1)
        else:
            results = []
            for job in jobs:
                results.append(run_job(job))
                bar.update(1)
    rows = [summarize(name, results[i * len(seeds):(i + 1) * len(seeds)], seeds)
            for i, (name, _) in enumerate(methods)]
    print(f"\n{args.task}, {args.updates} updates, plain PyTorch loop, seeds {seeds[0]}..{seeds[-1]} "
          f"({time.time() - start:.0f} s)\n")
    print("| method | mean final train loss | median | collapsed | per seed |\n|---|---|---|---|---|")
    for r in rows:
        per = ", ".join(f"{v:.2g}" for v in r["per_seed"])
        print(f"| {r['method']} | {r['mean']:.3g} ± {r['std']:.2g} | {r['median']:.3g} | "
              f"{r['collapsed']}/{len(seeds)} | {per} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"task": args.task, "updates": args.updates, "command": sys.argv, "rows": rows},
                              indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
