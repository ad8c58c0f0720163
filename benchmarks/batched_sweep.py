"""Wall time of an evaluation sweep's runs side by side (``run_episodes``) against one by one.

A sweep of ``--n`` SGD runs on digits (``--rates`` learning rates x seeds, ``ConstantLR``, raw
action, episode length ``--episode-length``, full train/test evaluation every ``--eval-every``
updates), two ways, each building its env(s) as a sweep would:

- ``batched``: one ``LearningRateVectorEnv(num_envs=n)`` and ``agents.baselines.run_episodes``;
- ``single``: per run a ``LearningRateEnv`` and ``agents.baselines.run_episode`` (what
  ``evaluate.py`` does per spec).

Per torch thread count (``--threads``), ``--repeats`` repeats in one process, alternating which
case goes first; prints the wall seconds per repeat, the ratio single / batched per repeat (the
speed-up) with its median and spread (min-max), and how far the final train losses of the two
ways differ (largest relative difference; runs equal to 1e-5). They are the same runs, equal to
float rounding per step, but at rates near the edge of stability (digits SGD, lr 0.1-1) the
rounding differences of the batched convolutions grow by ~10x every 8 updates after ~40 updates,
so over 300 updates a few such runs end far apart (a single run with 2 torch threads instead of 1
also starts to differ, later: update ~70 at lr 0.3 in one check); runs at stable rates agree to ~1e-6.

Run:  python benchmarks/batched_sweep.py                          (~ minutes on 2 cores)
      python benchmarks/batched_sweep.py --threads 1 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch


def sweep_specs(n: int, rates: list[float]) -> list[tuple[float, int]]:
    """``n`` (rate, seed) pairs: the rates cycled, seeds 0, 1, ... per rate."""
    return [(rates[k % len(rates)], k // len(rates)) for k in range(n)]


def env_kwargs(args) -> dict:
    return {"device": "cpu", "optimizer": "sgd", "action": "raw", "lr_min": 1e-5, "lr_max": 10.0,
            "episode_length": args.episode_length, "eval_every": args.eval_every}


def run_batched(specs, kwargs):
    from agents.baselines import ConstantLR, run_episodes
    from envs.vector_env import LearningRateVectorEnv

    vec = LearningRateVectorEnv("digits", num_envs=len(specs), batched=True, **kwargs)
    return run_episodes(vec, [ConstantLR(r) for r, _ in specs], [s for _, s in specs])


def run_single(specs, kwargs):
    from agents.baselines import ConstantLR, run_episode
    from envs import LearningRateEnv

    return [run_episode(LearningRateEnv("digits", seed=s, **kwargs), ConstantLR(r), s) for r, s in specs]


def final_losses(results) -> np.ndarray:
    return np.array([r.train_loss[-1] if r.train_loss else np.nan for r in results])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="runs in the sweep (sub-envs)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0])
    parser.add_argument("--episode-length", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1 or args.episode_length < 1 or min(args.threads) < 1:
        parser.error("--n, --repeats, --episode-length and --threads must be >= 1")

    specs = sweep_specs(args.n, args.rates)
    kwargs = env_kwargs(args)
    from envs.tasks import make_task
    make_task("digits")  # load the data once before timing
    warm = env_kwargs(argparse.Namespace(episode_length=3, eval_every=args.eval_every))
    run_batched(specs[:2], warm), run_single(specs[:2], warm)  # first calls (imports, vmap set-up) untimed
    print(f"digits SGD sweep: {args.n} runs (rates {args.rates}), episode_length {args.episode_length}, "
          f"eval_every {args.eval_every}, {args.repeats} repeats")
    for threads in args.threads:
        torch.set_num_threads(threads)
        times = {"batched": [], "single": []}
        worst, agree = 0.0, []
        for rep in range(args.repeats):
            order = ("batched", "single") if rep % 2 == 0 else ("single", "batched")
            out = {}
            for case in order:
                fn = run_batched if case == "batched" else run_single
                start = time.perf_counter()
                out[case] = fn(specs, kwargs)
                times[case].append(time.perf_counter() - start)
            a, b = final_losses(out["batched"]), final_losses(out["single"])
            ok = np.isfinite(a) & np.isfinite(b)
            rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
            agree.append(int(np.sum(rel <= 1e-5)))
            if ok.any():
                worst = max(worst, float(np.max(rel[ok])))
            print(f"  threads={threads} repeat {rep}: batched {times['batched'][-1]:.2f} s, "
                  f"single {times['single'][-1]:.2f} s, ratio {times['single'][-1] / times['batched'][-1]:.2f}x")
        ratios = [s / b for s, b in zip(times["single"], times["batched"])]
        print(f"threads={threads}: batched median {statistics.median(times['batched']):.2f} s, single median "
              f"{statistics.median(times['single']):.2f} s; speed-up single/batched median "
              f"{statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}); "
              f"final train loss max rel. diff {worst:.1e}, equal to 1e-5 in {min(agree)}-{max(agree)} "
              f"of {len(specs)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
