"""Normalised SGD by hand: every step ``c * ||w_t||`` long (``c`` constant, or decaying linearly to 0
over the run), the hand rule behind the ``recommended`` preset's step-cap range (lrrl/presets.py).

    python benchmarks/hand_rules.py --task digits --caps 0.03,0.1,0.2 --schedules linear,const --seeds 4
    python benchmarks/hand_rules.py --suite train --caps 0.1 --schedules linear --seeds 1

With ``--task``: the final full training loss of every seed, 1,000 updates (``--updates``). With
``--suite SPLIT``: each family's instances of ``--seeds`` at their own horizon and batch size, as
a ratio to SGD tuned for that instance in the recorded reference (docs/suite/reference.json); a
collapsed run (not finite, or final training loss >= 0.9 x the initial one) scores 100; then the
geometric mean per rule.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "suite" / "reference.json"
SCHEDULES = ("const", "linear")


def final_loss(task, seed: int, cap: float, schedule: str, updates: int) -> tuple[float, float]:
    """(initial, final) full training loss of normalised SGD on ``task`` from primary seed ``seed``."""
    import torch

    from envs.control import grad_norm, weight_norm
    from envs.primary import PrimaryTrainer

    trainer = PrimaryTrainer(task, optimizer="sgd", device="cpu", seed=seed)
    initial = trainer.evaluate(("train",))["train_loss"]
    params = list(trainer.parameters())
    for t in range(updates):
        trainer.loss_and_grad(trainer.next_batch())
        g, w = torch.stack([grad_norm(params), weight_norm(params)]).tolist()  # one synchronisation
        fraction = cap * (1.0 - t / updates if schedule == "linear" else 1.0)
        trainer.update(fraction * w / max(g, 1e-12))
    return initial, trainer.evaluate(("train",))["train_loss"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/hand_rules.py", description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--task", help="a task name (e.g. digits)")
    where.add_argument("--suite", choices=("train", "test"), help="a split of the task suite")
    p.add_argument("--caps", default="0.1", help="comma-separated step lengths as fractions of ||w_t||")
    p.add_argument("--schedules", default="linear", help=f"comma-separated, of {', '.join(SCHEDULES)}")
    p.add_argument("--seeds", default="1", help="primary seeds (--task) or instance seeds (--suite), as evaluate.py's: "
                   "a count from 1000 (4: 1000-1003), a list or a range (default 1: seed 1000)")
    p.add_argument("--updates", type=int, default=1000, help="--task: updates per run")
    return p


def main(argv=None) -> int:
    import torch

    from lrrl.config import parse_seeds
    from lrrl.suite import FAILED_RATIO, geometric_mean, ratio

    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    try:
        caps = [float(c) for c in args.caps.split(",")]
        seeds = parse_seeds(args.seeds, count_start=1000)
    except ValueError as exc:
        build_parser().error(str(exc))
    schedules = args.schedules.split(",")
    if not all(c > 0 for c in caps) or not set(schedules) <= set(SCHEDULES):
        build_parser().error(f"--caps must be positive and --schedules of {', '.join(SCHEDULES)}")
    rules = [(c, s) for c in caps for s in schedules]
    if args.task:
        from envs.tasks import make_task

        task = make_task(args.task)
        for cap, schedule in rules:
            finals = [final_loss(task, seed, cap, schedule, args.updates)[1] for seed in seeds]
            print(f"cap {cap:g} x ||w||, {schedule}: " + ", ".join(f"{x:.2e}" for x in finals), flush=True)
        return 0
    from envs.suite import make_instance

    recorded = json.loads(REFERENCE.read_text())[args.suite]["per_instance"]
    instances = [i for i in recorded if i["seed"] in seeds]
    if not instances:
        build_parser().error(f"no recorded {args.suite} instance has a seed in {args.seeds}")
    ratios: dict[tuple, list[float]] = {rule: [] for rule in rules}
    for inst in instances:
        task = make_instance(inst["family"], inst["seed"])
        tuned = {"final": {"train_loss": inst["methods"]["SGD tuned"]["train_loss"]}}
        cells = []
        for rule in rules:
            initial, final = final_loss(task, inst["seed"], *rule, task.meta["horizon"])
            # scored as the suite scores a run: a collapse or a non-finite loss is FAILED_RATIO
            run = {"status": "ok" if math.isfinite(final) else "diverged", "curves": {"train_loss": [initial]},
                   "final": {"train_loss": final}}
            ratios[rule].append(ratio(run, tuned))
            cells.append(f"{ratios[rule][-1]:.3g}")
        print(f"{inst['family']}@{inst['seed']}: " + ", ".join(cells), flush=True)
    for (cap, schedule), values in ratios.items():
        print(f"cap {cap:g} x ||w||, {schedule}: geometric mean ratio to tuned SGD "
              f"{geometric_mean(values):.3g}, largest {max(values):.3g}, "
              f"collapsed {sum(v == FAILED_RATIO for v in values)}/{len(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
