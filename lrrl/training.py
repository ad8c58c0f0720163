"""Train a controller: ``train(settings, out) -> summary`` (and :func:`resume`), the one training
entry point; ``train_controller.py`` is a command line over it.

A run directory ``out`` holds ``controller.pt`` (actor-critic, policy search) or
``controller.zip`` (SB3), ``settings.json`` (written first, so a killed run can be resumed),
``tb/`` (TensorBoard, SB3 layout) and ``summary.json``. The directory is locked while a run
writes into it (:class:`agents.rundir.DirectoryLock`); a fresh run never replaces another one
unless ``overwrite`` is given; checkpoints are atomic, so a crash leaves the last good one.
"""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Any

from lrrl.config import SettingsError, TrainSettings

#: what a diverged or collapsed selection episode costs when a suite-trained controller is
#: selected (``--task suite-train`` with collapse termination): more than any mean return
SELECTION_FAILURE_COST = 1000.0


class TrainingInterrupted(Exception):
    """A KeyboardInterrupt during training: the checkpoint was saved; ``resume`` continues it."""

    def __init__(self, out: Path, steps: int) -> None:
        super().__init__(f"interrupted at step {steps}; checkpoint saved in {out}")
        self.out, self.steps = out, steps


def make_training_env(settings: TrainSettings):
    """The env of a run: one LearningRateEnv per task (round-robin episodes if several), or N
    primary runs in one batched env as an SB3 VecEnv (``num_envs > 1``), with the training-only
    wrappers. The full train/test loss is evaluated at each episode's end
    (``eval_every=episode_length``) so the summary can report the final primary loss."""
    from envs.learning_rate_env import LearningRateEnv
    from envs.suite import TRAINING_TASK, training_env

    env_kwargs = dict(settings.env_kwargs)
    tasks = settings.tasks
    common = {"device": settings.device, "data_root": settings.data_root, "eval_every": env_kwargs["episode_length"]}
    if settings.num_envs > 1:
        if len(tasks) > 1:
            raise ValueError("--num-envs > 1 trains on one task; several tasks are not supported yet")
        from agents.vec_env import make_sb3_vec_env

        return make_sb3_vec_env(tasks[0], num_envs=settings.num_envs, seed=settings.seed,
                                collapse={} if settings.collapse_termination else None,
                                finite_horizon=settings.finite_horizon, **common, **env_kwargs)
    if tasks == [TRAINING_TASK]:  # (TrainSettings.validate refuses it beside other tasks or --num-envs)
        envs = [training_env(seed=settings.seed, device=settings.device, **env_kwargs)]
    else:
        envs = [LearningRateEnv(task=t, seed=settings.seed, **common, **env_kwargs) for t in tasks]
    if settings.collapse_termination:
        from agents.wrappers import CollapseTermination

        envs = [CollapseTermination(e) for e in envs]
    if settings.finite_horizon:
        from agents.wrappers import FiniteHorizon

        envs = [FiniteHorizon(e) for e in envs]
    if len(envs) == 1:
        return envs[0]
    from envs.multitask import RoundRobinEnv

    return RoundRobinEnv(envs)


def _make_agent(settings: TrainSettings, env, resume_ckpt: Path | None):
    """The agent (fresh or loaded from ``resume_ckpt``) and its save function: its entry of
    :data:`agents.registry.AGENT_TYPES`."""
    from agents.registry import agent_type

    kind = agent_type(settings.agent)
    extra: dict[str, Any] = {}
    if kind.episodic:  # side-by-side episodes: each worker builds the run's env
        workers = 1 if settings.num_envs > 1 else (
            settings.workers or min(os.cpu_count() or 1, settings.agent_kwargs.get("population", 12)))
        extra = {"workers": workers,
                 "env_factory": functools.partial(make_training_env, settings) if workers > 1 else None}
    if resume_ckpt is not None:
        model = kind.restore(resume_ckpt, settings.to_json(), env=env, device=settings.device, **extra)
    else:
        model = kind.make(env, settings.agent_kwargs, seed=settings.seed, device=settings.device, **extra)
    return model, kind.save_function(model)


