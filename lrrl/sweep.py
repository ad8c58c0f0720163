"""The one sweep: run specs (one primary-training run each), their persistence, the worker pool.

A *spec* is a JSON-serialisable description of one run: a method family, its parameter, the
primary seed, the optimizer, the policy that sets the rate and the env settings. Every run goes
through :class:`envs.LearningRateEnv` (so through the one primary-training step) and
:func:`agents.baselines.run_episode`. A finished run is written to ``OUT/runs/KEY.json``
(atomically) with the settings it ran under (``common``: task, updates, evaluation interval,
device, ..., and a fingerprint of the code); rerunning the same sweep loads finished runs instead
of running them again, so an interrupted sweep resumes where it stopped, and a run made by other
code or settings is never mistaken for a finished one. A diverged run is recorded as such and a
failing run as an error: neither stops a sweep.

Where runs execute is a *backend*: :class:`LocalPool` (the calling process, or ``jobs`` worker
processes; the default, no extra package) or the Ray backend (:mod:`lrrl.ray_backend`,
imported only when asked for: :func:`make_backend`). Either one only runs tasks and hands their
results back; the sweep's driver writes every run file, so the run directory is the same
whichever backend filled it, and a sweep interrupted on one resumes on the other.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import math
import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from lrrl.config import DEFAULT_BATCH, BackendError
from lrrl.method_base import fmt_param  # noqa: F401  (also the sweep's: how a run's file is named)
from lrrl.methods import BASELINE_ENV, make_policy, policy_batchable
from lrrl.methods import label as method_label

_CONTROLLERS: dict[str, Any] = {}  # path -> loaded controller (per process)


def register_controller(path: str, controller: Any) -> None:
    """Make an already loaded controller the one runs with ``{"kind": "controller", "path": path}``
    use in this process (worker processes load it from ``path``)."""
    _CONTROLLERS[path] = controller


def _controller(path: str, device: str):
    if path not in _CONTROLLERS:
        from agents.checkpoint import load_controller

        _CONTROLLERS[path] = load_controller(path, device=device)
    return _CONTROLLERS[path]


def make_spec(family: str, seed: int, param: Any = None, optimizer: str = "sgd",
              policy: dict | None = None, env: dict | None = None, label: str | None = None) -> dict:
    """A JSON-serialisable description of one run; ``key`` names its file in ``runs/``."""
    if isinstance(param, float):
        param = float(fmt_param(param))
    ptxt = "" if param is None else "_" + ("-".join(fmt_param(p) for p in param)
                                          if isinstance(param, (list, tuple)) else
                                          (fmt_param(param) if isinstance(param, float) else str(param)))
    key = f"{family}{ptxt}_s{seed}"
    return {"key": key, "family": family, "param": param, "seed": int(seed), "optimizer": optimizer,
            "policy": policy or {"kind": "constant", "lr": param},
            "env": dict(BASELINE_ENV) if env is None else dict(env),
            "label": label or method_label(family)}


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, list):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    return x


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temp file + fsync + rename; the temp file is removed if the write fails,
    e.g. on a full disk): a killed sweep never leaves half a file. Infinities become ``null``."""
    from agents.io import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(_finite_or_none(obj), allow_nan=False).encode())


def run_spec(spec: dict, common: dict, out_dir: str | None = None) -> dict:
    """Run one spec through the env and return its record (and write ``runs/KEY.json``).

    Never raises for a diverging or failing run: the record's ``status`` is ``ok``,
    ``diverged`` or ``error`` (with ``message``); final losses are ``None`` unless ``ok``.
    """
    from agents.baselines import run_episode
    from envs.learning_rate_env import LearningRateEnv

    t0 = time.perf_counter()
    record: dict[str, Any] = {"key": spec["key"], "spec": spec, "common": common}
    try:
        env = LearningRateEnv(task=common["task"], optimizer=spec["optimizer"],
                              episode_length=common["steps"], eval_every=common["eval_every"],
                              validation_size=common["validation_size"], device=common["device"],
                              divergence_factor=common["divergence_factor"],
                              data_root=common["data_root"], seed=spec["seed"], **spec["env"])
        policy = make_policy(spec["policy"], lambda path: _controller(path, common["device"]))
        res = run_episode(env, policy, spec["seed"], trace=common["trace"])
        record.update(_outcome(asdict(res), res.diverged, res.steps, common["steps"]))
    except Exception as exc:  # a broken run is recorded, never stops the sweep
        record.update(status="error", message=f"{type(exc).__name__}: {exc}",
                      final={"train_loss": None, "test_loss": None, "test_accuracy": None}, curves={})
    record["wall_time"] = time.perf_counter() - t0
    if out_dir is not None:
        write_json(Path(out_dir) / "runs" / f"{spec['key']}.json", record)
    return record


