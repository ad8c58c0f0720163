"""Controller training on N parallel primary runs: transitions per second against N (issue 12).

DDPG/TD3 with ``--num-envs N`` learn from ``envs.LearningRateVectorEnv`` (N primary runs in one
batched step); SB3 makes N gradient steps per vector step, so the agent's updates per transition
do not change with N and the transitions per second measure what N buys. For each N (and each
repeat, in a rotating order so a shared machine's drift hits every N alike) one training run of
``--steps`` transitions through :func:`lrrl.training.train`; prints transitions per second
per repeat, the median, and the ratio to N = 1 per repeat (median and min-max).

Run:  python benchmarks/vector_training.py                        (a few minutes on 2 cores)
      python benchmarks/vector_training.py --agent td3 --n 1 2 4 8 --steps 400 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(agent: str, preset: str, task: str, n: int, steps: int, learning_starts: int) -> float:
    """Transitions per second of one training run with ``num_envs=n`` (wall time of ``learn``)."""
    from lrrl import training
    from lrrl.config import TrainSettings

    settings = TrainSettings.from_preset(preset, agent=agent, task=task, steps=steps, num_envs=n,
                                         checkpoint_every=0, select_best=0,
                                         agent_overrides={"learning_starts": learning_starts})
    with tempfile.TemporaryDirectory() as tmp:
        summary = training.train(settings, Path(tmp) / "run", progress=False)
    return summary["steps_this_run"] / summary["wall_time_s"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/vector_training.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--agent", default="td3", choices=("td3", "ddpg"))
    p.add_argument("--preset", default="actor-critic-relative", help="env settings (the actor-critic-relative env: 25 updates per decision)")
    p.add_argument("--task", default="digits")
    p.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8], help="num_envs values")
    p.add_argument("--steps", type=int, default=400, help="transitions per training run")
    p.add_argument("--learning-starts", type=int, default=40,
                   help="random-action transitions before gradient steps (small, so agent updates are measured)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, all cores)")
    p.add_argument("--json", default="results/bench/vector_training.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rates: dict[int, list[float]] = {n: [] for n in args.n}
    for r in range(args.repeats):
        order = args.n[r % len(args.n):] + args.n[:r % len(args.n)]
        for n in order:
            rate = measure(args.agent, args.preset, args.task, n, args.steps, args.learning_starts)
            rates[n].append(rate)
            print(f"repeat {r}: N={n}: {rate:.1f} transitions/s", flush=True)
    base = rates[args.n[0]]
    rows = []
    print(f"\n{args.agent} on {args.task} ({args.preset} env), {args.steps} transitions per run, "
          f"{args.repeats} repeats, torch threads {torch.get_num_threads()}")
    print("| N | transitions/s (median) | per repeat | ratio to N=%d, median [min-max] |" % args.n[0])
    print("|---|---|---|---|")
    for n in args.n:
        ratios = [a / b for a, b in zip(rates[n], base)]
        rows.append({"n": n, "rates": rates[n], "ratios": ratios})
        print(f"| {n} | {statistics.median(rates[n]):.1f} | {', '.join(f'{v:.1f}' for v in rates[n])} | "
              f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] |")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
