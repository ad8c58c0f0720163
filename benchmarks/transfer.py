"""Transfer and any-optimizer measurements: controllers trained on task A, evaluated on task B.

    python benchmarks/transfer.py                       # small defaults: a few minutes on CPU
    python benchmarks/transfer.py --train-steps 10000 --eval-updates 1000 --jobs 2   # full sizes

1. Trains controllers with :func:`lrrl.training.train` (the ``--preset``, default ``digits-capped``), one
   per ``--controllers`` entry ``TASKS@OPTIMIZER``: ``digits@sgd`` (the paper's setting),
   ``digits+regression2d@sgd`` (multi-task: round-robin episodes), ``digits@momentum``,
   ``digits@adam`` (the controller sets the learning rate of SGD with momentum 0.9 / of Adam).
2. Evaluates all of them with ``evaluate.py`` on every ``--tests`` task, against SGD and Adam
   tuned on the fine grid (the decade grid plus x0.5..x7 around its best rate; ``--grid paper``:
   the decade grid only) on the same held-out seeds. Test tasks: ``digits``, ``regression2d``,
   ``fashion-mnist`` (needs its dataset files: skipped, with the reason, when they are missing
   and there is no network), and a user task built from tensors: ``benchmarks.transfer:breast_cancer_task``
   / ``benchmarks.transfer:wine_task`` (scikit-learn's bundled data, a small MLP, via
   :meth:`envs.Task.from_tensors`; any ``package.module:function`` returning a Task works).
3. Prints the transfer table (train task, test task, controller, its final training loss, and
   tuned SGD's and Adam's, mean +- std over the seeds) and writes it to ``--out``/transfer.json
   and transfer.md; each evaluation's full report is in ``--out``/eval-<task>/.

Trained controllers are reused when their run directory was written with the same settings
(``transfer_spec.json``); the baseline runs of ``evaluate.py`` resume from their files.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_CONTROLLERS = "digits@sgd,digits+regression2d@sgd,digits@momentum,digits@adam"
DEFAULT_TESTS = "digits,regression2d,fashion-mnist,benchmarks.transfer:breast_cancer_task"


# --------------------------------------------------------------------------- user tasks
def _tabular_task(loader_name: str, name: str, hidden: int = 32, batch_size: int = 32):
    """A scikit-learn bundled tabular dataset as an envs.Task: standardised features (statistics
    of the training split), a fixed 75/25 split, a one-hidden-layer tanh MLP, cross-entropy."""
    import sklearn.datasets
    import torch
    from sklearn.model_selection import train_test_split
    from torch import nn

    from envs.tasks import Task

    x, y = getattr(sklearn.datasets, loader_name)(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-8
    as_x = lambda a: torch.tensor((a - mean) / std, dtype=torch.float32)  # noqa: E731
    n_in, n_out = x.shape[1], int(y.max()) + 1

    def mlp() -> nn.Module:
        return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))

    return Task.from_tensors(as_x(x_tr), torch.tensor(y_tr), as_x(x_te), torch.tensor(y_te),
                             model_factory=mlp, batch_size=batch_size, name=name)


def breast_cancer_task():
    """scikit-learn's breast-cancer data (569 x 30, 2 classes) with a 30-32-2 tanh MLP, batch 32."""
    return _tabular_task("load_breast_cancer", "breast_cancer")


def wine_task():
    """scikit-learn's wine data (178 x 13, 3 classes) with a 13-32-3 tanh MLP, batch 32."""
    return _tabular_task("load_wine", "wine", batch_size=16)


# --------------------------------------------------------------------------- arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/transfer.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--controllers", default=DEFAULT_CONTROLLERS,
                   help="controllers to train, comma-separated TASKS@OPTIMIZER (TASKS joined by '+' "
                        "for multi-task round-robin training)")
    p.add_argument("--use", nargs="*", default=[], metavar="RUN_DIR",
                   help="extra, already trained controllers (train_controller.py run directories)")
    p.add_argument("--tests", default=DEFAULT_TESTS,
                   help="comma-separated test tasks (names or package.module:function)")
    p.add_argument("--preset", default="digits-capped", help="train_controller.py preset")
    p.add_argument("--train-steps", type=int, default=3000, help="env steps per controller")
    p.add_argument("--episode-length", type=int, default=None,
                   help="training episode length (default: the preset's)")
    p.add_argument("--eval-updates", type=int, default=300, help="primary updates per evaluation run")
    p.add_argument("--seeds", type=int, default=5, help="held-out evaluation seeds (1000, 1001, ...)")
    p.add_argument("--grid", choices=("paper", "fine"), default="fine",
                   help="tuning grid of the SGD/Adam baselines: decade grid, or fine grid around its best")
    p.add_argument("--jobs", type=int, default=1, help="evaluate.py worker processes (--backend local)")
    p.add_argument("--data-root", default=None, help="folder holding fashion-mnist files, if any")
    p.add_argument("--out", default="results/transfer", help="output folder (runs in OUT/runs)")
    p.add_argument("--no-progress", action="store_true", help="no training progress bars")
    from lrrl.sweep import add_backend_arguments

    add_backend_arguments(p)  # where the evaluation sweeps run (controllers train in this process)
    return p


