"""Study: do trained learning-rate controllers beat tuned optimizers on held-out seeds?

    python benchmarks/study_recommended.py                       # small default sizes, minutes
    # the actor-critic-relative study (about 45 min on 2 busy cores):
    python benchmarks/study_recommended.py --configs paper,paper-no-separate,actor-critic-relative,actor-critic-relative-td3 \\
        --controller-seeds 5 --eval-seeds 5 --train-updates 20000 --jobs 2 --out results/study-digits
    python benchmarks/study_recommended.py --task regression2d --configs paper,actor-critic-relative,actor-critic-relative-td3 \\
        --controller-seeds 5 --eval-seeds 5 --train-updates 20000 --out results/study-regression2d
    # transfer of the digits controllers to a harder synthetic task (no retraining):
    python benchmarks/study_recommended.py --configs actor-critic-relative,actor-critic-relative-td3 --controller-seeds 5 \\
        --eval-seeds 5 --train-updates 20000 --eval-task classif20 --out results/study-digits

For each configuration in ``--configs`` (see :data:`CONFIGS`) a controller is trained with
:func:`lrrl.training.train` (the one training entry point) for every controller-training
seed ``0 .. K-1``, then each controller runs one deterministic episode of ``--updates`` primary
updates on every held-out primary seed ``1000 .. 1000+N-1`` (never used in training; checkpoint
selection uses seed 500). Baselines run on the same held-out seeds through the same env
(:func:`agents.baselines.run_episode`): constant SGD 0.5 (the issue's bar), a fine grid of
constant SGD rates, cosine-decayed SGD and constant Adam; the best rate of each family is
chosen on the held-out seeds themselves, which favours the baselines.

The score is the full-training-set loss after the last update (lower is better; a diverged run
counts as ``inf``). A controller "beats SGD 0.5" when its mean final loss over the held-out seeds
is below constant SGD 0.5's mean over the same seeds.

Training budgets are counted in PRIMARY updates (``--train-updates``) for every configuration, so
a configuration that holds each rate for ``k`` updates gets ``train_updates / k`` env steps: the
same amount of primary training, whatever the decision frequency.

Writes ``--out``/``study.json`` (every number), ``--out``/``runs/<config>-seed<k>/`` (the trained
controllers, loadable with ``agents.checkpoint.load_controller``) and prints the table. Finished
controllers are reused when the script is rerun with the same ``--out`` (delete the run
directory to retrain).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from lrrl.config import held_out_seeds  # noqa: E402


#: configuration name -> TrainSettings.from_preset arguments: a preset, and what differs from it
#: (``agent``, ``env`` keyword arguments, ``agent_overrides``, ``train`` fields)
CONFIGS: dict[str, dict[str, Any]] = {
    # the paper's configuration (lrrl/presets.py "paper"): same-batch reward, the actor's
    # output is the rate, loss-only state, episode length 200, separate-sample update on
    "paper": {"preset": "paper"},
    "paper-no-separate": {"preset": "paper", "agent_overrides": {"separate_sample": False}},
    # the paper's configuration with the log-uniform action the preset had before 0.3.0 (issue 17):
    # a tanh actor in [-1, 1] mapped onto lr_min * (lr_max / lr_min) ** ((a + 1) / 2)
    "paper-log-uniform": {"preset": "paper", "env": {"action": "absolute"},
                          "agent_overrides": {"actor_output": "tanh"}},
    # the digits-capped preset: policy search over a rate and a step-length cap
    "digits-capped": {"preset": "digits-capped"},
    "rec-td3": {"preset": "digits-capped", "agent": "td3"},
    "rec-actor-critic": {"preset": "digits-capped", "agent": "actor-critic"},
    # issue 12: the same search with each generation's 12 candidates in one vector env (one process)
    # instead of --workers processes; the same transitions
    "rec-vec12": {"preset": "digits-capped", "train": {"num_envs": 12}},
    # the actor-critic-relative study's configurations (lrrl/presets.py "actor-critic-relative", the previous recommended)
    "actor-critic-relative": {"preset": "actor-critic-relative"},
    "actor-critic-relative-td3": {"preset": "actor-critic-relative", "agent": "td3"},
    "actor-critic-relative-no-select": {"preset": "actor-critic-relative", "train": {"select_best": 0}},
    "actor-critic-relative-discounted": {"preset": "actor-critic-relative", "agent_overrides": {"gamma": 0.9}, "train": {"finite_horizon": False}},
    "actor-critic-relative-same-batch": {"preset": "actor-critic-relative", "env": {"reward": "same-batch"}},
}
DEFAULT_CONFIGS = ("paper", "paper-no-separate", "actor-critic-relative", "digits-capped")

#: baseline families per task: family -> (optimizer, policy kind, rates); the best rate per
#: family is reported. Grids are fine around each task's best decade rate (measured).
GRIDS: dict[str, dict[str, tuple[str, str, tuple[float, ...]]]] = {
    "digits": {"sgd": ("sgd", "constant", (0.3, 0.5, 0.6, 0.7, 0.8)),
               "cosine": ("sgd", "cosine", (0.5, 0.7, 1.0, 1.5)),
               "adam": ("adam", "constant", (0.003, 0.005, 0.01, 0.02))},
    "regression2d": {"sgd": ("sgd", "constant", (0.005, 0.01, 0.02, 0.03, 0.05)),
                     "cosine": ("sgd", "cosine", (0.02, 0.05, 0.1)),
                     "adam": ("adam", "constant", (0.01, 0.02, 0.03))},
    "classif20": {"sgd": ("sgd", "constant", (0.1, 0.3, 0.5, 0.7, 1.0)),
                  "cosine": ("sgd", "cosine", (0.5, 1.0, 1.5)),
                  "adam": ("adam", "constant", (0.001, 0.003, 0.01))},
}
BASELINES = GRIDS["digits"]
BAR = ("sgd", 0.5)  # the bar on digits: constant SGD at 0.5; elsewhere the best SGD rate


def classif20():
    """A harder synthetic task that needs no download: scikit-learn ``make_classification`` with
    20 classes (40 features, 30 informative, 2 clusters per class, 6,000 examples, 5,000 for
    training), standardised; an MLP 40-256-256-20 (ReLU), batch 50: twice the classes of digits
    and another architecture (SGD 0.5 reaches a train loss of 8e-3 in 1,000 steps on seed 1000,
    SGD 0.1 5e-1, Adam 1e-3 2.4e-1)."""
    import torch
    from sklearn.datasets import make_classification
    from torch import nn

    from envs.tasks import Task

    x, y = make_classification(n_samples=6000, n_features=40, n_informative=30, n_redundant=5,
                               n_classes=20, n_clusters_per_class=2, class_sep=1.5, random_state=0)
    x = (x - x[:5000].mean(0)) / x[:5000].std(0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    model = lambda: nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),  # noqa: E731
                                  nn.Linear(256, 20))
    return Task.from_tensors(x[:5000], y[:5000], x[5000:], y[5000:], model, batch_size=50, name="classif20")


#: tasks built here (evaluation only: controllers train on envs.tasks.TASKS), as the
#: user-task names ``module:function`` the sweep's env takes
EXTRA_TASKS = {"classif20": "benchmarks.study_recommended:classif20"}


# --------------------------------------------------------------------------- runs (the one sweep)
def _run_summary(record: dict) -> dict:
    """What the study keeps of a sweep record: final losses (``inf`` when diverged) and the rates."""
    from lrrl.stats import final_train

    lr = (record.get("curves") or {}).get("lr") or []
    return {"train_loss": final_train(record), "test_loss": (record.get("final") or {}).get("test_loss"),
            "diverged": record["status"] != "ok", "mean_lr": float(np.mean(lr)) if lr else None,
            "lr_quartiles": [float(np.quantile(lr, q)) for q in (0.0, 0.25, 0.5, 0.75, 1.0)] if lr else None}


def baseline_spec(job: dict) -> dict:
    """job = {family, optimizer, kind, lr, seed} -> a run spec of the baseline."""
    from lrrl.sweep import make_spec

    policy = {"kind": "constant", "lr": job["lr"]} if job["kind"] == "constant" else \
        {"kind": "cosine", "peak": job["lr"]}
    return make_spec(job["family"], job["seed"], job["lr"], optimizer=job["optimizer"], policy=policy)


def controller_specs(trained: list[dict], seeds: list[int]) -> list[tuple[dict, dict]]:
    """(job, spec) for every trained controller on every held-out seed, in the env it was trained in."""
    from agents.checkpoint import load_controller
    from lrrl.sweep import make_spec, register_controller

    out = []
    for t in trained:
        path = str(Path(t["out"]).resolve())
        ctrl = load_controller(path)
        register_controller(path, ctrl)
        env_kw = ctrl.env_kwargs()
        optimizer = env_kw.pop("optimizer", "sgd")
        for s in seeds:
            job = {"config": t["config"], "controller_seed": t["seed"], "run": t["out"], "seed": s}
            out.append((job, make_spec(f"{t['config']}-seed{t['seed']}", s, None, optimizer=optimizer,
                                       policy={"kind": "controller", "path": path}, env=env_kw)))
    return out


def train_settings(job: dict):
    """The TrainSettings of one study job (its configuration, task, seed and budget)."""
    from lrrl.config import TrainSettings

    config = CONFIGS[job["config"]]
    return TrainSettings.from_preset(config["preset"], agent=config.get("agent"), env=config.get("env"),
                                     agent_overrides=config.get("agent_overrides"),
                                     **{**config.get("train", {}), "task": job["task"], "seed": job["seed"],
                                        "steps": job["env_steps"], "checkpoint_every": 0})


def train_controller(job: dict) -> dict:
    """Train one controller (:func:`lrrl.training.train`; skipped if its run directory is complete)."""
    import torch

    from lrrl import training

    torch.set_num_threads(job.get("threads", 1))
    out = Path(job["out"])
    if (out / "summary.json").is_file():
        return {**json.loads((out / "summary.json").read_text()), **job, "reused": True}
    start = time.time()
    summary = training.train(train_settings(job), out, overwrite=True, progress=False)  # (an unfinished run)
    return {**summary, **job, "reused": False, "wall_s": round(time.time() - start, 1)}


def env_steps_for(config: dict, train_updates: int) -> int:
    """--train-updates (primary updates) -> env steps for this configuration."""
    from lrrl.presets import get_preset

    k = {**get_preset(config["preset"])["env"], **config.get("env", {})}.get("updates_per_step", 1)
    return max(1, math.ceil(train_updates / k))


# --------------------------------------------------------------------------- orchestration
def _map(fn, jobs: list[dict], backend, desc: str) -> list[dict]:
    """``fn`` over ``jobs`` as tasks of the sweep's backend (a local pool or Ray), in order; one
    progress bar fed by finished tasks; the first task that raised is raised here."""
    from tqdm import tqdm

    results: list[Any] = [None] * len(jobs)
    with tqdm(total=len(jobs), desc=desc, leave=False) as bar:
        for i, result, exc in backend.imap_unordered(fn, [(j,) for j in jobs]):
            if exc is not None:
                raise exc
            results[i] = result
            bar.update(1)
    return results


def _stats(values: Sequence[float]) -> tuple[float, float]:
    """Mean ± std (:func:`lrrl.stats.mean_std`, ddof=0 as in every report); ``inf`` when a
    run diverged (as the grid selection counts it)."""
    from lrrl.stats import mean_std

    v = list(values)
    if not all(math.isfinite(x) for x in v):
        return math.inf, math.nan
    m, s, _ = mean_std(v)
    return m, s


def summarise(results: dict) -> dict:
    """Per-configuration and per-baseline aggregates (see the module docstring)."""
    seeds = results["eval_seeds"]
    base = {}
    for run in results["baseline_runs"]:
        base.setdefault((run["family"], run["lr"]), {})[run["seed"]] = run["train_loss"]
    eval_task = results.get("eval_task", results["task"])
    grid = GRIDS.get(eval_task, GRIDS["digits"])
    bar = BAR
    if eval_task != "digits" or bar not in base:  # elsewhere: the best constant SGD rate
        bar = ("sgd", min((lr for f, lr in base if f == "sgd"),
                          key=lambda lr: _stats([base[("sgd", lr)][s] for s in seeds])[0]))
    bar_by_seed = base[bar]
    bar_mean = _stats([bar_by_seed[s] for s in seeds])[0]
    rows = []
    for family in grid:
        cands = {lr: _stats([per[s] for s in seeds]) for (f, lr), per in base.items() if f == family}
        best_lr = min(cands, key=lambda lr: cands[lr][0])
        rows.append({"name": f"{family} best (lr {best_lr:g})", "family": family, "lr": best_lr,
                     "mean": cands[best_lr][0], "std_heldout": cands[best_lr][1],
                     "grid": {str(lr): cands[lr][0] for lr in sorted(cands)}})
    rows.insert(0, {"name": f"{bar[0]} {bar[1]:g} (the bar)", "family": bar[0], "lr": bar[1],
                    "mean": bar_mean, "std_heldout": _stats([bar_by_seed[s] for s in seeds])[1]})
    configs = []
    for name in results["configs"]:
        runs = [r for r in results["controller_runs"] if r["config"] == name]
        per_ctrl = {}
        for r in runs:
            per_ctrl.setdefault(r["controller_seed"], []).append(r["train_loss"])
        means = [_stats(v)[0] for _, v in sorted(per_ctrl.items())]
        finite = [m for m in means if math.isfinite(m)]
        configs.append({
            "name": name,
            "mean_over_controllers": _stats(means)[0],
            "std_across_controllers": _stats(finite)[1] if len(finite) == len(means) else math.nan,
            "median_over_controllers": float(np.median(means)) if means else math.nan,
            "std_across_heldout": float(np.mean([_stats(v)[1] for v in per_ctrl.values()])) if per_ctrl else math.nan,
            "per_controller_mean": means,
            "beats_bar": int(sum(m < bar_mean for m in means)), "n_controllers": len(means),
            "diverged_runs": int(sum(r["diverged"] for r in runs)),
            "median_lr": float(np.median([r["lr_quartiles"][2] for r in runs if r["lr_quartiles"]])) if runs else None,
        })
    return {"baselines": rows, "configs": configs, "bar": list(bar), "bar_mean": bar_mean}


def format_table(summary: dict, results: dict) -> str:
    fmt = lambda v: "inf" if v == math.inf else ("n/a" if v is None or v != v else f"{v:.4g}")  # noqa: E731
    lines = [f"trained on {results['task']}, evaluated on {results.get('eval_task', results['task'])}: "
             f"{results['updates']} updates, "
             f"held-out seeds {results['eval_seeds']}, "
             f"controller seeds {results['controller_seeds']}, {results['train_updates']} training updates",
             "", "| method | final train loss, mean | std (held-out seeds) | std (controller seeds) | "
             "median over controllers | beats the bar | diverged runs | median lr |",
             "|---|---|---|---|---|---|---|---|"]
    for row in summary["baselines"]:
        lines.append(f"| {row['name']} | {fmt(row['mean'])} | {fmt(row['std_heldout'])} | - | - | - | - | "
                     f"{row['lr']:g} |")
    for c in summary["configs"]:
        lines.append(f"| {c['name']} | {fmt(c['mean_over_controllers'])} | {fmt(c['std_across_heldout'])} | "
                     f"{fmt(c['std_across_controllers'])} | {fmt(c['median_over_controllers'])} | "
                     f"{c['beats_bar']}/{c['n_controllers']} | {c['diverged_runs']} | {fmt(c['median_lr'])} |")
    lines.append("")
    for c in summary["configs"]:
        lines.append(f"{c['name']}: per-controller mean final loss " +
                     ", ".join(fmt(m) for m in c["per_controller_mean"]))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="study_recommended.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                   help=f"comma-separated configurations, from: {', '.join(CONFIGS)}")
    p.add_argument("--controller-seeds", type=int, default=2, help="controllers per configuration (seeds 0..K-1)")
    p.add_argument("--eval-seeds", type=int, default=3, help="held-out primary seeds (1000..1000+N-1)")
    p.add_argument("--updates", type=int, default=1000, help="primary updates per evaluation episode")
    p.add_argument("--train-updates", type=int, default=10000,
                   help="primary updates per controller training run (env steps = this / updates_per_step)")
    p.add_argument("--task", default="digits", help="task the controllers are trained on (envs.tasks)")
    p.add_argument("--eval-task", default=None,
                   help=f"task they are evaluated on (default: --task; also {', '.join(EXTRA_TASKS)}); "
                        f"another task than --task measures transfer, written to study-<eval-task>.json")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (--backend local)")
    p.add_argument("--out", default="results/study", help="output directory")
    p.add_argument("--no-baselines", action="store_true", help="skip the baselines (and the 'beats' column)")
    p.add_argument("--render", action="store_true",
                   help="only print the table of the study JSON already in --out (for --task/--eval-task)")
    from lrrl.sweep import add_backend_arguments

    add_backend_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"--configs: unknown configuration {unknown[0]!r}; choose from {', '.join(CONFIGS)}")
    for flag in ("controller_seeds", "eval_seeds", "updates", "train_updates", "jobs"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    from envs.tasks import TASKS

    if args.task not in TASKS:
        parser.error(f"--task: unknown task {args.task!r}; choose from {', '.join(TASKS)}")
    eval_task = args.eval_task or args.task
    if eval_task not in TASKS and eval_task not in EXTRA_TASKS:
        parser.error(f"--eval-task: unknown task {eval_task!r}; choose from "
                     f"{', '.join([*TASKS, *EXTRA_TASKS])}")
    out = Path(args.out)
    if args.render:
        path = out / ("study.json" if eval_task == args.task else f"study-{eval_task}.json")
        if not path.is_file():
            parser.error(f"--render: no {path}")
        results = json.loads(path.read_text())
        print(format_table(summarise(results), results))
        return 0
    from lrrl.sweep import backend_from_args

    try:
        backend = backend_from_args(args)  # Ray connects here: before anything is written
    except ValueError as exc:
        parser.error(str(exc))
    with backend:
        return _study(args, configs, eval_task, out, backend, argv)


def _study(args: argparse.Namespace, configs: list[str], eval_task: str, out: Path, backend,
           argv: Sequence[str] | None) -> int:
    from lrrl.training import default_threads

    out.mkdir(parents=True, exist_ok=True)
    seeds = held_out_seeds(args.eval_seeds)
    ctrl_seeds = list(range(args.controller_seeds))
    start = time.time()

    baseline_jobs = [] if args.no_baselines else [
        {"family": fam, "optimizer": opt, "kind": kind, "lr": lr, "seed": s}
        for fam, (opt, kind, lrs) in GRIDS.get(eval_task, GRIDS["digits"]).items() for lr in lrs for s in seeds]
    train_jobs = [{"config": name, "task": args.task, "seed": k, "env_steps": env_steps_for(CONFIGS[name], args.train_updates),
                   "out": str(out / "runs" / f"{name}-seed{k}"),
                   # a vector env's batched step gets the CPUs its backend gives one task (all of
                   # them with --jobs 1); everything else one thread
                   "threads": default_threads(None, CONFIGS[name].get("train", {}).get("num_envs", 1),
                                              backend.cpus_per_task or (os.cpu_count() or 1))}
                  for name in configs for k in ctrl_seeds]
    trained = _map(train_controller, train_jobs, backend, "training controllers")
    from lrrl.sweep import Sweep, code_fingerprint

    common = {"task": EXTRA_TASKS.get(eval_task, eval_task), "steps": args.updates, "eval_every": args.updates,
              "device": "cpu", "data_root": None, "validation_size": 0, "trace": False,
              "divergence_factor": 100.0, "code": code_fingerprint()}
    ctrl = controller_specs(trained, seeds)
    with Sweep(common, out / "evaluation", backend=backend) as sweep:  # run files in OUT/evaluation/runs
        records = sweep.run([spec for _, spec in ctrl] + [baseline_spec(j) for j in baseline_jobs])
    by_key = {r["key"]: r for r in records}
    evaluated = [{**job, "task": eval_task, "updates": args.updates, **_run_summary(by_key[spec["key"]])}
                 for job, spec in ctrl]
    baselines = [{**job, **_run_summary(by_key[baseline_spec(job)["key"]])} for job in baseline_jobs]

    results = {"task": args.task, "eval_task": eval_task, "updates": args.updates, "train_updates": args.train_updates,
               "eval_seeds": seeds, "controller_seeds": ctrl_seeds, "configs": configs,
               "config_settings": {c: CONFIGS[c] for c in configs},
               "command": "python benchmarks/study_recommended.py "
                          + " ".join(argv if argv is not None else sys.argv[1:]),
               "training": trained, "controller_runs": evaluated, "baseline_runs": baselines}
    if baselines:
        summary = summarise(results)
        results["summary"] = summary
        table = format_table(summary, results)
    else:
        table = "\n".join(f"{r['config']} seed {r['controller_seed']} on {r['seed']}: {r['train_loss']:.3g}"
                          for r in evaluated)
    results["wall_time_s"] = round(time.time() - start, 1)
    name = "study.json" if eval_task == args.task else f"study-{eval_task}.json"
    (out / name).write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / name.replace(".json", ".md")).write_text(table + "\n")
    print(table)
    print(f"\nwrote {out / name} ({results['wall_time_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