def _check_out(out: Path, replacing: bool, overwrite: bool) -> list[str]:
    """``out`` must be a directory (or not exist, with no file above it); a run in it is replaced
    only with ``overwrite``. Returns the files of the run that ``overwrite`` will remove."""
    from agents.rundir import RunDirError, check_path, existing_run_files

    out = check_path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: is an existing file, not a directory; choose another --out")
    below = next((p for p in out.parents if p.exists()), None)
    if below is not None and not below.is_dir():
        raise RunDirError(f"--out {out}: lies below {below}, which is a file, not a directory")
    previous = existing_run_files(out) if replacing and out.is_dir() else []
    if previous and not overwrite:
        raise RunDirError(f"--out {out} already holds a run ({', '.join(previous)}): continue it with "
                          f"--resume {out}, or replace it with --overwrite")
    return previous


def train(settings: TrainSettings, out: str | os.PathLike, *, overwrite: bool = False, progress: bool = True,
          log_every: int = 1, progress_every: float = 30.0) -> dict:
    """Train a controller with ``settings`` into the run directory ``out``; returns the summary
    (also written to ``out/summary.json``). Raises ``ValueError`` for settings the env or agent
    refuses (:class:`lrrl.config.SettingsError`, before ``out`` is touched),
    :class:`agents.rundir.RunDirError` for an unusable ``out``, ``OSError`` for a failing
    disk (the last good checkpoint is kept), :class:`TrainingInterrupted` on Ctrl-C (checkpoint saved).
    ``progress``: a tqdm bar when stderr is a terminal, and one line on stdout every
    ``progress_every`` seconds when stdout is not (a log file, CI, a cluster job)."""
    out = Path(out)
    previous = _check_out(out, replacing=True, overwrite=overwrite)
    return _run(settings, out, None, previous, progress, log_every, progress_every)


def resume(run: str | os.PathLike, *, steps: int | None = None, out: str | os.PathLike | None = None,
           task: str | None = None, device: str | None = None, data_root: str | None = None,
           checkpoint_every: int | None = None, overwrite: bool = False, progress: bool = True,
           log_every: int = 1, progress_every: float = 30.0) -> dict:
    """Continue a run (its directory or checkpoint file) up to ``steps`` total env steps; the other
    settings come from the run (``device`` and ``checkpoint_every`` may change). The data root is
    ``data_root`` (else ``$LRRL_DATA`` or the default), never the one recorded in the run.

    A run directory is data, never code: a user task (``module:function``) recorded in its
    settings.json is imported only when the caller names the same task again (``task``)."""
    from agents.checkpoint import resolve_run
    from agents.io import CheckpointError
    from agents.settings_schema import user_tasks

    try:
        resume_ckpt, run_dir, recorded = resolve_run(run)
    except CheckpointError as exc:
        raise SettingsError(f"--resume: {exc}") from None
    given = None if task is None else ",".join(t.strip() for t in task.split(",") if t.strip())
    if given is not None and given != ",".join(t.strip() for t in recorded["train"]["task"].split(",")):
        raise SettingsError(f"--resume: the run was trained on --task {recorded['train']['task']}, not {given}")
    users = user_tasks(recorded)
    if users and given is None:
        raise SettingsError(f"--resume: the run's settings.json names the user task {users[0]!r}, which would "
                         f"import and run code named by a file; a resumed run never does that by itself. "
                         f"If you trust that code, name it again: --task {recorded['train']['task']}")
    try:
        settings = TrainSettings.from_json(recorded, str(run_dir / "settings.json"))
    except CheckpointError as exc:
        raise SettingsError(f"--resume: {exc}") from None
    if data_root is not None and not Path(data_root).is_dir():
        raise SettingsError(f"--data-root: {data_root!r} is not a directory")
    # datasets are read (and their folders created) only under a data root the caller names
    # (or $LRRL_DATA), never under one a run directory names: it is a file anyone could edit
    settings.data_root = data_root
    for name, value in (("steps", steps), ("device", device), ("checkpoint_every", checkpoint_every)):
        if value is not None:
            setattr(settings, name, value)
    out = Path(out) if out is not None else run_dir
    previous = _check_out(out, replacing=out.resolve() != run_dir.resolve(), overwrite=overwrite)
    return _run(settings, out, resume_ckpt, previous, progress, log_every, progress_every)