def batch_key(spec: dict) -> tuple | None:
    """Runs with the same key can train side by side in one vector env: same optimizer (one with a
    batched form) and env settings, and a policy that reads no more of the env than a sub-env view
    gives. ``None``: the run goes alone."""
    from envs.batched import BATCHED_OPTIMIZERS

    if spec["optimizer"] not in BATCHED_OPTIMIZERS or not policy_batchable(spec["policy"]):
        return None
    return spec["optimizer"], json.dumps(spec["env"], sort_keys=True)


def run_batch(specs: list[dict], common: dict, out_dir: str | None = None) -> list[dict]:
    """:func:`run_spec` for several runs of one :func:`batch_key` at once: one
    :class:`envs.LearningRateVectorEnv` trains their primary networks in one batched step
    (:func:`agents.baselines.run_episodes`; the same runs to float rounding). Each record's
    ``wall_time`` is the batch's divided by its size. If the batch cannot be built or fails as a
    whole, every run is redone alone, so each records its own outcome."""
    if len(specs) == 1:
        return [run_spec(specs[0], common, out_dir)]
    from agents.baselines import run_episodes
    from envs.vector_env import LearningRateVectorEnv

    t0 = time.perf_counter()
    try:
        first = specs[0]
        vec = LearningRateVectorEnv(common["task"], num_envs=len(specs), batched=True, seed=first["seed"],
                                    optimizer=first["optimizer"], episode_length=common["steps"],
                                    eval_every=common["eval_every"], validation_size=common["validation_size"],
                                    device=common["device"], divergence_factor=common["divergence_factor"],
                                    data_root=common["data_root"], **first["env"])
        try:
            policies = [make_policy(s["policy"], lambda path: _controller(path, common["device"])) for s in specs]
            results = run_episodes(vec, policies, [s["seed"] for s in specs], trace=common["trace"])
        finally:
            vec.close()
    except Exception:  # (e.g. a model torch.func cannot batch): alone, each run records its outcome
        return [run_spec(s, common, out_dir) for s in specs]
    wall = (time.perf_counter() - t0) / len(specs)
    records = []
    for spec, res in zip(specs, results):
        record = {"key": spec["key"], "spec": spec, "common": common,
                  **_outcome(asdict(res), res.diverged, res.steps, common["steps"]), "wall_time": wall}
        if out_dir is not None:
            write_json(Path(out_dir) / "runs" / f"{spec['key']}.json", record)
        records.append(record)
    return records


def _outcome(curves: dict, diverged: bool, steps: int, planned: int) -> dict:
    """Status, final losses and curves of a finished episode."""
    finished = not diverged and steps == planned and bool(curves["train_loss"])
    final = {k: (curves[k][-1] if finished and curves[k] else None)
             for k in ("train_loss", "test_loss", "test_accuracy")}
    if finished and not all(v is None or math.isfinite(v) for v in final.values()):
        finished = False
    if not finished:
        final = dict.fromkeys(final)
    return {"status": "ok" if finished else "diverged", "message": "", "final": final, "curves": curves}


