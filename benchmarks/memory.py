"""Memory: peak resident set size (RSS) of one env and of a controller training run.

Each case runs in a fresh Python subprocess and reports its own high-water mark
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so the cases do not see each other's memory.

Cases:

- ``baseline``: the interpreter with torch, gymnasium and ``envs`` imported (what every case pays);
- ``env-digits``: one ``LearningRateEnv`` on ``digits``, reset, ``--steps`` steps, one full evaluation;
- ``env-mnist-cnn``: the same on the paper's MNIST CNN with random data of MNIST's real size
  (``--n-train`` 60000 x 1x28x28 float32 = 188 MB, plus 10000 test examples);
- ``train-digits``: :func:`lrrl.training.train` (the ``digits-capped`` preset) on
  ``digits`` for ``--train-steps`` steps with episodes of ``--episode-length`` steps (each episode's
  end evaluates the full train/test loss, as a real run does);
- ``train-mnist-cnn``: the same on the MNIST CNN with the random MNIST-sized data, named as the
  user task ``benchmarks.memory:mnist_sized_task`` (no dataset files here), so the real training
  code path runs on it.

RSS after the env's steps and after its full evaluation are both reported for the env cases
(the evaluation runs the model on chunks of 2048 examples, whose activations dominate the peak).

Run:  python benchmarks/memory.py              (about a minute or two on 2 cores)
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CASES = ("baseline", "env-digits", "env-mnist-cnn", "train-digits", "train-mnist-cnn")


def peak_mb() -> float:
    """Peak RSS of this process so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20  # macOS reports bytes


def random_mnist_task(n_train: int, n_test: int):
    import torch

    from envs.tasks import Task, mnist_cnn

    g = torch.Generator().manual_seed(0)
    return Task.from_tensors(torch.rand((n_train, 1, 28, 28), generator=g),
                             torch.randint(0, 10, (n_train,), generator=g),
                             torch.rand((n_test, 1, 28, 28), generator=g),
                             torch.randint(0, 10, (n_test,), generator=g),
                             model_factory=mnist_cnn, batch_size=50, name="mnist")


def mnist_sized_task():
    """:func:`random_mnist_task` as a user task (``benchmarks.memory:mnist_sized_task``) that a
    training run can name; its sizes come from the child's ``LRRL_MEMORY_SIZES`` ("N_TRAIN,N_TEST")."""
    import os

    n_train, n_test = (int(v) for v in os.environ.get("LRRL_MEMORY_SIZES", "60000,10000").split(","))
    return random_mnist_task(n_train, n_test)


def child(case: str, args) -> dict:
    """Run one case in this (fresh) process and return its figures."""
    import torch

    torch.set_num_threads(args.threads)
    import gymnasium  # noqa: F401

    import envs
    from envs import LearningRateEnv

    out: dict = {"case": case}
    if case == "baseline":
        pass
    elif case in ("env-digits", "env-mnist-cnn"):
        task = "digits" if case == "env-digits" else random_mnist_task(args.n_train, args.n_test)
        out["rss_after_data_mb"] = peak_mb()
        env = LearningRateEnv(task, episode_length=10**6, device="cpu")
        env.reset(seed=0)
        action = env.lr_to_unit(0.01).astype("float32").reshape(env.action_space.shape)
        for _ in range(args.steps):
            env.step(action)
        out["rss_after_steps_mb"] = peak_mb()
        env.trainer.evaluate()
        out["rss_after_evaluate_mb"] = peak_mb()
    elif case in ("train-digits", "train-mnist-cnn"):
        import os

        from lrrl import training
        from lrrl.config import TrainSettings

        task = "digits"
        if case == "train-mnist-cnn":
            os.environ["LRRL_MEMORY_SIZES"] = f"{args.n_train},{args.n_test}"
            task = "benchmarks.memory:mnist_sized_task"
        settings = TrainSettings.from_preset("digits-capped", task=task, steps=args.train_steps, device="cpu",
                                             checkpoint_every=0, env={"episode_length": args.episode_length})
        out["settings"] = {"preset": settings.preset, "agent": settings.agent, "task": task,
                           "steps": settings.steps, "episode_length": args.episode_length}
        with tempfile.TemporaryDirectory() as tmp:
            training.train(settings, Path(tmp) / "run", progress=False)
    else:
        raise ValueError(case)
    out["peak_rss_mb"] = peak_mb()
    del envs
    return out


def run_case(case: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case, "--steps", str(args.steps),
           "--n-train", str(args.n_train), "--n-test", str(args.n_test), "--train-steps",
           str(args.train_steps), "--episode-length", str(args.episode_length), "--threads", str(args.threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        return {"case": case, "error": f"exit {proc.returncode}: {tail}", "seconds": seconds}
    return {**json.loads(lines[-1]), "seconds": seconds}


def build_parser() -> argparse.ArgumentParser:
    from benchmarks.common import RESULTS_DIR

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES),
                        help="cases to measure, each in its own subprocess (default: all)")
    parser.add_argument("--steps", type=int, default=20, help="env steps of the env cases (default 20)")
    parser.add_argument("--n-train", type=int, default=60_000,
                        help="random MNIST training examples (default 60000, the real size)")
    parser.add_argument("--n-test", type=int, default=10_000, help="random MNIST test examples (default 10000)")
    parser.add_argument("--train-steps", type=int, default=20,
                        help="training env steps (default 20: one episode, ending in one full evaluation)")
    parser.add_argument("--episode-length", type=int, default=20,
                        help="training episode length; each episode ends with a full "
                             "evaluation (default 20)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", default=str(RESULTS_DIR / "memory.json"),
                        help="where to write the results (default results/bench/memory.json)")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import fail, machine_info, write_json

    args = build_parser().parse_args(argv)
    if min(args.steps, args.n_train, args.n_test, args.train_steps, args.episode_length, args.threads) < 1:
        fail("all sizes must be >= 1")
    if args.n_train < 50:
        fail("--n-train must be >= 50 (one batch)")
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0

    from tqdm import tqdm

    results = [run_case(case, args) for case in tqdm(args.cases, desc="cases", file=sys.stderr)]
    print(f"\npeak resident memory (ru_maxrss), each case in a fresh process; random MNIST: "
          f"{args.n_train}+{args.n_test} x 1x28x28 float32 ({(args.n_train + args.n_test) * 784 * 4 / 2**20:.0f} MiB)")
    print(f"{'case':<18} {'peak MiB':>9} {'after data':>11} {'after steps':>12} {'after eval':>11} {'seconds':>8}")
    for r in results:
        if "error" in r:
            print(f"{r['case']:<18} error: {r['error']}")
            continue
        cells = [r.get(k) for k in ("rss_after_data_mb", "rss_after_steps_mb", "rss_after_evaluate_mb")]
        print(f"{r['case']:<18} {r['peak_rss_mb']:>9.0f} " +
              " ".join(f"{'-' if c is None else f'{c:.0f}':>11}" for c in cells) + f" {r['seconds']:>8.1f}")
    payload = {"benchmark": "memory", "unit": "MiB", "n_train": args.n_train, "n_test": args.n_test,
               "env_steps": args.steps, "train_steps": args.train_steps,
               "episode_length": args.episode_length, "machine": machine_info(), "results": results}
    print(f"\nwrote {write_json(args.json, payload)}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