def _run(settings: TrainSettings, out: Path, resume_ckpt: Path | None, previous: list[str],
         progress: bool, log_every: int, progress_every: float = 30.0) -> dict:
    from agents.io import CheckpointError, atomic_write_json, box_to_json, remove_stale_temp_files
    from agents.registry import agent_type
    from agents.rundir import RUN_FILES, DirectoryLock, check_entries, clear_run_files, prepare_directory, remove_temp_files
    from envs.tasks import DatasetUnavailableError

    ckpt_name = agent_type(settings.agent).checkpoint
    try:  # everything refused here is refused before the run directory is touched
        env = make_training_env(settings)
        if _exact_resume(settings):  # the env's state before each reset (agents/snapshot.py)
            from agents.snapshot import ResetRecorder

            env = ResetRecorder(env)
        if resume_ckpt is None or settings.spaces is None:
            settings.spaces = {"observation": box_to_json(env.observation_space),
                               "action": box_to_json(env.action_space)}
    except DatasetUnavailableError as exc:
        raise SettingsError(f"--task: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"bad environment settings: {exc}") from None
    try:
        model, save_to = _make_agent(settings, env, resume_ckpt)
        extras = None
        if resume_ckpt is not None and _exact_resume(settings):
            from agents.snapshot import read_extras

            extras = read_extras(resume_ckpt)
    except CheckpointError as exc:
        raise SettingsError(f"--resume: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"bad agent settings: {exc}") from None
    record = settings.to_json()

    real = prepare_directory(out)  # the directory's real path: every write below goes there
    ckpt_path = real / ckpt_name
    try:
        with DirectoryLock(real, purpose="training"):
            if previous:  # overwrite: nothing of the old run may mix with the new one
                clear_run_files(real)
            # a symlink planted in a shared run directory is refused, never followed
            check_entries(real, files=[n for n in RUN_FILES if n != "tb"], dirs=("tb",))
            remove_stale_temp_files(real, (ckpt_name, "settings.json", "summary.json"))
            atomic_write_json(real / "settings.json", record)  # first, so a killed run can be resumed
            return _learn(settings, model, lambda m, **kw: save_to(ckpt_path, **kw), out / ckpt_name, real,
                          resume_ckpt, progress, log_every, progress_every, resume_extras=extras)
    finally:
        remove_temp_files(real)


def _exact_resume(settings: TrainSettings) -> bool:
    """Checkpoints at episode boundaries with the whole state (:mod:`agents.snapshot`): the
    actor-critic and DDPG/TD3 on one env (an episodic search has its generation boundaries)."""
    from agents.registry import agent_type

    return not agent_type(settings.agent).episodic and settings.num_envs == 1


def _callbacks(settings: TrainSettings, model, save, progress: bool, log_every: int, progress_every: float,
               resume_extras: dict | None = None):
    """The training callbacks: env logging, checkpoint selection (``None`` when off), episode
    snapshots for an exact resume (``None`` when not), periodic checkpoints, progress. Returns
    ``(callbacks, info_callback, selector, checkpointer, snapshots)``."""
    from agents.callbacks import (EnvInfoCallback, PeriodicCheckpoint, ProgressLineCallback, SelectBestCallback,
                                  TqdmCallback)

    info_cb = EnvInfoCallback(log_every=log_every)
    callbacks = [info_cb]

    # ---- checkpoint selection: a deterministic episode on validation seed(s) of the first task
    selector = None
    if settings.select_best > 0:
        from envs.learning_rate_env import LearningRateEnv
        from envs.suite import TRAINING_TASK, training_env

        failure_cost = 0.0
        if settings.tasks[0] == TRAINING_TASK:  # the suite's train families, on selection seeds
            eval_env = training_env("selection", device=settings.device, **{**settings.env_kwargs, "fresh_w0": False})
            if settings.collapse_termination:
                # a controller meant for problems it never saw is chosen for failing on none of
                # the selection problems first, and for its mean return second: a failure costs
                # more than any return (a return is a sum of log loss ratios)
                from agents.wrappers import CollapseTermination

                eval_env, failure_cost = CollapseTermination(eval_env), SELECTION_FAILURE_COST
        else:
            eval_env = LearningRateEnv(task=settings.tasks[0], device=settings.device, data_root=settings.data_root,
                                       **{**settings.env_kwargs, "fresh_w0": False})
        selector = SelectBestCallback(eval_env, int(settings.select_best), tuple(int(s) for s in settings.eval_seeds),
                                      failure_cost)
        callbacks.append(selector)
    # after the selector: a checkpoint at a generation's end then holds that generation's selection
    snapshots = None
    if _exact_resume(settings):  # checkpoints at episode boundaries, with the whole state
        from agents.snapshot import EpisodeSnapshots, find_recorder, restore

        snapshots = EpisodeSnapshots(save, find_recorder(model), selector)
        restore(model, resume_extras, snapshots.recorder, selector)
        callbacks.append(snapshots)
    checkpointer = PeriodicCheckpoint(settings.checkpoint_every, snapshots.save if snapshots else save)
    callbacks.append(checkpointer)
    if progress:
        desc = f"{settings.agent} on {settings.task}"
        if sys.stderr.isatty():
            callbacks.append(TqdmCallback(total=settings.steps, desc=desc))
        if not sys.stdout.isatty():  # a log file, CI, a cluster job: a plain line now and then
            callbacks.append(ProgressLineCallback(settings.steps, every_s=progress_every, desc=desc))
    return callbacks, info_cb, selector, checkpointer, snapshots


def _learn(settings: TrainSettings, model, save, ckpt_path: Path, real: Path, resume_ckpt: Path | None,
           progress: bool, log_every: int, progress_every: float = 30.0, resume_extras: dict | None = None) -> dict:
    """The training loop of a run directory (``ckpt_path``: its checkpoint as the user named the
    directory; ``real``: the directory's real path, where files are written)."""
    out = ckpt_path.parent
    from stable_baselines3.common.logger import configure

    from agents.io import atomic_write_json

    model.set_logger(configure(str(real / "tb"), ["tensorboard"]))
    done_before = int(model.num_timesteps)
    remaining = max(0, settings.steps - done_before)
    if resume_ckpt is not None and int(getattr(model, "interrupted_episode_steps", 0) or 0) > 0:
        # the checkpoint was written mid-episode (a kill or an interrupt): that episode ended there,
        # the resumed run starts a fresh one, so the counter matches an uninterrupted run's
        model._episode_num += 1
        model.interrupted_episode_steps = 0
    callbacks, info_cb, selector, checkpointer, snapshots = _callbacks(settings, model, save, progress, log_every,
                                                                       progress_every, resume_extras)
    start = time.time()
    try:
        if remaining > 0:
            model.learn(remaining, callback=callbacks, log_interval=1,
                        reset_num_timesteps=resume_ckpt is None, progress_bar=False)
    except KeyboardInterrupt:
        checkpointer.save(model)
        saved = snapshots.saved_timesteps if snapshots is not None else None
        raise TrainingInterrupted(out, int(saved if saved is not None else
                                           getattr(model, "checkpoint_timesteps", model.num_timesteps))) from None
    wall = time.time() - start
    checkpointer.save(model)

    last = info_cb.last_episode or {}
    result = validation_result(settings, model)
    summary = {
        "agent": settings.agent, "task": settings.task, "seed": settings.seed, "out": str(out),
        "steps_total": int(model.num_timesteps), "steps_this_run": int(model.num_timesteps) - done_before,
        "resumed_from_step": done_before if resume_ckpt is not None else None,
        "episodes_this_run": info_cb.episodes,
        # the saved controller's own result (one deterministic episode on the validation seed) and
        # constant SGD's on the same seed: what the run produced
        "validation_seed": result["seed"],
        "final_train_loss": result["controller"].get("final_train_loss"),
        "final_test_loss": result["controller"].get("final_test_loss"),
        "final_test_accuracy": result["controller"].get("final_test_accuracy"),
        "diverged": result["controller"].get("diverged"),
        "controller_mean_lr": result["controller"].get("mean_lr"),
        "controller_error": result["controller"].get("error"),
        "sgd_reference": result["sgd"],
        # the last training episode: an exploration episode (a candidate, or the policy with its
        # exploration noise), not the saved controller
        "last_training_episode": {"final_train_loss": last.get("final_train_loss"),
                                  "final_test_loss": last.get("final_test_loss"),
                                  "final_test_accuracy": last.get("final_test_accuracy"),
                                  "final_batch_loss": last.get("final_batch_loss"),
                                  "diverged": last.get("diverged"), "mean_lr": last.get("mean_lr")},
        "mean_lr": info_cb.mean_lr,
        "best_eval_return": selector.best_return if selector is not None else None,
        "best_eval_timestep": selector.best_timestep if selector is not None else None,
        "wall_time_s": round(wall, 2),
        "checkpoint": str(ckpt_path),
    }
    atomic_write_json(real / "summary.json", summary)
    return summary


#: the constant SGD rate the summary compares a controller with (a task's ``meta["sgd_lr"]``
#: replaces it): the customary default, not a tuned rate (evaluate.py tunes baselines)
REFERENCE_SGD_LR = 0.1


def validation_result(settings: TrainSettings, model) -> dict:
    """The saved controller's own result: one deterministic episode of ``model`` on the first
    validation seed (``settings.eval_seeds[0]``, the seed checkpoint selection uses; first task),
    and constant SGD at :data:`REFERENCE_SGD_LR` on the same seed (same ``w0``, batches and
    training set). Returns ``{"seed", "controller": {...}, "sgd": {...}}``, each with
    ``final_train_loss``, ``final_test_loss``, ``final_test_accuracy``, ``diverged``, ``mean_lr``
    (an ``error`` entry instead if the episode could not run: the run itself is kept)."""
    from agents.baselines import ConstantLR, ControllerPolicy, run_episode
    from envs.learning_rate_env import LearningRateEnv

    from envs.suite import SUMMARY_INSTANCE, TRAINING_TASK, make_instance

    seed = int(settings.eval_seeds[0]) if settings.eval_seeds else 0
    kwargs = {**settings.env_kwargs, "fresh_w0": False}
    task = settings.tasks[0]
    if task == TRAINING_TASK:  # one instance of a train family, on a selection seed, at its horizon
        task = make_instance(*SUMMARY_INSTANCE)
        kwargs["episode_length"] = task.meta["horizon"]
    length = int(kwargs["episode_length"])
    common = {"task": task, "device": settings.device, "data_root": settings.data_root,
              "eval_every": length}

    def outcome(make_env, policy) -> dict:
        try:
            env = make_env()
            res = run_episode(env, policy, seed)
        except Exception as exc:  # report it; never lose the trained run over its summary
            return {"error": f"{type(exc).__name__}: {exc}"}
        finished = res.steps >= length and not res.diverged
        last = lambda values: values[-1] if finished and values else None  # noqa: E731
        return {"final_train_loss": last(res.train_loss), "final_test_loss": last(res.test_loss),
                "final_test_accuracy": last(res.test_accuracy), "diverged": bool(res.diverged),
                "mean_lr": float(sum(res.lr) / len(res.lr)) if res.lr else None,
                "_env": env}

    controller = outcome(lambda: LearningRateEnv(**common, **kwargs), ControllerPolicy(model))
    env = controller.pop("_env", None)
    validation_size = int(env.trainer.x_val.shape[0]) if env is not None else 0
    task = env.trainer.task if env is not None else task
    lr = float((getattr(task, "meta", None) or {}).get("sgd_lr", REFERENCE_SGD_LR))
    sgd = outcome(lambda: LearningRateEnv(task=task, device=settings.device, data_root=settings.data_root,
                                          eval_every=length, episode_length=length, optimizer="sgd",
                                          action="raw", lr_min=1e-8, lr_max=10.0,
                                          validation_size=validation_size), ConstantLR(lr))
    sgd.pop("_env", None)
    return {"seed": seed, "controller": controller, "sgd": {"lr": lr, **sgd}}


def default_threads(threads: int | None, num_envs: int | None, cpus: int = 0) -> int:
    """torch threads of a training process: ``threads`` if given, else 1, or ``cpus`` (0: torch's
    default, every core) with ``num_envs`` > 1. Measured (README, issue 12): one thread is fastest
    for one small env per process, while 16 digits networks' batched step is 1.5x faster with two
    threads than with one. A policy search's driver keeps 1: its --workers do the work, and an
    idle multi-threaded driver spinning next to them slowed a search down 5x on 2 cores."""
    if threads is not None:
        return threads
    return cpus if (num_envs or 1) > 1 else 1


# --------------------------------------------------------------------------- several seeds
def default_run_dir(settings: TrainSettings, seed: int | None = None) -> Path:
    """A run's directory when none is given: ``runs/<agent>-<task>-seed<seed>`` (``settings.seed``
    unless ``seed`` is given; several tasks joined by ``+``)."""
    seed = settings.seed if seed is None else seed
    return Path(f"runs/{settings.agent}-{settings.task.replace(',', '+')}-seed{seed}")


def seed_run_dirs(settings: TrainSettings, seeds: list[int], out: str | os.PathLike | None) -> list[Path]:
    """Where each seed of :func:`train_seeds` writes: ``OUT/seed-K`` under a given ``out``, else
    each seed's :func:`default_run_dir`."""
    if out is not None:
        return [Path(out) / f"seed-{k}" for k in seeds]
    return [default_run_dir(settings, k) for k in seeds]


def _train_one(settings: TrainSettings, out: str, overwrite: bool) -> dict:
    """One seed of :func:`train_seeds` (what a worker or a Ray task runs)."""
    return train(settings, out, overwrite=overwrite, progress=False)


def train_seeds(settings: TrainSettings, seeds: list[int], outs: list[Path], *, backend=None,
                overwrite: bool = False, bar=None) -> list[dict]:
    """Train one controller per seed (``settings`` with that seed) into its own run directory
    ``outs[i]`` (written by the task: on a cluster, storage every node sees), each as one task of ``backend`` (:func:`lrrl.sweep.make_backend`; default:
    one after another in this process). Every run directory is checked before any run starts
    (:class:`agents.rundir.RunDirError`). A policy search without ``workers`` uses the CPUs of its
    task (one in a local pool, ``--cpus-per-run`` on Ray) instead of every core of the machine.
    Returns, in the order of ``seeds``, each run's summary, or ``{"seed", "out", "error"}`` for a
    run that failed (the others go on). ``bar``: a tqdm bar advanced as runs finish."""
    import dataclasses

    from lrrl.sweep import LocalPool

    from agents.registry import agent_type
    from agents.rundir import RunDirError

    linked = next((o for o in outs if Path(o).is_symlink()), None)
    if linked is not None:  # OUT/seed-K is ours to create: a link planted there would lead outside
        raise RunDirError(f"refusing to train into {linked}: it is a symbolic link, which could point "
                          f"outside the directory; remove it and retry")
    outs = [Path(o).resolve() for o in outs]  # a worker's current directory may be another
    if len(outs) != len(seeds) or len(set(outs)) != len(outs):
        raise ValueError("train_seeds: one distinct run directory per seed")
    for out in outs:
        _check_out(Path(out), replacing=True, overwrite=overwrite)
    backend = backend if backend is not None else LocalPool(1)
    per_task = getattr(backend, "cpus_per_task", None)
    jobs = []
    for seed in seeds:
        s = dataclasses.replace(settings, seed=int(seed), eval_seeds=list(settings.eval_seeds))
        if agent_type(s.agent).episodic and s.workers is None and per_task is not None and s.num_envs == 1:
            s.workers = max(1, int(per_task))
        jobs.append(s.validate())
    results: list[dict | None] = [None] * len(seeds)
    if bar is not None:
        bar.total = len(seeds)
        bar.refresh()
    for i, summary, exc in backend.imap_unordered(_train_one, [(s, str(o), overwrite) for s, o in zip(jobs, outs)]):
        results[i] = summary if exc is None else {"seed": seeds[i], "out": str(outs[i]),
                                                  "error": f"{type(exc).__name__}: {exc}"}
        if bar is not None:
            bar.update(1)
    return results  # type: ignore[return-value]
