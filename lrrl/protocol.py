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

import collections
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
from lrrl.sweep import Sweep, code_fingerprint, make_spec, register_controller


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


class ProtocolRun:
    """One evaluation as the baseline methods see it (:class:`lrrl.method_base.ProtocolView`):
    the seeds, the finished runs of the sweep, the grids and the summary rows so far."""

    def __init__(self, names: list[str], seeds: list[int], grid: str, records: dict[str, dict]) -> None:
        self.names, self.seeds, self.records = names, list(seeds), records
        self.show_paper, self.show_fine = grid in ("paper", "both"), grid in ("fine", "both")
        self.state: dict[str, dict] = collections.defaultdict(dict)
        self.grids: dict[str, dict] = {}
        self._rows: list[tuple[int, dict]] = []
        self._best_decade: dict[str, float] = {}

    spec = staticmethod(make_spec)

    def by(self, family: str, params: Iterable | None = None, seeds: Sequence[int] | None = None) -> list[dict]:
        keys = [make_spec(family, s, p)["key"] for p in (params if params is not None else [None])
                for s in (self.seeds if seeds is None else seeds)]
        return [self.records[k] for k in keys if k in self.records]

    def best(self, grid: str, records: list[dict]) -> Any:
        best, _, self.grids[grid] = select_best(records)
        return best

    def best_decade(self, optimizer: str) -> float:
        if optimizer not in self._best_decade:
            self._best_decade[optimizer] = self.best(f"{M.label(optimizer)} (decade grid)",
                                                     self.by(optimizer, M.DECADE_GRID))
        return self._best_decade[optimizer]

    def row(self, rank: int, label: str, tuning: str, records: list[dict], param: Any = None,
            param_name: str = "") -> None:
        self._rows.append((rank, summarize(label, tuning, records, param, param_name)))

    def rows(self) -> list[dict]:
        """The summary rows by rank (stable: within a rank, in the order they were added)."""
        return [row for _, row in sorted(self._rows, key=lambda r: r[0])]


def shared_validation_size(controllers: Sequence[ControllerEntry], task) -> int:
    """Training examples every method holds out on ``task``: the validation split the controllers'
    ``val_loss`` features need, sized as their env sizes it on a task of this many examples
    (:func:`envs.learning_rate_env.default_validation_size`); 0 when none needs one."""
    from envs.learning_rate_env import default_validation_size

    needed = max([c.controller.validation_size for c in controllers] + [0])
    return default_validation_size(needed, len(task.x_train)) if needed else 0


def evaluate_methods(settings: EvaluationSettings, controllers: Sequence[ControllerEntry], out: Path,
                     progress: bool = True, backend=None) -> Results:
    """Run the tuning protocol (module docstring) for ``settings.baselines`` and ``controllers``;
    finished runs are written to (and resumed from) ``out/runs``. The caller validated
    ``settings`` and owns ``out`` (see :func:`agents.rundir.DirectoryLock`). ``backend``: where
    runs execute (:func:`lrrl.sweep.make_backend`; default a local pool of
    ``settings.jobs`` processes). Each baseline is a :class:`lrrl.method_base.BaselineMethod`
    of the registry :data:`lrrl.methods.BASELINE_METHODS`: its runs, its picks and its rows."""
    from tqdm.auto import tqdm

    from envs.tasks import make_task

    task = make_task(settings.task, data_root=settings.data_root)
    names, notes = list(settings.baselines), []
    for n in M.missing_packages(names):
        notes.append(f"{M.label(n)} skipped: package {M.BASELINE_METHODS[n].package!r} is not installed "
                     f"(pip install -e '.[lrfree]').")
        names.remove(n)
    validation_size = shared_validation_size(controllers, task)
    if validation_size:
        notes.append(f"A controller's features need a validation split: every method trains on the "
                     f"same training set with {validation_size} examples held out.")
    common = {"task": settings.task, "steps": settings.updates, "eval_every": settings.eval_every,
              "device": settings.device, "data_root": settings.data_root, "validation_size": validation_size,
              "trace": settings.task == "regression2d", "divergence_factor": settings.divergence_factor,
              "code": code_fingerprint()}
    methods = [M.BASELINE_METHODS[n] for n in M.BASELINE_METHODS if n in names]
    t_start = time.perf_counter()
    bar = tqdm(total=0, desc="evaluate", unit="run", dynamic_ncols=True, disable=not progress)
    with Sweep(common, out, settings.jobs, bar, batch=settings.batch, backend=backend) as sweep:
        view = ProtocolRun(names, settings.seeds, settings.grid, sweep.records)
        for method in methods:
            notes += method.notes(view)
        # phase 1: everything that needs no tuning result; phase 2: what its picks decide
        sweep.run([spec for m in methods for spec in m.first_phase(view)] + controller_specs(controllers, view.seeds))
        sweep.run([spec for m in methods for spec in m.second_phase(view)])
        resumed = sweep.resumed
    bar.close()
    wall = time.perf_counter() - t_start
    for method in methods:
        method.add_rows(view)
    rows = view.rows() + [summarize(entry.label, "controller", [view.records[s["key"]] for s in entry.specs])
                          for entry in controllers]
    return Results(settings=settings, rows=rows, grids=view.grids, records=view.records, common=common,
                   controllers=list(controllers), policy_evaluation=policy_evaluations(settings, controllers),
                   notes=notes, classification=task.classification, wall_time=wall, resumed=resumed)


def controller_specs(controllers: Sequence[ControllerEntry], seeds: Sequence[int]) -> list[dict]:
    """Each controller's runs on ``seeds`` (kept in ``entry.specs``), in its own env settings."""
    specs = []
    for entry in controllers:
        register_controller(entry.path, entry.controller)
        tag = "ctrl-" + hashlib.sha1(entry.path.encode()).hexdigest()[:8]
        env_kw = entry.controller.env_kwargs()
        opt = env_kw.pop("optimizer", "sgd")
        entry.specs = [make_spec(tag, s, None, optimizer=opt, policy={"kind": "controller", "path": entry.path},
                                 env=env_kw, label=entry.label) for s in seeds]
        specs += entry.specs
    return specs


def policy_evaluations(settings: EvaluationSettings, controllers: Sequence[ControllerEntry]) -> list[dict]:
    """The RL policy evaluation of each controller (``settings.episodes`` episodes; none at 0)."""
    rows = []
    for entry in controllers if settings.episodes > 0 else []:
        try:
            m, s, length = policy_evaluation(entry.controller, settings.task, settings.seeds[0], settings.episodes,
                                             settings.updates, settings.device, settings.data_root)
            rows.append({"method": entry.label, "episodes": settings.episodes, "episode_length": length,
                         "return_mean": m, "return_std": s})
        except Exception as exc:  # report, never lose the sweep's results
            rows.append({"method": entry.label, "episodes": settings.episodes,
                         "error": f"{type(exc).__name__}: {exc}"})
    return rows


def check_controllers(settings: EvaluationSettings, controllers: Sequence[ControllerEntry]) -> None:
    """Build each controller's env once, as its runs will (task, optimizer, features, action,
    validation split), reset it and take one step with the controller's action, before any run
    starts: a ``settings.json`` that passes the schema but cannot run (an unknown feature, action,
    reward or optimizer, optimizer arguments the optimizer refuses, an observation shape other
    than the checkpoint's) is one ``ValueError`` naming the controller, not a table of error rows."""
    from envs.learning_rate_env import LearningRateEnv
    from envs.tasks import make_task

    validation_size = shared_validation_size(controllers, make_task(settings.task, data_root=settings.data_root))
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
