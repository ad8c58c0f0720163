"""A trained controller in the user's loop, against its result in the env, on suite instances.

For each controller and each instance (default: the suite's ``test`` families, scoring seeds
1000...), the controller's final full-training loss (and test loss, test accuracy) in

- ``env``: :class:`~envs.learning_rate_env.LearningRateEnv` on the instance (primary seed = instance
  seed, the instance's horizon and batch size): what ``evaluate.py --suite`` measures;
- ``loader``: a plain PyTorch loop through :class:`~agents.scheduler.ControllerScheduler` with a
  ``DataLoader`` that shuffles every epoch;
- ``replacement``: the same loop drawing batches with replacement (``RandomSampler``);
- ``batch/2``, ``batch*2``: the loader loop at half and twice the instance's batch size;
- ``horizon/2``, ``horizon*3``: the loader loop for half and three times its horizon;
- ``sgd``: constant SGD at ``--sgd-lr`` in the loader loop, for scale.

It prints, per variant, the geometric mean over instances of (variant's final training loss /
the env's), the largest such ratio, and the collapsed runs (not finite, or final training loss
>= 0.9 x the initial: the suite's rule), then every run. What a practitioner needs: every loop variant
within 2x of the env result, none collapsed. A variant that changes the batch size or the horizon
trains differently from the env's run by construction (half the horizon is half the training), so
it is also compared with the env run at the same batch size and horizon (``env batch/2``, ...):
that ratio is what the loop itself changes.

    python benchmarks/user_loop.py pretrained:general [more controllers] [--split test] [--instances 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.baselines import ControllerPolicy, run_episode  # noqa: E402
from agents.checkpoint import load_controller  # noqa: E402
from agents.scheduler import ControllerScheduler  # noqa: E402
from envs.learning_rate_env import LearningRateEnv  # noqa: E402
from envs.primary import PrimaryTrainer  # noqa: E402
from envs.suite import make_instance, scoring_seeds, split_families  # noqa: E402
from lrrl.stats import COLLAPSE_FRACTION  # noqa: E402  (the suite's collapse rule)

VARIANTS = ("loader", "replacement", "batch/2", "batch*2", "horizon/2", "horizon*3", "sgd")
#: the variants that change the batch size or the horizon: (batch factor, horizon factor)
SIZE_VARIANTS = {"batch/2": (0.5, 1), "batch*2": (2, 1), "horizon/2": (1, 0.5), "horizon*3": (1, 3)}


def variant_size(task, variant: str | None) -> tuple[int, int]:
    """``(horizon, batch)`` of ``variant`` on ``task``: the instance's own, or scaled."""
    batch_factor, horizon_factor = SIZE_VARIANTS.get(variant, (1, 1))
    return (max(1, int(int(task.meta["horizon"]) * horizon_factor)),
            max(1, int(int(task.batch_size) * batch_factor)))


def env_result(controller, task, seed: int, variant: str | None = None) -> dict:
    """The controller's run in the env on ``task`` (its horizon), from ``reset(seed=seed)``; with a
    size variant, at that variant's batch size and horizon."""
    horizon, batch = variant_size(task, variant)
    task = dataclasses.replace(task, batch_size=batch, meta={**task.meta, "horizon": horizon})
    kwargs = {**controller.env_kwargs(include_reward=True), "episode_length": horizon, "eval_every": horizon,
              "fresh_w0": False}
    env = LearningRateEnv(task=task, device="cpu", **kwargs)
    res = run_episode(env, ControllerPolicy(controller), seed)
    done = res.steps >= horizon and not res.diverged
    return {"train_loss": res.train_loss[-1] if done else math.nan,
            "test_loss": res.test_loss[-1] if done else math.nan,
            "test_accuracy": res.test_accuracy[-1] if done and res.test_accuracy else None,
            "initial": res.train_loss[0] if res.train_loss else math.nan}