def parse_controllers(text: str) -> list[tuple[str, str]]:
    specs = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        tasks, _, optimizer = item.partition("@")
        if not tasks or not optimizer:
            raise ValueError(f"--controllers: {item!r} is not TASKS@OPTIMIZER (e.g. digits@adam)")
        specs.append((tasks.replace("+", ","), optimizer))
    return specs


# --------------------------------------------------------------------------- steps
def train(tasks: str, optimizer: str, args: argparse.Namespace, runs: Path) -> tuple[Path, bool]:
    """Train (or reuse) one controller; returns ``(run_dir, trained_now)``."""
    from lrrl import training
    from lrrl.config import TrainSettings

    out = runs / f"{tasks.replace(',', '+')}-{optimizer}"
    settings = TrainSettings.from_preset(args.preset, env={"optimizer": optimizer, "episode_length": args.episode_length},
                                         task=tasks, steps=args.train_steps, seed=0, checkpoint_every=0)
    spec = {"settings": settings.to_json()}  # what the run was trained with (its preset's values included)
    spec_file = out / "transfer_spec.json"
    if (out / "summary.json").is_file() and spec_file.is_file() and json.loads(spec_file.read_text()) == spec:
        print(f"reusing {out} (same settings)")
        return out, False
    if out.exists():
        shutil.rmtree(out)
    print(f"training {tasks}@{optimizer} -> {out}", flush=True)
    training.train(settings, out, progress=not args.no_progress)
    spec_file.write_text(json.dumps(spec, indent=1))
    return out, True


def dataset_problem(task: str, data_root: str | None) -> str | None:
    """Why ``task`` cannot be used here (no files, no network), or ``None``."""
    from envs.tasks import OFFLINE_TASKS, TASKS, DatasetUnavailableError, make_task

    if task in OFFLINE_TASKS or task not in TASKS:
        return None
    try:
        make_task(task, data_root=data_root, download=False)  # never wait on a network here
    except DatasetUnavailableError as exc:
        detail = str(exc).split(" Downloading")[0]
        return (f"{task} skipped: its dataset files are not on this machine and this machine has no "
                f"network access to download them ({detail}); pass --data-root DIR with the files")
    return None


def evaluate_on(task: str, run_dirs: list[Path], args: argparse.Namespace, out: Path, backend=None):
    """The tuning protocol (:func:`lrrl.protocol.run_evaluation`, what evaluate.py runs) with
    every controller and the tuned SGD/Adam baselines on ``task``; returns its Results."""
    from lrrl.config import EvaluationSettings, held_out_seeds
    from lrrl.protocol import load_controllers, run_evaluation

    safe = task.replace(":", "_").replace("/", "_")
    eval_out = out / f"eval-{safe}"
    for stale in (eval_out / "runs").glob("ctrl-*.json"):  # controllers may have been retrained
        stale.unlink()
    settings = EvaluationSettings(task=task, updates=args.eval_updates, seeds=held_out_seeds(args.seeds),
                                  baselines=["sgd,adam"], grid=args.grid, jobs=args.jobs, episodes=0,
                                  data_root=args.data_root).validate()
    controllers = load_controllers([str(d) for d in run_dirs], task)
    print(f"evaluating on {task} -> {eval_out}", flush=True)
    results, _ = run_evaluation(settings, controllers, eval_out,
                                command=f"benchmarks/transfer.py: evaluation on {task}", backend=backend)
    return results


def _cell(row: dict | None, key: str = "train_loss") -> dict:
    if row is None:
        return {"mean": None, "std": None, "diverged": None}
    m, s = row.get(f"{key}_mean"), row.get(f"{key}_std")
    return {"mean": m, "std": s, "diverged": row.get("diverged", 0) + row.get("errors", 0),
            "seeds": row.get("seeds"), "param": row.get("param")}


