"""Env overhead: wall time of N ``LearningRateEnv`` steps over N steps of a plain PyTorch SGD loop.

Same task, model, batch size, device and process. Per repeat, the cases run one after the other
in a rotating order (so that drift of a shared machine hits every case alike) and the ratio of
each repeat is env time / plain time of that repeat; the table shows the median ratio and its
spread (interquartile range, min..max) over the repeats.

Cases:

- ``plain``: an idiomatic PyTorch loop: data on the device once, a seeded ``randperm`` per
  epoch sliced into batch indices (the env draws its batches the same way),
  ``zero_grad(set_to_none=True)``, forward, cross-entropy, backward, ``SGD.step()``, and
  ``loss.item()`` each step (as a loop that logs or checks its loss does).
- ``floor``: the plain loop plus the one extra forward pass (no grad) on the same batch after
  the update that the env's reward needs: the protocol's minimal cost (about 1.33x).
- ``env``: ``LearningRateEnv.step`` with a constant action (raw env, no wrappers).
- ``gym``: the same through ``gymnasium.make("envs:LearningRate-v0", ...)``, i.e. with
  gymnasium's ``PassiveEnvChecker`` and ``OrderEnforcing`` wrappers.

The headline ratio is ``env / plain`` in wall time (the raw env); ``gym / plain`` is shown
beside it. The same ratios in CPU time of the (single) torch thread are printed too: they
measure the work itself and stay steady when other processes share the machine.

Tasks: ``digits`` (the real offline task), ``mnist-cnn`` and ``cifar-cnn`` (the paper's MNIST
and CIFAR-10 CNNs on random tensors of the real input shape, built with ``Task.from_tensors``).

Run:  python benchmarks/env_overhead.py            (a few minutes on 2 cores)
      python benchmarks/env_overhead.py --steps 1000 --repeats 7 --tasks mnist-cnn
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.common import (ALL_TASKS, RESULTS_DIR, fail, machine_info, make_bench_task,
                               summary, timed, write_json)

#: default steps per timed run (per task), chosen so the defaults finish in minutes on 2 cores
DEFAULT_STEPS = {"digits": 300, "mnist-cnn": 40, "cifar-cnn": 15}
CASES = ("plain", "floor", "env", "gym")
LR = 0.01  # constant learning rate of every case: small enough never to diverge on these tasks


class PlainLoop:
    """The reference: a plain PyTorch SGD loop on the same task, model, batches and device.

    ``extra_forward=True`` adds the reward's forward pass (no grad, same batch, after the
    update) so that the loop costs exactly what the env's protocol needs at least.
    """

    def __init__(self, task, device: torch.device, seed: int = 0, extra_forward: bool = False):
        torch.manual_seed(seed)
        self.model = task.model_factory().to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.loss_fn = task.loss_fn
        self.x, self.y = task.x_train.to(device), task.y_train.to(device)
        self.batch_size = task.batch_size
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.perm = torch.empty(0, dtype=torch.long, device=device)
        self.pos = 0
        self.extra_forward = extra_forward
        self.last_loss = math.nan

    def run(self, n_steps: int) -> None:
        model, optimizer, loss_fn, x, y = self.model, self.optimizer, self.loss_fn, self.x, self.y
        for _ in range(n_steps):
            if self.pos + self.batch_size > len(self.perm):
                self.perm = torch.randperm(len(x), generator=self.generator, device=x.device)
                self.pos = 0
            idx = self.perm[self.pos:self.pos + self.batch_size]
            self.pos += self.batch_size
            xb, yb = x[idx], y[idx]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            if self.extra_forward:
                with torch.no_grad():
                    after = loss_fn(model(xb), yb)
                self.last_loss = torch.stack([loss.detach(), after]).tolist()[0]
            else:
                self.last_loss = loss.item()


class EnvLoop:
    """``n`` env steps with a constant action; ``wrapped`` goes through ``gymnasium.make``."""

    def __init__(self, task, device: torch.device, n_steps: int, seed: int = 0, wrapped: bool = False):
        import gymnasium

        import envs  # noqa: F401  (registers the env ids)
        from envs import LearningRateEnv

        kwargs = dict(task=task, episode_length=10**9, device=str(device), seed=seed)
        self.env = gymnasium.make("envs:LearningRate-v0", **kwargs) if wrapped else LearningRateEnv(**kwargs)
        raw = self.env.unwrapped
        self.action = raw.lr_to_unit(LR).astype("float32").reshape(raw.action_space.shape)
        self.env.reset(seed=seed)

    def run(self, n_steps: int) -> None:
        env, action = self.env, self.action
        for _ in range(n_steps):
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:  # not expected at this lr; keep the count right anyway
                env.reset()


def bench_task(name: str, n_steps: int, repeats: int, device: torch.device, n_train: int,
               warmup: int = 5, cases=CASES) -> dict:
    """Time every case ``repeats`` times on one task; return per-case times and ratios."""
    task = make_bench_task(name, n_train=n_train)
    loops = {
        "plain": PlainLoop(task, device),
        "floor": PlainLoop(task, device, extra_forward=True),
        "env": EnvLoop(task, device, n_steps),
        "gym": EnvLoop(task, device, n_steps, wrapped=True),
    }
    loops = {k: v for k, v in loops.items() if k in cases}
    for loop in loops.values():  # warm-up: allocator, autograd graph caches, lazy inits
        loop.run(warmup)
    times = {k: [] for k in loops}  # wall seconds per run
    cpu = {k: [] for k in loops}    # CPU seconds of this thread per run
    order = list(loops)
    for r in range(repeats):
        rotated = order[r % len(order):] + order[:r % len(order)]
        for case in rotated:
            wall, thread = timed(lambda: loops[case].run(n_steps))
            times[case].append(wall)
            cpu[case].append(thread)

    def ratios(clock: dict) -> dict:
        return {case: summary([t / p for t, p in zip(clock[case], clock["plain"])])
                for case in loops if case != "plain"}

    return {
        "task": name, "steps": n_steps, "repeats": repeats, "batch_size": task.batch_size,
        "ms_per_step": {case: summary([1e3 * t / n_steps for t in ts]) for case, ts in times.items()},
        "ratio_to_plain": ratios(times),
        "cpu_ms_per_step": {case: summary([1e3 * t / n_steps for t in ts]) for case, ts in cpu.items()},
        "cpu_ratio_to_plain": ratios(cpu),
        "raw_wall_seconds": times,
        "raw_cpu_seconds": cpu,
    }


def print_table(results: list[dict]) -> None:
    print("\nratio = case time / plain time, per repeat: median [interquartile range] (min..max)")
    for clock, key, ms_key in (("wall time (the headline)", "ratio_to_plain", "ms_per_step"),
                               ("CPU time of the thread (robust to other load)", "cpu_ratio_to_plain",
                                "cpu_ms_per_step")):
        print(f"\n{clock}")
        header = f"{'task':<10} {'plain ms/step':>13} {'floor':>27} {'env (raw)':>27} {'gym.make':>27}"
        print(header)
        print("-" * len(header))
        for res in results:
            cells = []
            for case in ("floor", "env", "gym"):
                s = res[key].get(case)
                cells.append("-" if s is None else
                             f"{s['median']:.3f}x [{s['q1']:.2f}-{s['q3']:.2f}] ({s['min']:.2f}..{s['max']:.2f})")
            plain = res[ms_key]["plain"]["median"]
            print(f"{res['task']:<10} {plain:>13.2f} " + " ".join(f"{c:>27}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--tasks", nargs="+", default=list(ALL_TASKS), choices=ALL_TASKS,
                        help="tasks to measure (default: all)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per timed run (default per task: "
                             + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per case; the ratio is the median over them (default 5)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per case first (default 5)")
    parser.add_argument("--n-train", type=int, default=10_000,
                        help="training examples of the random tasks (step cost does not depend on it; "
                             "default 10000)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                        help="training device (default cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: steady timings on a shared machine)")
    parser.add_argument("--json", default=str(RESULTS_DIR / "env_overhead.json"),
                        help="where to write the results (default results/bench/env_overhead.json)")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        fail("--steps must be >= 1")
    if args.repeats < 1 or args.threads < 1 or args.warmup < 0 or args.n_train < 100:
        fail("need --repeats >= 1, --threads >= 1, --warmup >= 0 and --n-train >= 100")

    from envs.primary import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        fail(str(exc))
    torch.set_num_threads(args.threads)
    print(f"device {device}, torch threads {args.threads}, constant lr {LR}")
    print("plain loop: data on the device once; randperm batch indices per epoch; zero_grad(set_to_none);"
          " forward; cross-entropy; backward; SGD.step(); loss.item() every step")

    from tqdm import tqdm

    results = []
    for name in tqdm(args.tasks, desc="tasks", file=sys.stderr):
        steps = args.steps or DEFAULT_STEPS[name]
        results.append(bench_task(name, steps, args.repeats, device, args.n_train, warmup=args.warmup))
    print_table(results)
    payload = {"benchmark": "env_overhead", "device": str(device), "lr": LR,
               "headline": "ratio_to_plain.env (raw LearningRateEnv, no wrappers)",
               "machine": machine_info(), "results": results}
    path = write_json(args.json, payload)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