def code_fingerprint() -> str:
    """A hash of the code a run's outcome depends on (``envs/*.py``, ``agents/*.py``, this module
    and the method catalogue): part of every run's settings, so a rerun never resumes runs made
    by other code (issue 13: a table assembled from cached runs of earlier code did not match the
    code it was published with)."""
    root = Path(__file__).resolve().parents[1]
    files = [*root.glob("envs/*.py"), *root.glob("agents/*.py"),
             root / "lrrl" / "sweep.py", root / "lrrl" / "methods.py"]
    digest = hashlib.sha1()
    for path in sorted(files):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def load_finished(path: Path, spec: dict, common: dict) -> dict | None:
    """A finished run's record, if ``path`` holds one for exactly this spec and settings."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("spec") != spec or record.get("common") != common:
        return None
    return record if record.get("status") in ("ok", "diverged") else None


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


# --------------------------------------------------------------------------- backends
#: the one line ``--backend ray`` gives when Ray is not installed
RAY_MISSING = '--backend ray needs Ray: pip install -e ".[ray]"'
BACKENDS = ("local", "ray")


class LocalPool:
    """The default backend: tasks run in the calling process (``jobs=1``) or in ``jobs`` worker
    processes (spawned, one torch thread each). A backend runs ``fn(*args)`` for every ``args``
    of a list and yields ``(index, result, None)``, or ``(index, None, exception)`` for a task
    that raised or whose worker died, as tasks finish (:meth:`imap_unordered`); ``parallelism``
    is how many tasks run at once."""

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
        self.jobs = jobs
        self._pool: cf.ProcessPoolExecutor | None = None

    @property
    def parallelism(self) -> int:
        return self.jobs

    @property
    def cpus_per_task(self) -> int | None:
        """CPUs one task may use: ``None`` in this process (all of them), 1 in worker processes."""
        return None if self.jobs == 1 else 1

    def describe(self) -> str:
        return "in this process" if self.jobs == 1 else f"{self.jobs} local worker processes"

    def imap_unordered(self, fn: Callable, items: Sequence[tuple],
                       started: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any, BaseException | None]]:
        if self.jobs == 1:
            for i, args in enumerate(items):
                if started is not None:
                    started(i)
                try:
                    result = fn(*args)
                except Exception as exc:  # the caller records it (a sweep: error rows)
                    yield i, None, exc
                else:
                    yield i, result, None
            return
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(max_workers=self.jobs, initializer=_init_worker,
                                                mp_context=multiprocessing.get_context("spawn"))
        futures = {self._pool.submit(fn, *args): i for i, args in enumerate(items)}
        try:
            for fut in cf.as_completed(futures):
                exc = fut.exception()
                yield futures[fut], (None if exc is not None else fut.result()), exc
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_backend(kind: str = "local", *, jobs: int = 1, address: str | None = None, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0, max_retries: int = 3):
    """The backend a command line asked for: :class:`LocalPool` (``jobs`` processes), or
    :class:`lrrl.ray_backend.RayPool` (connected to ``address``: ``auto`` joins a running
    cluster, ``host:port`` a given head, ``None`` starts a local Ray with this machine's cores).
    :class:`BackendError` (one line) if Ray is missing or the cluster does not answer; call it
    before writing anything. Close the backend when done (it is a context manager)."""
    if kind not in BACKENDS:
        raise BackendError(f"--backend must be one of {', '.join(BACKENDS)}, got {kind!r}")
    for flag, value, ok, need in (("--cpus-per-run", cpus_per_run, cpus_per_run > 0, "a number > 0"),
                                  ("--gpus-per-run", gpus_per_run, gpus_per_run >= 0, "a number >= 0"),
                                  ("--max-retries", max_retries, max_retries >= 0, ">= 0")):
        if not (math.isfinite(value) and ok):
            raise BackendError(f"{flag} must be {need}, got {value}")
    if kind == "local":
        given = [flag for flag, value, default in (("--ray-address", address, None), ("--gpus-per-run", gpus_per_run, 0.0))
                 if value != default]
        if given:
            raise BackendError(f"{given[0]} needs --backend ray")
        return LocalPool(jobs)
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise BackendError(RAY_MISSING)
    from lrrl.ray_backend import RayPool

    return RayPool(address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run, max_retries=max_retries)


def add_backend_arguments(parser) -> None:
    """The backend flags every command line that runs a sweep shares (``--backend``,
    ``--ray-address``, ``--cpus-per-run``, ``--gpus-per-run``, ``--max-retries``; ``--jobs`` is
    each script's own)."""
    g = parser.add_argument_group("where runs execute (lrrl.sweep backends)")
    g.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: this machine's process pool (--jobs; no extra package); ray: every run (or "
                        "batch of runs) is a Ray task (pip install -e \".[ray]\")")
    g.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="--backend ray: 'auto' joins the cluster started with 'ray start' on this machine, "
                        "HOST:PORT a cluster's head; without it a local Ray is started with this machine's cores")
    g.add_argument("--cpus-per-run", type=float, default=1.0,
                   help="--backend ray: CPUs each task reserves (also its torch threads)")
    g.add_argument("--gpus-per-run", type=float, default=0.0,
                   help="--backend ray: GPUs each task reserves; fractions share one GPU between runs "
                        "(use with --device cuda)")
    g.add_argument("--max-retries", type=int, default=3,
                   help="--backend ray: times a task whose worker died is rerun (a run that raises is "
                        "recorded as an error, never retried)")


