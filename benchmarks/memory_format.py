"""Channels-last CNNs on the CPU and the batched trainer's two paths: measured choices.

Two groups of figures, per torch thread count (``--threads``), each case timed ``--repeats``
times in a rotating order inside one process (a shared machine's drift hits every case alike);
medians and, for ratios, the per-repeat ratio's median [min-max]:

1. ``single``: one network of each CNN (``digits``, the paper's MNIST CNN, the paper's CIFAR-10
   CNN; random inputs of the right shape), a training step (forward, backward on the task's batch
   size) and a forward pass of a 256-example evaluation chunk, in the default NCHW layout and in
   ``torch.channels_last``: why ``PrimaryTrainer`` keeps CNNs channels-last on the CPU.
2. ``batched``: ``--n`` digits runs (``envs.batched.BatchedPrimaryTrainer``): one training step
   of all N (``loss_and_grad`` with the next batch's loss, what the env computes per step) by
   ``LayerStack`` (``layerwise``) against ``vmap``, and against N single ``PrimaryTrainer`` steps
   (channels-last and NCHW); one full train+test evaluation of all N by ``evaluate`` (one run at a
   time in a channels-last copy), by one ``LayerStack`` call per chunk, by one ``vmap`` call per
   chunk, and by N single ``PrimaryTrainer.evaluate``: why the batched trainer trains through
   ``LayerStack`` and evaluates one run at a time.

Run:  python benchmarks/memory_format.py                    (~3 minutes on 2 cores)
      python benchmarks/memory_format.py --threads 1 --repeats 5 --groups batched
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from benchmarks.common import RESULTS_DIR, fail, machine_info, summary, write_json

CNNS = {"digits": ("digits_cnn", (1, 8, 8), 50), "mnist-cnn": ("mnist_cnn", (1, 28, 28), 50),
        "cifar10-cnn": ("cifar10_cnn", (3, 32, 32), 128)}


def rotate(cases: dict, repeats: int, inner: int = 1) -> dict[str, list[float]]:
    """Wall seconds per call of each case, ``repeats`` times in a rotating order (each timing
    the mean of ``inner`` calls); one untimed call of each first."""
    names = list(cases)
    for fn in cases.values():
        fn()
    walls = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            for _ in range(inner):
                cases[k]()
            walls[k].append((time.perf_counter() - t0) / inner)
    return walls


def ratios(walls: dict[str, list[float]], slow: str, fast: str) -> dict:
    return summary([s / f for s, f in zip(walls[slow], walls[fast])])


def single_cases(name: str) -> dict:
    from envs import tasks

    factory, shape, batch = CNNS[name]
    torch.manual_seed(0)
    nchw = getattr(tasks, factory)()
    last = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    chunk = torch.randn(256, *shape)

    def step(model):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    @torch.no_grad()
    def forward(model):
        model(chunk)

    return {"train step, NCHW": lambda: step(nchw), "train step, channels-last": lambda: step(last),
            "eval chunk, NCHW": lambda: forward(nchw), "eval chunk, channels-last": lambda: forward(last)}


def batched_cases(n: int) -> dict:
    from envs.batched import BatchedPrimaryTrainer
    from envs.primary import PrimaryTrainer

    template = PrimaryTrainer("digits", device="cpu")
    layerwise = BatchedPrimaryTrainer(template, list(range(n)))
    vmapped = BatchedPrimaryTrainer(template, list(range(n)), layerwise=False)
    assert layerwise.layer_stack is not None and vmapped.layer_stack is None
    singles = [PrimaryTrainer("digits", device="cpu", seed=i) for i in range(n)]
    nchw = [PrimaryTrainer("digits", device="cpu", seed=i) for i in range(n)]
    for tr in nchw:
        tr.model = tr.model.to(memory_format=torch.contiguous_format)
        tr.reset()
    idx = torch.stack([layerwise.next_batch(i) for i in range(n)])
    other = torch.stack([layerwise.next_batch(i) for i in range(n)])

    def single_steps(trainers):
        for tr in trainers:
            tr.loss_and_grad(idx[0])
            tr.batch_loss(other[0]).item()

    @torch.no_grad()
    def chunked(trainer):
        t = trainer.template
        for x in (t.x_train, t.x_test):
            for start in range(0, len(x), 256):
                trainer._output(trainer.params, trainer.buffers, x[start:start + 256])

    envs = list(range(n))
    return {
        "train": {"LayerStack": lambda: layerwise.loss_and_grad(idx, other=(other, "train")),
                  "vmap": lambda: vmapped.loss_and_grad(idx, other=(other, "train")),
                  "N single, channels-last": lambda: single_steps(singles),
                  "N single, NCHW": lambda: single_steps(nchw)},
        "evaluate": {"evaluate (one run at a time, channels-last)": lambda: layerwise.evaluate(envs),
                     "LayerStack per chunk": lambda: chunked(layerwise),
                     "vmap per chunk": lambda: chunked(vmapped),
                     "N single evaluate": lambda: [tr.evaluate() for tr in singles]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to measure")
    p.add_argument("--repeats", type=int, default=5, help="timings per case, rotating order")
    p.add_argument("--groups", nargs="+", default=["single", "batched"], choices=("single", "batched"))
    p.add_argument("--cnns", nargs="+", default=list(CNNS), choices=list(CNNS), help="networks of group single")
    p.add_argument("--n", type=int, default=16, help="runs of group batched")
    p.add_argument("--json", default=None, help="output file (default results/bench/memory_format.json)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.n < 1 or min(args.threads) < 1:
        fail("--repeats, --n and --threads must be >= 1")
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        if "single" in args.groups:
            for name in args.cnns:
                walls = rotate(single_cases(name), args.repeats, inner=5 if name == "digits" else 1)
                res = {"group": "single", "threads": threads, "cnn": name,
                       "median_ms": {k: 1000 * summary(v)["median"] for k, v in walls.items()},
                       "speedup_train": ratios(walls, "train step, NCHW", "train step, channels-last"),
                       "speedup_eval": ratios(walls, "eval chunk, NCHW", "eval chunk, channels-last")}
                results.append(res)
                ms = res["median_ms"]
                print(f"threads={threads} {name:12s} train step NCHW {ms['train step, NCHW']:7.2f} ms, "
                      f"channels-last {ms['train step, channels-last']:7.2f} ms: "
                      f"{res['speedup_train']['median']:.2f}x [{res['speedup_train']['min']:.2f}-"
                      f"{res['speedup_train']['max']:.2f}];  eval chunk NCHW {ms['eval chunk, NCHW']:7.2f} ms, "
                      f"channels-last {ms['eval chunk, channels-last']:7.2f} ms: {res['speedup_eval']['median']:.2f}x "
                      f"[{res['speedup_eval']['min']:.2f}-{res['speedup_eval']['max']:.2f}]", flush=True)
        if "batched" in args.groups:
            for part, cases in batched_cases(args.n).items():
                walls = rotate(cases, args.repeats, inner=10 if part == "train" else 1)
                first = next(iter(cases))
                res = {"group": "batched", "part": part, "threads": threads, "n": args.n,
                       "median_ms": {k: 1000 * summary(v)["median"] for k, v in walls.items()},
                       "ratio_to_first": {k: ratios(walls, k, first) for k in cases if k != first}}
                results.append(res)
                print(f"threads={threads} digits N={args.n} {part}, ms per call of all N (ratio to {first}):",
                      flush=True)
                for k, ms in res["median_ms"].items():
                    r = res["ratio_to_first"].get(k)
                    extra = f"  {r['median']:.2f}x [{r['min']:.2f}-{r['max']:.2f}]" if r else ""
                    print(f"    {k:45s} {ms:8.1f}{extra}", flush=True)
    path = write_json(args.json or RESULTS_DIR / "memory_format.json",
                      {"machine": machine_info(), "settings": vars(args), "results": results})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