def table_rows(task: str, results, controllers: list[tuple[str, str, Path]], grid: str) -> list[dict]:
    protocol = "fine grid" if grid == "fine" else "decade grid (paper)"
    base = {name: next((r for r in results.rows if r["method"] == name and r["protocol"] == protocol), None)
            for name in ("SGD", "Adam")}
    by_label = {r["method"]: r for r in results.rows if r["protocol"] == "controller"}
    rows = []
    for (train_task, optimizer, run_dir), entry in zip(controllers, results.controllers):
        row = by_label.get(entry.label)  # results.controllers are in the order they were given
        rows.append({"train_task": train_task, "test_task": task, "controller": run_dir.resolve().name,
                     "optimizer": optimizer, "controller_loss": _cell(row),
                     "controller_test_loss": _cell(row, "test_loss"),
                     "tuned_sgd": _cell(base["SGD"]), "tuned_adam": _cell(base["Adam"])})
    return rows


def _pm(cell: dict) -> str:
    m, s = cell.get("mean"), cell.get("std")
    if m is None or not math.isfinite(m):
        return "diverged" if cell.get("diverged") else "—"
    bad = f" ({cell['diverged']}/{cell['seeds']} div.)" if cell.get("diverged") else ""
    lr = f" @ {cell['param']:.3g}" if isinstance(cell.get("param"), (int, float)) else ""
    return f"{m:.3e} ± {s:.1e}{lr}{bad}"


def markdown(rows: list[dict]) -> str:
    lines = ["| train task | test task | controller (optimizer) | controller | tuned SGD | tuned Adam |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['train_task']} | {r['test_task']} | {r['controller']} ({r['optimizer']}) | "
                     f"{_pm(r['controller_loss'])} | {_pm(r['tuned_sgd'])} | {_pm(r['tuned_adam'])} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("train_steps", "eval_updates", "seeds", "jobs"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    try:
        specs = parse_controllers(args.controllers)
    except ValueError as exc:
        parser.error(str(exc))
    tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    if not tests or not (specs or args.use):
        parser.error("need at least one controller and one test task")
    for path in args.use:
        if not Path(path).is_dir():
            parser.error(f"--use: {path!r} is not a run directory")

    from lrrl.sweep import backend_from_args

    try:
        backend = backend_from_args(args)  # Ray connects here: before anything is written
    except ValueError as exc:
        parser.error(str(exc))
    with backend:
        return _transfer(args, specs, tests, backend, argv)


def _transfer(args: argparse.Namespace, specs: list[tuple[str, str]], tests: list[str], backend,
              argv: Sequence[str] | None) -> int:
    import torch

    from agents.checkpoint import read_settings

    torch.set_num_threads(1)
    out = Path(args.out)
    t0 = time.time()
    controllers = [(tasks, opt, train(tasks, opt, args, out / "runs")[0]) for tasks, opt in specs]
    for path in args.use:
        settings = read_settings(Path(path) / "settings.json")
        controllers.append((settings["train"]["task"], settings["env_kwargs"].get("optimizer", "sgd"), Path(path)))

    rows, skipped = [], []
    for task in tests:
        problem = dataset_problem(task, args.data_root)
        if problem:
            print(problem)
            skipped.append({"test_task": task, "reason": problem})
            continue
        try:
            results = evaluate_on(task, [c[2] for c in controllers], args, out, backend)
        except (Exception, SystemExit) as exc:  # one task's failure must not lose the others
            skipped.append({"test_task": task, "reason": f"{task}: the evaluation failed ({type(exc).__name__}: {exc})"})
            print(skipped[-1]["reason"], file=sys.stderr)
            continue
        rows += table_rows(task, results, controllers, args.grid)

    from lrrl.presets import get_preset

    text = (f"# Transfer: controllers trained on one task, evaluated on another\n\n"
            f"Final full training loss after {args.eval_updates} updates, mean ± std over {args.seeds} held-out "
            f"seeds; tuned SGD/Adam: best constant rate on the {args.grid} grid (rate after @). Controllers: "
            f"preset `{args.preset}`, {args.train_steps} training steps, seed 0.\n\n" + markdown(rows) + "\n")
    if skipped:
        text += "\n" + "\n".join(f"- {s['reason']}" for s in skipped) + "\n"
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.md").write_text(text)
    (out / "transfer.json").write_text(json.dumps(
        {"command": "python benchmarks/transfer.py " + " ".join(sys.argv[1:] if argv is None else argv),
         "preset": args.preset, "preset_settings": get_preset(args.preset), "train_steps": args.train_steps,
         "eval_updates": args.eval_updates, "seeds": args.seeds, "grid": args.grid, "rows": rows,
         "skipped": skipped, "wall_time_s": round(time.time() - t0, 1)}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