def loop_result(controller, task, seed: int, variant: str, sgd_lr: float) -> dict:
    """The plain loop of ``variant`` (module docstring): the instance's model from the same ``w0``
    as the env's run (:class:`PrimaryTrainer`'s initialisation for ``seed``), its data and loss."""
    trainer = PrimaryTrainer(task, device="cpu", seed=seed)  # w0 and data exactly as in the env
    model, loss_fn = trainer.model, trainer.loss_fn
    x, y = trainer.x_train, trainer.y_train
    horizon, batch = variant_size(task, variant)
    dataset = torch.utils.data.TensorDataset(x, y)
    gen = torch.Generator().manual_seed(seed)
    if variant == "replacement":
        sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=horizon * batch, generator=gen)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler)
    else:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, generator=gen, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=sgd_lr)
    scheduler = None if variant == "sgd" else ControllerScheduler(controller, optimizer, total_steps=horizon)
    initial = trainer.evaluate(("train",))["train_loss"]
    t = 0
    model.train()
    while t < horizon:
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if scheduler is not None:
                scheduler.step(loss)
            optimizer.step()
            t += 1
            if t >= horizon:
                break
    final = trainer.evaluate(("train", "test"))
    return {"train_loss": final["train_loss"], "test_loss": final["test_loss"],
            "test_accuracy": final.get("test_accuracy"), "initial": initial}


def collapsed(run: dict) -> bool:
    return not (math.isfinite(run["train_loss"]) and run["train_loss"] < COLLAPSE_FRACTION * run["initial"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("controllers", nargs="+", help="run directories, controller files or pretrained:NAME")
    parser.add_argument("--split", choices=("train", "test"), default="test", help="suite split (default test)")
    parser.add_argument("--families", default=None, help="comma-separated subset of the split's families")
    parser.add_argument("--instances", type=int, default=3, help="scoring instances per family (default 3)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--sgd-lr", type=float, default=0.1, help="the rate of the sgd variant (default 0.1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    families = args.families.split(",") if args.families else list(split_families(args.split))
    unknown = [f for f in families if f not in split_families(args.split)]
    if unknown:
        parser.error(f"--families: {unknown[0]!r} is not a {args.split} family; choose from "
                     f"{', '.join(split_families(args.split))}")
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    print(f"command: python benchmarks/user_loop.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    for path in args.controllers:
        controller = load_controller(path)
        rows, t0 = [], time.perf_counter()
        for fam in families:
            for seed in scoring_seeds(args.instances):
                task = make_instance(fam, seed)
                env = env_result(controller, task, seed)
                row = {"instance": f"{fam}@{seed}", "env": env}
                for v in variants:
                    row[v] = loop_result(controller, task, seed, v, args.sgd_lr)
                    if v in SIZE_VARIANTS:
                        row[f"env {v}"] = env_result(controller, task, seed, v)
                rows.append(row)
        print(f"\n## {path} ({len(rows)} instances, {time.perf_counter() - t0:.0f} s)\n")
        print("| variant | geo. mean of loss / env's | largest | same size: geo. mean of loss / env's "
              "| same size: largest | collapsed |")
        print("|---|---|---|---|---|---|")
        print(f"| env | 1 | 1 | | | {sum(collapsed(r['env']) for r in rows)}/{len(rows)} |")
        for v in variants:
            geo, largest = _ratios(rows, v, "env")
            same = _ratios(rows, v, f"env {v}") if v in SIZE_VARIANTS else None
            same_cells = f"{same[0]:.3g} | {same[1]:.3g}" if same else " | "
            failed = sum(collapsed(r[v]) for r in rows) + (sum(collapsed(r[f"env {v}"]) for r in rows) if same else 0)
            runs = len(rows) * (2 if same else 1)
            print(f"| {v} | {geo:.3g} | {largest:.3g} | {same_cells} | {failed}/{runs} |")
        columns = ["env"] + [c for v in variants for c in ([v, f"env {v}"] if v in SIZE_VARIANTS else [v])]
        print("\nper instance, final training loss (test loss, test accuracy):\n")
        print("| instance | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for r in rows:
            print(f"| {r['instance']} | " + " | ".join(_cell(r[c]) for c in columns) + " |")
    return 0


def _ratios(rows: list[dict], variant: str, reference: str) -> tuple[float, float]:
    """Geometric mean (NaN if any ratio is not finite) and largest of the variant's final
    training loss over the reference run's, over the instances."""
    ratios = [r[variant]["train_loss"] / r[reference]["train_loss"] for r in rows]
    finite = [q for q in ratios if math.isfinite(q) and q > 0]
    geo = float(np.exp(np.mean(np.log(finite)))) if len(finite) == len(ratios) else math.nan
    return geo, max(ratios)


def _cell(run: dict) -> str:
    acc = run.get("test_accuracy")
    extra = f", {acc:.2f}" if acc is not None and math.isfinite(acc) else ""
    mark = " (collapsed)" if collapsed(run) else ""
    return f"{run['train_loss']:.3g} ({run['test_loss']:.3g}{extra}){mark}"


if __name__ == "__main__":
    sys.exit(main())
