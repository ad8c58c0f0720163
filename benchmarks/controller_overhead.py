"""Controller overhead: primary training driven by the paper's actor-critic, over a plain SGD loop.

Same measurement as ``env_overhead.py`` (one process, cases alternated in a rotating order per
repeat, per-repeat ratios to the plain loop, median and spread), with these cases:

- ``plain``: the idiomatic PyTorch SGD loop of ``env_overhead.py`` (``loss.item()`` every step);
- ``env``: ``LearningRateEnv.step`` with a constant action (no controller);
- ``inference``: a controller at inference: per step ``ActorCritic.predict`` (the LSTM actor's
  forward on the observation, recurrent state carried, deterministic) then ``env.step``;
- ``learning``: ``ActorCritic.learn(n)``: the agent acting with exploration noise and updating
  its critic and actor after every step (Algorithm 1; ``m_phi = m_theta = 1``, the defaults).
  Each ``learn`` call starts with an env reset (one extra forward+backward, included).

The agent is untrained (its weights do not change the cost of a step); the env uses the default
loss-only state and the SGD primary optimizer.

Run:  python benchmarks/controller_overhead.py        (a few minutes on 2 cores)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.common import (ALL_TASKS, RESULTS_DIR, fail, machine_info, make_bench_task, summary,
                               timed, write_json)
from benchmarks.env_overhead import EnvLoop, PlainLoop

DEFAULT_STEPS = {"digits": 300, "mnist-cnn": 30, "cifar-cnn": 10}
CASES = ("plain", "env", "inference", "learning")


class InferenceLoop(EnvLoop):
    """``predict`` then ``step``, the way a trained controller drives a training run."""

    def __init__(self, task, device, n_steps, seed: int = 0):
        super().__init__(task, device, n_steps, seed)
        from agents.actor_critic import ActorCritic

        self.agent = ActorCritic(self.env, device="cpu", seed=seed)
        self.obs, _ = self.env.reset(seed=seed)
        self.state, self.start = None, True

    def run(self, n_steps: int) -> None:
        env, agent = self.env, self.agent
        for _ in range(n_steps):
            action, self.state = agent.predict(self.obs, state=self.state,
                                               episode_start=[self.start], deterministic=True)
            self.obs, _, terminated, truncated, _ = env.step(action)
            self.start = terminated or truncated
            if self.start:
                self.obs, _ = env.reset()


class LearningLoop(EnvLoop):
    """``ActorCritic.learn(n)``: acting, exploring and updating after every step."""

    def __init__(self, task, device, n_steps, seed: int = 0):
        super().__init__(task, device, n_steps, seed)
        from agents.actor_critic import ActorCritic

        self.agent = ActorCritic(self.env, device="cpu", seed=seed)

    def run(self, n_steps: int) -> None:
        self.agent.learn(total_timesteps=n_steps)


def bench_task(name: str, n_steps: int, repeats: int, device: torch.device, n_train: int, warmup: int) -> dict:
    task = make_bench_task(name, n_train=n_train)
    loops = {"plain": PlainLoop(task, device), "env": EnvLoop(task, device, n_steps),
             "inference": InferenceLoop(task, device, n_steps), "learning": LearningLoop(task, device, n_steps)}
    for loop in loops.values():
        loop.run(max(warmup, 1))
    wall = {k: [] for k in loops}
    cpu = {k: [] for k in loops}
    order = list(loops)
    for r in range(repeats):
        for case in order[r % len(order):] + order[:r % len(order)]:
            w, c = timed(lambda: loops[case].run(n_steps))
            wall[case].append(w)
            cpu[case].append(c)

    def ratios(clock):
        return {case: summary([t / p for t, p in zip(clock[case], clock["plain"])]) for case in loops if case != "plain"}

    return {"task": name, "steps": n_steps, "repeats": repeats,
            "ms_per_step": {k: summary([1e3 * t / n_steps for t in v]) for k, v in wall.items()},
            "cpu_ms_per_step": {k: summary([1e3 * t / n_steps for t in v]) for k, v in cpu.items()},
            "ratio_to_plain": ratios(wall), "cpu_ratio_to_plain": ratios(cpu),
            "raw_wall_seconds": wall, "raw_cpu_seconds": cpu}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--tasks", nargs="+", default=["digits", "mnist-cnn"], choices=ALL_TASKS,
                        help="tasks (default digits mnist-cnn)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per timed run (default per task: "
                             + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (default 5)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per case first (default 5)")
    parser.add_argument("--n-train", type=int, default=10_000, help="examples of the random tasks (default 10000)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="device (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", default=str(RESULTS_DIR / "controller_overhead.json"),
                        help="output file (default results/bench/controller_overhead.json)")
    args = parser.parse_args(argv)
    if (args.steps is not None and args.steps < 1) or args.repeats < 1 or args.threads < 1 or args.n_train < 100:
        fail("need --steps >= 1, --repeats >= 1, --threads >= 1 and --n-train >= 100")
    from envs.primary import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        fail(str(exc))
    torch.set_num_threads(args.threads)
    from tqdm import tqdm

    results = [bench_task(t, args.steps or DEFAULT_STEPS[t], args.repeats, device, args.n_train, args.warmup)
               for t in tqdm(args.tasks, desc="tasks", file=sys.stderr)]
    print("\nratio = case time / plain SGD loop time, per repeat: median [IQR] (min..max)")
    for key, ms_key, title in (("ratio_to_plain", "ms_per_step", "wall time"),
                               ("cpu_ratio_to_plain", "cpu_ms_per_step", "CPU time of the thread")):
        print(f"\n{title}\n{'task':<10} {'plain ms/step':>13} " + " ".join(f"{c:>27}" for c in CASES[1:]))
        for res in results:
            cells = [f"{s['median']:.3f}x [{s['q1']:.2f}-{s['q3']:.2f}] ({s['min']:.2f}..{s['max']:.2f})"
                     for s in (res[key][c] for c in CASES[1:])]
            print(f"{res['task']:<10} {res[ms_key]['plain']['median']:>13.2f} "
                  + " ".join(f"{c:>27}" for c in cells))
    path = write_json(args.json, {"benchmark": "controller_overhead", "device": str(device),
                                  "machine": machine_info(), "results": results})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