def backend_from_args(args):
    """:func:`make_backend` from the flags of :func:`add_backend_arguments` (and ``args.jobs``)."""
    if args.backend == "local" and args.cpus_per_run != 1.0:
        raise BackendError("--cpus-per-run needs --backend ray (the local pool runs one thread per run; see --jobs)")
    return make_backend(args.backend, jobs=getattr(args, "jobs", 1), address=args.ray_address,
                        cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run, max_retries=args.max_retries)


def _failed(spec: dict, common: dict, exc: BaseException) -> dict:
    """The record of a run whose task never returned (its worker died after every retry, or the
    task itself raised): an error row; it is not written, so a rerun runs it again."""
    return {"key": spec["key"], "spec": spec, "common": common, "status": "error",
            "message": f"worker failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
            "curves": {}, "final": {"train_loss": None, "test_loss": None, "test_accuracy": None},
            "wall_time": float("nan")}


class Sweep:
    """Runs specs (resuming finished ones from ``out_dir/runs``) on a backend: ``backend``, or a
    :class:`LocalPool` of ``jobs`` processes (inline for ``jobs=1``), up to ``batch`` runs of
    one :func:`batch_key` side by side in one vector env per task (``batch=1``: one run per
    task). The driver (this object) writes every finished run's file. ``records`` maps every
    run's key to its record; ``resumed`` counts loaded ones. A backend passed in belongs to the
    caller (not closed here)."""

    def __init__(self, common: dict, out_dir: Path, jobs: int = 1, bar=None, batch: int = DEFAULT_BATCH,
                 backend=None) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        self.common, self.out_dir, self.bar, self.batch = common, Path(out_dir), bar, batch
        self._own_backend = backend is None
        self.backend = LocalPool(jobs) if backend is None else backend
        self.jobs = self.backend.parallelism
        self.records: dict[str, dict] = {}
        self.resumed = 0

    def __enter__(self) -> "Sweep":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._own_backend:
            self.backend.close()

    def _progress(self, total: int = 0, done: int = 0, note: str | None = None) -> None:
        if self.bar is None:
            return
        if total:
            self.bar.total = (self.bar.total or 0) + total
            self.bar.refresh()
        if note is not None:
            self.bar.set_postfix_str(note)
        if done:
            self.bar.update(done)

    def run(self, specs: Iterable[dict]) -> list[dict]:
        specs = [s for s in specs if s["key"] not in self.records]
        specs = list({s["key"]: s for s in specs}.values())
        self._progress(total=len(specs))
        todo = []
        for spec in specs:
            done = load_finished(self.out_dir / "runs" / f"{spec['key']}.json", spec, self.common)
            if done is not None:
                self.records[spec["key"]] = done
                self.resumed += 1
                self._progress(done=1)
            else:
                todo.append(spec)
        groups = self._groups(todo)

        def started(i: int) -> None:
            group = groups[i]
            self._progress(note=group[0]["key"] + (f" (+{len(group) - 1} side by side)" if len(group) > 1 else ""))

        runs_dir = self.out_dir / "runs"
        for i, recs, exc in self.backend.imap_unordered(run_batch, [(g, self.common) for g in groups], started):
            if exc is not None:  # the task never returned (a worker died): error rows, not written
                recs = [_failed(spec, self.common, exc) for spec in groups[i]]
            else:  # the driver writes every run file (a failing write, e.g. a full disk, stops the sweep)
                for rec in recs:
                    write_json(runs_dir / f"{rec['key']}.json", rec)
            for rec in recs:
                self._done(rec)
        return [self.records[s["key"]] for s in specs]

    def _groups(self, specs: list[dict]) -> list[list[dict]]:
        """Specs in groups of at most ``batch`` with one :func:`batch_key` (in order of first
        appearance); runs that cannot be batched alone. With workers, groups are sized so that
        every worker gets work."""
        if self.batch == 1:
            return [[s] for s in specs]
        by_key: dict[Any, list[dict]] = {}
        for i, spec in enumerate(specs):
            key = batch_key(spec)
            by_key.setdefault(key if key is not None else ("alone", i), []).append(spec)
        groups = []
        for key, members in by_key.items():
            size = self.batch
            if self.jobs > 1:  # split a key's runs evenly over the workers rather than leave one idle
                size = max(1, min(self.batch, math.ceil(len(members) / self.jobs)))
            groups += [members[i:i + size] for i in range(0, len(members), size)]
        return groups

    def _done(self, record: dict) -> None:
        self.records[record["key"]] = record
        self._progress(done=1)
