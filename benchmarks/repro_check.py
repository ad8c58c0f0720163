"""Are the README rows that moved deterministic, or at the edge of stability? (issue 13)

Runs the few affected (method, parameter, seed) settings of the digits table exactly as
``evaluate.py`` runs them (:func:`lrrl.sweep.run_spec`, same env settings), under a chosen number of
torch CPU threads and an optional tiny relative perturbation of the learning rate, and prints
the final full training loss per seed and the mean per setting.

    python benchmarks/repro_check.py --threads 1 --out results/repro/t1.json
    python benchmarks/repro_check.py --threads 2 --out results/repro/t2.json
    python benchmarks/repro_check.py --threads 1 --perturb 1e-6 --out results/repro/t1p.json

Findings are in docs/reproducibility.md.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEEDS = (1000, 1001, 1002, 1003, 1004)
COMMON = {"task": "digits", "steps": 1000, "eval_every": 20, "device": "cpu", "data_root": None,
          "validation_size": 0, "trace": False, "divergence_factor": 100.0}


def specs(perturb: float, groups: list[str]) -> list[tuple[str, dict]]:
    from agents.baselines import FEATURE_CONTROLLER_GRID
    from lrrl.methods import FEATURE_FIT_SEEDS, FEATURE_LR0
    from lrrl.sweep import make_spec

    out = []
    f = 1.0 + perturb
    if "rmsprop" in groups:
        for lr in (1e-3, 1e-2):
            out += [(f"RMSprop {lr:g}", make_spec("rmsprop", s, lr * f, optimizer="rmsprop",
                                                   policy={"kind": "constant", "lr": lr * f})) for s in SEEDS]
    if "sgd" in groups:
        for lr in (0.5, 0.7):
            out += [(f"SGD {lr:g}", make_spec("sgd", s, lr * f, optimizer="sgd",
                                               policy={"kind": "constant", "lr": lr * f})) for s in SEEDS]
    if "feature-fit" in groups:
        for th in FEATURE_CONTROLLER_GRID:
            out += [(f"Daniel-style fit {th}", make_spec(
                "feature-fit", s, list(th), policy={"kind": "feature", "theta": list(th), "lr0": FEATURE_LR0 * f}))
                for s in FEATURE_FIT_SEEDS]
    if "feature" in groups:
        for th in ((0.3, 0.0, -1.0), (0.1, 5.0, -1.0)):
            out += [(f"Daniel-style {th}", make_spec(
                "feature", s, list(th), policy={"kind": "feature", "theta": list(th), "lr0": FEATURE_LR0 * f}))
                for s in SEEDS]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--perturb", type=float, default=0.0, help="relative change of every learning rate")
    p.add_argument("--groups", default="rmsprop,sgd,feature-fit,feature")
    p.add_argument("--only", default=None,
                   help="semicolon-separated 'NAME@SEED' or 'NAME' filters on the run names printed, e.g. "
                        "'Daniel-style fit (0.1, 5.0, -1.0)@0'")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from lrrl.sweep import run_spec

    results: dict[str, list] = {}
    t0 = time.time()
    todo = specs(args.perturb, args.groups.split(","))
    if args.only:
        wanted = [w.strip() for w in args.only.split(";") if w.strip()]
        todo = [(n, sp) for n, sp in todo
                if any(w == n or w == f"{n}@{sp['seed']}" for w in wanted)]
    for name, spec in todo:
        rec = run_spec(spec, COMMON)
        v = rec["final"]["train_loss"]
        results.setdefault(name, []).append({"seed": spec["seed"], "status": rec["status"], "train_loss": v})
        print(f"{name:40s} seed {spec['seed']:5d} {rec['status']:9s} "
              f"{'-' if v is None else f'{v:.4e}'}  ({rec['wall_time']:.1f} s)", flush=True)
    print(f"\nthreads={args.threads} perturb={args.perturb:g} torch {torch.__version__} "
          f"({time.time() - t0:.0f} s)")
    for name, runs in results.items():
        vals = [r["train_loss"] if r["train_loss"] is not None else math.inf for r in runs]
        print(f"  {name:40s} mean {sum(vals) / len(vals):.4e}  per seed "
              + " ".join("div" if not math.isfinite(v) else f"{v:.3g}" for v in vals))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"threads": args.threads, "perturb": args.perturb,
                                              "torch": torch.__version__, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
