"""The tuning protocol: every method on the same held-out seeds, grids tuned, controllers run.

:func:`evaluate_methods` is what ``evaluate.py`` runs. Every method goes through
:class:`envs.LearningRateEnv` (so through the one primary-training step) on the same seeds:
the same initial weights ``w0`` and the same batch order per seed. Seeds are held out
(:data:`lrrl.config.HELD_OUT_SEED_START` on), never the seeds controllers are trained on.
The protocol runs in two phases of one :class:`~lrrl.sweep.Sweep`:

1. everything that needs no tuning result: the decade grids of the constant-rate optimizers, vSGD,
   SGD-HD's grid, the learning-rate-free optimizers, clipped SGD's decade grid, the fits of the
   gradient-norm rule and of the Daniel-style controller on their training seeds, and the
   controllers;
2. what the first phase's picks decide: the fine grids around the best decade rate, cosine peaks
   around it, clipped SGD's fine grid around its best pair, and the two fitted rules on the
   held-out seeds.

The best parameter of a grid is the one with the lowest mean final training loss over the seeds
(:func:`select_best`; a diverged seed makes a parameter's mean infinite). As in the paper, grids
are tuned on the evaluation seeds, which favours the baselines.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from lrrl import methods as M
from lrrl.config import EvaluationSettings
from lrrl.stats import final_train, summarize
from lrrl.sweep import Sweep, fmt_param, code_fingerprint, make_spec, register_controller


@dataclass
class ControllerEntry:
    """A trained controller in an evaluation: its label in the tables and its run specs."""

    path: str
    controller: Any
    label: str
    specs: list[dict] = field(default_factory=list)


@dataclass
class Results:
    """Everything an evaluation measured (what the report and the figures are made from)."""

    settings: EvaluationSettings
    rows: list[dict]
    """Summary rows (:func:`lrrl.stats.summarize`), in table order."""
    grids: dict[str, dict[Any, float]]
    """Grid name -> parameter -> mean final training loss (``inf``: a seed diverged)."""
    records: dict[str, dict]
    """Run key -> run record (spec, settings, status, final losses, curves)."""
    common: dict
    """The settings every run shares (part of each run's identity in ``runs/``)."""
    controllers: list[ControllerEntry]
    policy_evaluation: list[dict]
    notes: list[str]
    classification: bool
    wall_time: float
    resumed: int


def select_best(records: Sequence[dict]) -> tuple[Any, float, dict[Any, float]]:
    """Group records by ``spec.param``; return ``(best param, its mean final train loss, all means)``.
    A diverged seed makes its parameter's mean ``inf``; ties keep the first parameter."""
    groups: dict[Any, list[float]] = {}
    for r in records:
        p = r["spec"]["param"]
        groups.setdefault(tuple(p) if isinstance(p, list) else p, []).append(final_train(r))
    means = {p: (float(np.mean(v)) if all(math.isfinite(x) for x in v) else math.inf)
             for p, v in groups.items()}
    best = min(means, key=lambda p: means[p])
    return best, means[best], means


def controller_entry(path: str, controller: Any, task: str) -> ControllerEntry:
    """Label a loaded controller (its name; ``(trained on T)`` when T is not ``task``)."""
    trained_on = controller.trained_task
    label = getattr(controller, "name", None) or Path(path).stem
    if trained_on and trained_on != task:
        label += f" (trained on {trained_on})"
    return ControllerEntry(path=path, controller=controller, label=label)


def evaluate_methods(settings: EvaluationSettings, controllers: Sequence[ControllerEntry], out: Path,
                     progress: bool = True, backend=None) -> Results:
    """Run the tuning protocol (module docstring) for ``settings.baselines`` and ``controllers``;
    finished runs are written to (and resumed from) ``out/runs``. The caller validated
    ``settings`` and owns ``out`` (see :func:`agents.rundir.DirectoryLock`). ``backend``: where
    runs execute (:func:`lrrl.sweep.make_backend`; default a local pool of
    ``settings.jobs`` processes)."""
    from tqdm.auto import tqdm

    from agents.baselines import FEATURE_CONTROLLER_GRID, GRAD_NORM_RULE_GRID
    from envs.tasks import make_task

    seeds, names = settings.seeds, list(settings.baselines)
    task = make_task(settings.task, data_root=settings.data_root)
    notes: list[str] = []
    missing = M.missing_packages(names)
    for n in missing:
        notes.append(f"{M.LABELS[n]} skipped: package {M.LRFREE_PACKAGES[n]!r} is not installed "
                     f"(pip install -e '.[lrfree]').")
    names = [n for n in names if n not in missing]
    validation_size = max([c.controller.validation_size for c in controllers] + [0])
    if validation_size:
        notes.append(f"A controller's features need a validation split: every method trains on the "
                     f"same training set with {validation_size} examples held out.")
    overlap = sorted(set(seeds) & set(M.FEATURE_FIT_SEEDS)) if "feature" in names else []
    if overlap:
        notes.append(f"Warning: evaluation seeds {overlap} are also the Daniel-style controller's "
                     f"fitting seeds.")
    common = {"task": settings.task, "steps": settings.updates, "eval_every": settings.eval_every,
              "device": settings.device, "data_root": settings.data_root, "validation_size": validation_size,
              "trace": settings.task == "regression2d", "divergence_factor": settings.divergence_factor,
              "code": code_fingerprint()}
    show_paper, show_fine = settings.grid in ("paper", "both"), settings.grid in ("fine", "both")

    t_start = time.perf_counter()
    bar = tqdm(total=0, desc="evaluate", unit="run", dynamic_ncols=True, disable=not progress)
    grids: dict[str, dict] = {}
    with Sweep(common, out, settings.jobs, bar, batch=settings.batch, backend=backend) as sweep:
        R = sweep.records

        def by(family: str, params: Iterable | None = None, seed_list: Sequence[int] = seeds) -> list[dict]:
            keys = [make_spec(family, s, p)["key"] for p in (params if params is not None else [None])
                    for s in seed_list]
            return [R[k] for k in keys if k in R]

        # ---- phase 1: everything that needs no tuning result
        decade_opts = [o for o in M.GRID_OPTIMIZERS if o in names]
        if "cosine" in names and "sgd" not in decade_opts:
            decade_opts.append("sgd")  # cosine peaks are centred on the best decade SGD rate
        phase1 = [make_spec(o, s, lr, optimizer=o) for o in decade_opts for lr in M.DECADE_GRID for s in seeds]
        if "vsgd" in names:
            phase1 += [make_spec("vsgd", s, policy={"kind": "vsgd"}) for s in seeds]
        if "hd" in names:
            phase1 += [make_spec("hd", s, [lr0, b], policy={"kind": "hd", "beta": b, "lr0": lr0})
                       for lr0 in M.HD_LR0S for b in M.HD_BETAS for s in seeds]
        for n in names:
            if n in M.LRFREE:
                phase1 += [make_spec(n, s, M.LRFREE[n], optimizer=n) for s in seeds]

        def clip_specs(pairs):
            return [make_spec("clipped", s, [lr, c], policy={"kind": "clipped", "lr": lr, "max_norm": c},
                              env=M.CAPPED_BASELINE_ENV) for lr, c in pairs for s in seeds]

        clip_decade = [(lr, c) for lr in M.CLIP_RATES for c in M.CLIP_NORMS]
        if "clipped" in names:
            phase1 += clip_specs(clip_decade)
        if "gradnorm" in names:
            phase1 += [make_spec("gradnorm-fit", s, list(c), policy={"kind": "gradnorm", "constants": list(c)},
                                 env=M.CAPPED_BASELINE_ENV)
                       for c in GRAD_NORM_RULE_GRID for s in M.GRAD_NORM_RULE_FIT_SEEDS]
        if "feature" in names:
            phase1 += [make_spec("feature-fit", s, list(th), policy={"kind": "feature", "theta": list(th),
                                                                    "lr0": M.FEATURE_LR0})
                       for th in FEATURE_CONTROLLER_GRID for s in M.FEATURE_FIT_SEEDS]
        for entry in controllers:
            register_controller(entry.path, entry.controller)
            tag = "ctrl-" + hashlib.sha1(entry.path.encode()).hexdigest()[:8]
            env_kw = entry.controller.env_kwargs()
            opt = env_kw.pop("optimizer", "sgd")
            entry.specs = [make_spec(tag, s, None, optimizer=opt, policy={"kind": "controller", "path": entry.path},
                                     env=env_kw, label=entry.label) for s in seeds]
            phase1 += entry.specs
        sweep.run(phase1)

        # ---- phase 2: fine grids, cosine peaks, the fitted rules
        best_decade = {}
        for o in decade_opts:
            best_decade[o], _, grids[f"{M.LABELS[o]} (decade grid)"] = select_best(by(o, M.DECADE_GRID))
        fine_lrs = {o: sorted({float(fmt_param(best_decade[o] * m)) for m in M.FINE_MULTIPLIERS} | set(M.DECADE_GRID))
                    for o in M.FINE_OPTIMIZERS if o in names and show_fine}
        phase2 = [make_spec(o, s, lr, optimizer=o) for o, lrs in fine_lrs.items() for lr in lrs for s in seeds]
        cos_peaks = []
        if "cosine" in names:
            cos_peaks = sorted({float(fmt_param(best_decade["sgd"] * m)) for m in M.COSINE_MULTIPLIERS})
            phase2 += [make_spec("cosine", s, p, policy={"kind": "cosine", "peak": p}) for p in cos_peaks for s in seeds]
        clip_fine: list[tuple[float, float]] = []
        if "clipped" in names:
            (lr0, c0), _, grids["SGD, clipped (decade grid: lr, max_norm)"] = select_best(
                by("clipped", map(list, clip_decade)))
            clip_fine = sorted({(float(fmt_param(lr0 * m)), float(fmt_param(c0 * n))) for m in (1.0,) + M.FINE_MULTIPLIERS
                                for n in M.CLIP_NORM_MULTIPLIERS} | set(clip_decade))
            phase2 += clip_specs([p for p in clip_fine if p not in clip_decade])
        rule = None
        if "gradnorm" in names:
            fit = [r for c in GRAD_NORM_RULE_GRID for r in by("gradnorm-fit", [list(c)], M.GRAD_NORM_RULE_FIT_SEEDS)]
            rule, _, grids["Gradient-norm rule (fit on training seeds)"] = select_best(fit)
            phase2 += [make_spec("gradnorm", s, list(rule), policy={"kind": "gradnorm", "constants": list(rule)},
                                 env=M.CAPPED_BASELINE_ENV) for s in seeds]
        theta = None
        if "feature" in names:
            fit = [r for th in FEATURE_CONTROLLER_GRID for r in by("feature-fit", [list(th)], M.FEATURE_FIT_SEEDS)]
            theta, _, grids["Daniel-style (fit on training seed 0)"] = select_best(fit)
            phase2 += [make_spec("feature", s, list(theta), policy={"kind": "feature", "theta": list(theta),
                                                                     "lr0": M.FEATURE_LR0}) for s in seeds]
        sweep.run(phase2)
        resumed = sweep.resumed
    bar.close()
    wall = time.perf_counter() - t_start

    # ---- rows of the summary table
    rows: list[dict] = []
    for o in M.GRID_OPTIMIZERS:
        if o in names and show_paper:
            rows.append(summarize(M.LABELS[o], "decade grid (paper)", by(o, [best_decade[o]]), best_decade[o], "lr"))
    if "vsgd" in names:
        rows.append(summarize("vSGD", "no tuning (paper)", by("vsgd")))
    if "feature" in names:
        rows.append(summarize("Daniel-style", "fit on train seeds (paper)", by("feature", [list(theta)]),
                              tuple(theta), "theta"))
    for o, lrs in fine_lrs.items():
        best, _, grids[f"{M.LABELS[o]} (fine grid)"] = select_best(by(o, lrs))
        rows.append(summarize(M.LABELS[o], "fine grid", by(o, [best]), best, "lr"))
    if clip_fine:
        grid = clip_fine if show_fine else clip_decade
        best, _, grids["SGD, clipped (lr, max_norm)"] = select_best(by("clipped", map(list, grid)))
        rows.append(summarize(M.LABELS["clipped"], "fine grid" if show_fine else "decade grid",
                              by("clipped", [list(best)]), best, "lr, max_norm"))
    if rule is not None:
        rows.append(summarize(M.LABELS["gradnorm"], "fit on train seeds", by("gradnorm", [list(rule)]),
                              tuple(rule), "lr0, lr1, cap"))
    if cos_peaks:
        best, _, grids["SGD cosine (peak)"] = select_best(by("cosine", cos_peaks))
        rows.append(summarize("SGD cosine", "tuned peak", by("cosine", [best]), best, "peak"))
    if "hd" in names:
        hd_grid = [[lr0, b] for lr0 in M.HD_LR0S for b in M.HD_BETAS]
        best, _, grids["SGD-HD (lr0, beta)"] = select_best(by("hd", hd_grid))
        rows.append(summarize("SGD-HD", "tuned lr0 and beta", by("hd", [list(best)]), best, "lr0, beta"))
    for n in names:
        if n in M.LRFREE:
            rows.append(summarize(M.LABELS[n], "lr-free", by(n, [M.LRFREE[n]]), M.LRFREE[n], "lr"))
    for entry in controllers:
        rows.append(summarize(entry.label, "controller", [R[s["key"]] for s in entry.specs]))

    # ---- RL policy evaluation of the controllers
    rl_rows = []
    if settings.episodes > 0:
        for entry in controllers:
            try:
                m, s, length = policy_evaluation(entry.controller, settings.task, seeds[0], settings.episodes,
                                                 settings.updates, settings.device, settings.data_root)
                rl_rows.append({"method": entry.label, "episodes": settings.episodes, "episode_length": length,
                                "return_mean": m, "return_std": s})
            except Exception as exc:  # report, never lose the sweep's results
                rl_rows.append({"method": entry.label, "episodes": settings.episodes,
                                "error": f"{type(exc).__name__}: {exc}"})
    return Results(settings=settings, rows=rows, grids=grids, records=R, common=common,
                   controllers=list(controllers), policy_evaluation=rl_rows, notes=notes,
                   classification=task.classification, wall_time=wall, resumed=resumed)


def check_controllers(settings: EvaluationSettings, controllers: Sequence[ControllerEntry]) -> None:
    """Build each controller's env once, as its runs will (task, optimizer, features, action,
    validation split), reset it and take one step with the controller's action, before any run
    starts: a ``settings.json`` that passes the schema but cannot run (an unknown feature, action,
    reward or optimizer, optimizer arguments the optimizer refuses, an observation shape other
    than the checkpoint's) is one ``ValueError`` naming the controller, not a table of error rows."""
    from envs.learning_rate_env import LearningRateEnv

    validation_size = max([c.controller.validation_size for c in controllers] + [0])
    for entry in controllers:
        env = None
        try:
            env_kw = entry.controller.env_kwargs()
            optimizer = env_kw.pop("optimizer", "sgd")
            env = LearningRateEnv(task=settings.task, optimizer=optimizer, episode_length=settings.updates,
                                  eval_every=0, validation_size=validation_size, device=settings.device,
                                  divergence_factor=settings.divergence_factor, data_root=settings.data_root,
                                  seed=settings.seeds[0], **env_kw)
            model = entry.controller.model
            for what, ours, theirs in (("observation", env.observation_space, model.observation_space),
                                       ("action", env.action_space, model.action_space)):
                if ours.shape != theirs.shape:
                    raise ValueError(f"its env gives {what}s of shape {ours.shape}, the checkpoint's "
                                     f"controller expects {theirs.shape}")
            obs, _ = env.reset(seed=settings.seeds[0])
            action, _ = entry.controller.predict(obs, deterministic=True)
            env.step(action)
            if settings.episodes > 0:  # the policy evaluation runs its training env, reward included
                env.close()
                kw = entry.controller.env_kwargs(include_reward=True)
                kw.setdefault("episode_length", settings.updates)
                env = LearningRateEnv(task=settings.task, seed=settings.seeds[0], device=settings.device,
                                      data_root=settings.data_root, **kw)
        except Exception as exc:  # whatever it is, the controller's runs would all fail with it
            raise ValueError(f"controller {entry.path}: its settings cannot run on --task {settings.task}: "
                             f"{type(exc).__name__}: {exc}") from None
        finally:
            if env is not None:
                env.close()


def load_controllers(paths: Sequence[str], task: str, device: str = "cpu") -> list[ControllerEntry]:
    """Load trained controllers (run directories or checkpoint files); ``ValueError`` with a clear
    message for a missing or unreadable one, before any work starts."""
    import os

    from agents.checkpoint import load_controller
    from agents.pretrained import resolve

    entries = []
    for path in paths:
        path = str(path)
        location = str(resolve(path))  # "pretrained:NAME": a controller shipped with the package
        if not os.path.exists(location):
            raise ValueError(f"checkpoint {path!r} does not exist")
        try:
            ctrl = load_controller(path, device=device)
        except ImportError as exc:
            raise ValueError(f"cannot load checkpoint {path!r}: {exc}") from None
        except (ValueError, OSError, KeyError, RuntimeError) as exc:  # CheckpointError is a ValueError
            raise ValueError(f"cannot read checkpoint {path!r}: {exc}") from None
        entries.append(controller_entry(os.path.abspath(location), ctrl, task))
    return entries


def run_evaluation(settings: EvaluationSettings, controllers: Sequence[ControllerEntry], out: str | Path,
                   command: str, progress: bool = True, backend=None) -> tuple[Results, str]:
    """evaluate.py's whole job as a library call: lock ``out`` (one sweep per directory), run
    :func:`evaluate_methods` (on ``backend``, default the local pool), draw the figures and write
    the report into ``out``. Returns the results and the Markdown report. ``command`` is recorded
    as what produced them."""
    from agents.rundir import DirectoryLock, check_entries, prepare_directory, remove_temp_files
    from lrrl.plots import write_figures
    from lrrl.report import write_report

    out = prepare_directory(out)
    with DirectoryLock(out, purpose="evaluate sweep"):
        check_entries(out, dirs=("runs",))  # a planted runs -> /elsewhere is refused, never followed
        remove_temp_files(out, recursive_into=("runs",))  # left by a sweep killed mid-write
        results = evaluate_methods(settings, controllers, out, progress=progress, backend=backend)
        figures = write_figures(results.rows, results.records, results.common, settings.seeds, out, settings.task)
        return results, write_report(results, figures, out, command)


def policy_evaluation(ctrl, task: str, seed: int, episodes: int, updates: int, device: str,
                      data_root: str | None) -> tuple[float, float, int]:
    """Mean and std of the episode return of ``ctrl`` over ``episodes`` episodes, in an env with
    the controller's own training settings (reward included) on ``task``, via SB3's
    ``evaluate_policy``. Returns ``(mean, std, episode_length)``."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from envs.learning_rate_env import LearningRateEnv

    kw = ctrl.env_kwargs(include_reward=True)
    kw.setdefault("episode_length", updates)
    env = Monitor(LearningRateEnv(task=task, seed=seed, device=device, data_root=data_root, **kw))
    try:
        mean, std = evaluate_policy(ctrl, env, n_eval_episodes=episodes, deterministic=True, warn=False)
    finally:
        env.close()
    return float(mean), float(std), int(kw["episode_length"])
