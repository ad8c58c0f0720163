"""Evaluate trained learning-rate controllers against tuned optimizers: tables and figures.

    python evaluate.py [CHECKPOINT ...] --task digits --steps 1000 --seeds 5 --baselines all \\
        --out results/digits --jobs 2

Every method runs through :class:`envs.LearningRateEnv` (so through the one
:class:`~envs.primary.PrimaryTrainer`), on the same seeds: the same initial weights ``w0`` and
the same batch order per seed. Seeds are *held out*: ``--seeds 5`` means 1000..1004, never the
seeds controllers are trained on (train_controller.py uses small seeds). Baselines
(:mod:`agents.baselines`):

* ``sgd``, ``adam``, ``adagrad``, ``rmsprop``: constant rates on the paper's decade grid
  {1e-4, ..., 1}; the best rate by mean final training loss over the seeds is reported (the
  paper's protocol, Section 4.1). ``--grid fine`` / ``both`` adds, for SGD and Adam, a fine grid
  around the best decade rate (x 0.5, 2, 3, 5, 7; for SGD at 0.1 that is
  0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1): the decade grid flatters any
  controller (see DESIGN.md, "Evaluating honestly"). As in the paper, grids are tuned on the
  evaluation seeds, which favours the baselines.
* ``cosine``: SGD with cosine decay, peak tuned on (best decade SGD rate) x 1, 2, 3, 5, 7, 10.
* ``vsgd``: vSGD (Schaul et al. 2013), global rate, finite-difference curvature; no tuning.
* ``hd``: SGD-HD (Baydin et al. 2018), initial rate tuned on {1e-3, ..., 1} and beta on {1e-4, ..., 1}
  (as Baydin et al. tune both).
* ``clipped``: SGD with gradient-norm clipping (``clip_grad_norm_`` then SGD), rate x threshold
  tuned on {0.1, 1, ..., 1000} x {0.001, ..., 10} (large rates are safe once clipped), then
  (``--grid fine``) around the best pair (rate x 0.5 ... 7 as for SGD, threshold x 0.3, 1, 3).
* ``gradnorm``: the gradient-norm rule ``min(geometric ramp lr0 -> lr1, cap / ||g_t||)`` of issue 16,
  its three constants fitted on *training* seeds 0 and 1 (like the Daniel-style controller).
* ``feature``: a Daniel et al. (2016)-style log-linear feature controller, its parameters
  fitted on *training* seed 0 (12 candidates), then evaluated on the held-out seeds.
* ``schedulefree-sgd``, ``schedulefree-adamw``, ``prodigy``, ``dadapt-sgd``, ``dadapt-adam``
  (alias ``lrfree``): learning-rate-free optimizers at their recommended lr (multiplier 1.0;
  schedule-free AdamW 0.0025). Skipped with a note if their package is missing.

Checkpoints (run directories of train_controller.py, or their checkpoint files) are loaded
with :func:`agents.checkpoint.load_controller` and run in an env built with their own
observation/action settings (the reward does not change a trajectory); their RL return is
also measured with SB3's ``evaluate_policy`` (``--episodes``).

Outputs in ``--out``: ``results.md`` (tables, also printed), ``summary.csv``, ``curves.csv``
(every per-seed curve, long format), ``results.json`` (everything), PNG figures, and
``runs/*.json``: one file per finished (method, parameter, seed) run. Rerunning the same
command skips finished runs, so an interrupted sweep resumes where it stopped. A diverged run
counts as final loss = inf for grid selection and is shown as diverged; it never stops a sweep.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import hashlib
import json
import math
import multiprocessing
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

DEFAULT_SEED_START = 1000
#: at most this many evaluation seeds (each is a full run of every method)
MAX_SEEDS = 10_000
#: seeds are unsigned 64-bit integers (torch.Generator.manual_seed's range)
SEED_LIMIT = 2 ** 64
DECADE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
FINE_MULTIPLIERS = (0.5, 2.0, 3.0, 5.0, 7.0)
COSINE_MULTIPLIERS = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0)
HD_BETAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: SGD-HD's initial rates: Baydin et al. tune the initial rate as well as beta
HD_LR0S = (1e-3, 1e-2, 1e-1, 1.0)
FEATURE_LR0 = 0.01
FEATURE_FIT_SEEDS = (0,)
#: clipped SGD's decade grid: rates x gradient-norm clipping thresholds. Rates go far above
#: plain SGD's grid because with clipping a huge rate is safe: at lr = 1000 and max_norm = 1e-3
#: every step has length ~1 (normalised gradient descent), which measured far better on digits
#: than any rate <= 8; a grid that stopped at 1 would flatter every controller.
CLIP_RATES = (1e-1, 1.0, 10.0, 100.0, 1000.0)
CLIP_NORMS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: the fine grid around the best decade pair: rate x FINE_MULTIPLIERS (as for SGD), threshold x these
CLIP_NORM_MULTIPLIERS = (0.3, 1.0, 3.0)
#: training seeds the gradient-norm rule's constants are fitted on (like the Daniel-style one)
GRAD_NORM_RULE_FIT_SEEDS = (0, 1)
GRID_OPTIMIZERS = ("sgd", "adam", "adagrad", "rmsprop")
FINE_OPTIMIZERS = ("sgd", "adam")
LRFREE = {"schedulefree-sgd": 1.0, "schedulefree-adamw": 0.0025, "prodigy": 1.0,
          "dadapt-sgd": 1.0, "dadapt-adam": 1.0}
BASELINES = GRID_OPTIMIZERS + ("clipped", "gradnorm", "cosine", "vsgd", "hd", "feature") + tuple(LRFREE)
ALIASES = {"lrfree": tuple(LRFREE), "daniel": ("feature",), "sgd-hd": ("hd",), "clip": ("clipped",),
           "all": BASELINES, "none": ()}
LABELS = {"sgd": "SGD", "adam": "Adam", "adagrad": "Adagrad", "rmsprop": "RMSprop",
          "clipped": "SGD, clipped", "gradnorm": "Gradient-norm rule",
          "cosine": "SGD cosine", "vsgd": "vSGD", "hd": "SGD-HD", "feature": "Daniel-style",
          "schedulefree-sgd": "Schedule-free SGD", "schedulefree-adamw": "Schedule-free AdamW",
          "prodigy": "Prodigy", "dadapt-sgd": "D-Adapt SGD", "dadapt-adam": "D-Adapt Adam"}
#: env settings of every baseline: the action is the learning rate itself
BASELINE_ENV = {"action": "raw", "lr_min": 1e-8, "lr_max": 10.0}
#: the same for the clipped and gradient-norm baselines, whose capped rates may be far above 10
CAPPED_BASELINE_ENV = {**BASELINE_ENV, "lr_max": 1e4}
LRFREE_PACKAGES = {"schedulefree-sgd": "schedulefree", "schedulefree-adamw": "schedulefree",
                   "prodigy": "prodigyopt", "dadapt-sgd": "dadaptation", "dadapt-adam": "dadaptation"}


class UsageError(ValueError):
    """Bad command-line input: reported as ``evaluate.py: error: ...`` with exit status 2."""


# =========================================================================== argument parsing
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="evaluate.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Baselines: " + ", ".join(BASELINES) + "; aliases: " + ", ".join(ALIASES))
    p.add_argument("checkpoints", nargs="*", metavar="CHECKPOINT",
                   help="trained controllers: run directories of train_controller.py or the "
                        "checkpoint file (controller.pt / controller.zip) inside them")
    p.add_argument("--task", default="digits",
                   help="evaluation task: digits (default, offline), regression2d (offline, adds "
                        "the paper's Figures 4 and 5), mnist, fashion-mnist, cifar10, or a user task "
                        "'package.module:function' (a function returning an envs.Task, e.g. "
                        "benchmarks.transfer:wine_task); a controller trained on another task is "
                        "labelled '(trained on TASK)'")
    p.add_argument("--steps", type=int, default=1000, help="updates (mini-batches) per run")
    p.add_argument("--seeds", default="5",
                   help=f"a count N (held-out seeds {DEFAULT_SEED_START}..{DEFAULT_SEED_START}+N-1) "
                        f"or a comma-separated list of seeds (one explicit seed: '7,')")
    p.add_argument("--baselines", default="all",
                   help="comma-separated baseline names or aliases (all, lrfree, none), see below")
    p.add_argument("--grid", choices=("paper", "fine", "both"), default="both",
                   help="report the paper's decade grid, the fine grid around its best, or both")
    p.add_argument("--out", default=None, help="output directory (default results/evaluate-TASK)")
    p.add_argument("--jobs", type=int, default=1,
                   help="parallel worker processes for independent runs (1 thread each)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="device of the primary model")
    p.add_argument("--data-root", default=None, help="folder holding MNIST/CIFAR-10 files")
    p.add_argument("--eval-every", type=int, default=20,
                   help="measure full train/test loss every K updates (curve resolution)")
    p.add_argument("--divergence-factor", type=float, default=100.0,
                   help="a run counts as diverged when a mini-batch loss exceeds this multiple of its "
                        "first one (or is not finite); the env's default, generous because small "
                        "noisy batches such as regression2d's vary tenfold")
    p.add_argument("--episodes", type=int, default=3,
                   help="episodes for the RL policy evaluation of each checkpoint (0: skip)")
    return p


def parse_seeds(text: str) -> list[int]:
    """``"5"`` -> ``[1000, ..., 1004]``; ``"1,2,7"`` -> ``[1, 2, 7]``."""
    text = (text or "").strip()
    if not text:
        raise UsageError("--seeds is empty: give a count (e.g. 5) or a list (e.g. 1000,1001)")
    short = text if len(text) <= 40 else text[:37] + "..."
    try:
        if "," in text:
            items = [s for s in text.split(",") if s.strip()]
            if len(items) > MAX_SEEDS:
                raise UsageError(f"--seeds: {len(items)} seeds given, at most {MAX_SEEDS} are supported")
            seeds = [int(s) for s in items]
        else:
            n = int(text)
            if n < 1:
                raise UsageError(f"--seeds {text}: need at least one seed")
            if n > MAX_SEEDS:
                raise UsageError(f"--seeds {short}: at most {MAX_SEEDS} seeds are supported (each seed is a "
                                 f"full run of every method)")
            seeds = list(range(DEFAULT_SEED_START, DEFAULT_SEED_START + n))
    except ValueError as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(f"--seeds {short!r}: expected a count or comma-separated integers") from None
    if not seeds:
        raise UsageError("--seeds is empty: give a count (e.g. 5) or a list (e.g. 1000,1001)")
    bad = next((s for s in seeds if not 0 <= s < SEED_LIMIT), None)
    if bad is not None:
        shown = str(bad) if len(str(bad)) <= 30 else str(bad)[:27] + "..."
        raise UsageError(f"--seeds: seed {shown} is out of range; seeds must be integers in "
                         f"[0, 2**64 - 1]")
    return list(dict.fromkeys(seeds))


def parse_baselines(text: str) -> list[str]:
    names: list[str] = []
    for raw in (text or "").split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name in ALIASES:
            names.extend(ALIASES[name])
        elif name in BASELINES:
            names.append(name)
        else:
            raise UsageError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)} "
                             f"or the aliases {', '.join(ALIASES)}")
    return list(dict.fromkeys(names))


# =========================================================================== controllers
def load_controller(path: str, device: str = "cpu"):
    """:func:`agents.checkpoint.load_controller` (a module-level hook, so tests can swap it)."""
    from agents.checkpoint import load_controller as _load

    return _load(path, device=device)


_CONTROLLERS: dict[str, Any] = {}  # path -> loaded controller (per process)


def _get_controller(path: str, device: str):
    if path not in _CONTROLLERS:
        _CONTROLLERS[path] = load_controller(path, device)
    return _CONTROLLERS[path]


def controller_trained_task(ctrl) -> str | None:
    return ctrl.trained_task  # agents.checkpoint.Controller.trained_task


def controller_env_kwargs(ctrl) -> dict:
    """The observation/action settings of the env a controller was trained in."""
    return ctrl.env_kwargs()  # agents.checkpoint.Controller.env_kwargs


def controller_validation_size(ctrl) -> int:
    """Validation examples a controller's features need (0 if none)."""
    return ctrl.validation_size  # agents.checkpoint.Controller.validation_size


# =========================================================================== one run
def _fmt(x: float) -> str:
    return f"{x:.3g}"


def make_spec(family: str, seed: int, param: Any = None, optimizer: str = "sgd",
              policy: dict | None = None, env: dict | None = None, label: str | None = None) -> dict:
    """A JSON-serialisable description of one run; ``key`` names its file in ``runs/``."""
    if isinstance(param, float):
        param = float(_fmt(param))
    ptxt = "" if param is None else "_" + ("-".join(_fmt(p) for p in param)
                                          if isinstance(param, (list, tuple)) else
                                          (_fmt(param) if isinstance(param, float) else str(param)))
    key = f"{family}{ptxt}_s{seed}"
    return {"key": key, "family": family, "param": param, "seed": int(seed), "optimizer": optimizer,
            "policy": policy or {"kind": "constant", "lr": param},
            "env": dict(BASELINE_ENV) if env is None else dict(env),
            "label": label or LABELS.get(family, family)}


def make_policy(policy: dict, device: str):
    from agents import baselines as B

    kind = policy["kind"]
    if kind == "constant":
        return B.ConstantLR(policy["lr"])
    if kind == "cosine":
        return B.CosineLR(policy["peak"])
    if kind == "vsgd":
        return B.VSGD()
    if kind == "hd":
        return B.HypergradientSGD(policy["beta"], lr0=policy["lr0"])
    if kind == "feature":
        return B.FeatureController(tuple(policy["theta"]), lr0=policy["lr0"])
    if kind == "clipped":
        return B.ClippedSGD(policy["lr"], policy["max_norm"])
    if kind == "gradnorm":
        return B.GradNormRule(*policy["constants"])
    if kind == "controller":
        return B.ControllerPolicy(_get_controller(policy["path"], device))
    raise ValueError(f"unknown policy kind {kind!r}")


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, list):
        return [_finite_or_none(v) for v in x]
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    return x


def _write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temp file + fsync + rename; the temp file is removed if the write
    fails, e.g. on a full disk): a killed sweep never leaves half a run file."""
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
        res = run_episode(env, make_policy(spec["policy"], common["device"]), spec["seed"],
                          trace=common["trace"])
        curves = asdict(res)
        finished = not res.diverged and res.steps == common["steps"] and res.train_loss
        final = {k: (curves[k][-1] if finished and curves[k] else None)
                 for k in ("train_loss", "test_loss", "test_accuracy")}
        if finished and not all(v is None or math.isfinite(v) for v in final.values()):
            finished = False
        record.update(status="ok" if finished else "diverged", message="", final=final, curves=curves)
        if not finished:
            record["final"] = dict.fromkeys(final)
    except Exception as exc:  # a broken run is recorded, never stops the sweep
        record.update(status="error", message=f"{type(exc).__name__}: {exc}",
                      final={"train_loss": None, "test_loss": None, "test_accuracy": None}, curves={})
    record["wall_time"] = time.perf_counter() - t0
    if out_dir is not None:
        _write_json(Path(out_dir) / "runs" / f"{spec['key']}.json", record)
    return record


def code_fingerprint() -> str:
    """A hash of the code a run's outcome depends on (``envs/*.py``, ``agents/*.py``): part of
    every run's settings, so a rerun never resumes runs made by other code (issue 13: a table
    assembled from cached runs of earlier code did not match the code it was published with)."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha1()
    for path in sorted([*root.glob("envs/*.py"), *root.glob("agents/*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _load_finished(path: Path, spec: dict, common: dict) -> dict | None:
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


class Sweep:
    """Runs specs (resuming finished ones from ``out/runs``), inline or in worker processes."""

    def __init__(self, common: dict, out_dir: Path, jobs: int, bar) -> None:
        self.common, self.out_dir, self.jobs, self.bar = common, out_dir, jobs, bar
        self.records: dict[str, dict] = {}
        self.pool = None
        if jobs > 1:
            self.pool = cf.ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker,
                                               mp_context=multiprocessing.get_context("spawn"))
        self.resumed = 0

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def run(self, specs: Iterable[dict]) -> list[dict]:
        specs = [s for s in specs if s["key"] not in self.records]
        specs = list({s["key"]: s for s in specs}.values())
        self.bar.total = (self.bar.total or 0) + len(specs)
        self.bar.refresh()
        todo = []
        for spec in specs:
            done = _load_finished(self.out_dir / "runs" / f"{spec['key']}.json", spec, self.common)
            if done is not None:
                self.records[spec["key"]] = done
                self.resumed += 1
                self.bar.update(1)
            else:
                todo.append(spec)
        if self.pool is None:
            for spec in todo:
                self.bar.set_postfix_str(spec["key"])
                self._done(run_spec(spec, self.common, str(self.out_dir)))
        else:
            futures = {self.pool.submit(run_spec, s, self.common, str(self.out_dir)): s for s in todo}
            for fut in cf.as_completed(futures):
                try:
                    rec = fut.result()
                except OSError:  # writing the run's file failed (full disk, ...): stop the sweep
                    raise
                except Exception as exc:  # a worker died (e.g. killed): record, keep going
                    spec = futures[fut]
                    rec = {"key": spec["key"], "spec": spec, "common": self.common, "status": "error",
                           "message": f"worker failed: {type(exc).__name__}: {exc}", "curves": {},
                           "final": {"train_loss": None, "test_loss": None, "test_accuracy": None},
                           "wall_time": float("nan")}
                self._done(rec)
        return [self.records[s["key"]] for s in specs]

    def _done(self, record: dict) -> None:
        self.records[record["key"]] = record
        self.bar.update(1)


# =========================================================================== selection
def final_train(record: dict) -> float:
    """Final full training loss, ``inf`` for a diverged or failed run."""
    v = (record.get("final") or {}).get("train_loss")
    return float(v) if record.get("status") == "ok" and v is not None else math.inf


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


# =========================================================================== summary and table
def _stats(values: list[float | None]) -> tuple[float, float, int]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.nan, math.nan, 0
    return float(np.mean(vals)), float(np.std(vals)), len(vals)


#: a run has collapsed when it diverged or its final full training loss is at least this fraction
#: of its initial one (a classifier back at chance level, a model that did not train)
COLLAPSE_FRACTION = 0.9


def collapsed(record: dict) -> bool:
    """Diverged, failed, or ended at >= COLLAPSE_FRACTION of its initial full training loss."""
    if record.get("status") != "ok":
        return True
    curve = (record.get("curves") or {}).get("train_loss") or []
    final = (record.get("final") or {}).get("train_loss")
    return bool(curve) and final is not None and final >= COLLAPSE_FRACTION * curve[0]


def summarize(label: str, protocol: str, records: list[dict], param: Any = None, param_name: str = "") -> dict:
    """One table row: mean +/- std over seeds of the final losses and accuracy, the median and
    per-seed final training losses (``None`` for a diverged seed) and the collapse count."""
    row = {"method": label, "protocol": protocol, "param_name": param_name,
           "param": list(param) if isinstance(param, tuple) else param,
           "seeds": len(records), "diverged": sum(r["status"] == "diverged" for r in records),
           "errors": sum(r["status"] == "error" for r in records),
           "messages": sorted({r.get("message", "") for r in records if r.get("message")}),
           "keys": [r["key"] for r in records]}
    for k in ("train_loss", "test_loss", "test_accuracy"):
        m, s, n = _stats([(r.get("final") or {}).get(k) for r in records])
        row[f"{k}_mean"], row[f"{k}_std"] = m, s
    finals = [(r.get("final") or {}).get("train_loss") for r in records]
    row["train_loss_per_seed"] = finals
    row["seed_list"] = [r["spec"]["seed"] for r in records]
    # a diverged seed counts as +inf in the median (it is the worst outcome, not a missing one)
    row["train_loss_median"] = float(np.median([math.inf if v is None else v for v in finals])) if finals else math.nan
    row["collapsed"] = sum(collapsed(r) for r in records)
    row["wall_time"] = float(np.mean([r["wall_time"] for r in records])) if records else math.nan
    return row


def _pm(m: float, s: float, pct: bool = False) -> str:
    if not math.isfinite(m):
        return "—"
    if pct:
        return f"{100 * m:.1f} ± {100 * s:.1f}"
    return f"{m:.2e} ± {s:.1e}"


def _param_text(row: dict) -> str:
    p = row["param"]
    if p is None:
        return ""
    if isinstance(p, list):
        return f"{row['param_name']}=(" + ", ".join(_fmt(v) for v in p) + ")"
    return f"{row['param_name']}={_fmt(p)}" if row["param_name"] != "lr" else _fmt(p)


def markdown_table(rows: list[dict], classification: bool) -> str:
    head = ["method", "protocol", "lr / tuned", "final train loss", "final test loss"]
    if classification:
        head.append("test acc. %")
    head += ["median train loss", "collapsed", "diverged", "s / run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        bad = r["diverged"] + r["errors"]
        cells = [r["method"], r["protocol"], _param_text(r),
                 _pm(r["train_loss_mean"], r["train_loss_std"]), _pm(r["test_loss_mean"], r["test_loss_std"])]
        if classification:
            cells.append(_pm(r["test_accuracy_mean"], r["test_accuracy_std"], pct=True))
        median = r.get("train_loss_median", math.nan)
        cells += [f"{median:.2e}" if math.isfinite(median) else "diverged",
                  f"{r.get('collapsed', 0)}/{r['seeds']}",
                  f"{bad}/{r['seeds']}" + (" (error)" if r["errors"] else ""), f"{r['wall_time']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_seed_table(rows: list[dict]) -> str:
    """Final full training loss of every seed of every row (``diverged`` for a diverged seed)."""
    seeds = sorted({s for r in rows for s in r.get("seed_list", [])})
    lines = ["| method | " + " | ".join(str(s) for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    for r in rows:
        values = dict(zip(r.get("seed_list", []), r.get("train_loss_per_seed", [])))
        cells = [("diverged" if values.get(s) is None else f"{values[s]:.2e}") if s in values else ""
                 for s in seeds]
        lines.append(f"| {r['method']} ({r['protocol']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_table(grids: dict[str, dict[Any, float]]) -> str:
    lines = ["| method | parameter | mean final train loss |", "|---|---|---|"]
    for name, means in grids.items():
        best = min(means, key=lambda p: means[p])
        for p in sorted(means, key=lambda q: (q if not isinstance(q, tuple) else q)):
            v = means[p]
            ptxt = "(" + ", ".join(_fmt(x) for x in p) + ")" if isinstance(p, tuple) else _fmt(p)
            vtxt = f"{v:.3e}" if math.isfinite(v) else "diverged"
            lines.append(f"| {name} | {ptxt}{' **(best)**' if p == best else ''} | {vtxt} |")
    return "\n".join(lines)


# =========================================================================== figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_STYLES = ["-", "--", "-.", ":"]


def _style(i: int) -> dict:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {"color": cmap(i % 10), "linestyle": _STYLES[(i // 10) % len(_STYLES)]}


def _aggregate(records: list[dict], key: str, x_key: str = "eval_steps"):
    """(x, mean, min, max) over the seeds that finished; ``None`` if none did."""
    curves = [r["curves"] for r in records if r["status"] == "ok" and r["curves"].get(key)]
    if not curves:
        return None
    n = min(len(c[key]) for c in curves)
    y = np.array([[np.nan if v is None else v for v in c[key][:n]] for c in curves], dtype=float)
    x = np.arange(n) if x_key is None else np.array(curves[0][x_key][:n])
    return x, np.nanmean(y, axis=0), np.nanmin(y, axis=0), np.nanmax(y, axis=0)


def plot_losses(rows: list[dict], records: dict[str, dict], path: Path, title: str) -> None:
    """Paper Figures 2/3: training and test loss vs mini-batches, mean over seeds, min-max band."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharex=True)
    for i, row in enumerate(rows):
        recs = [records[k] for k in row["keys"]]
        for ax, key in zip(axes, ("train_loss", "test_loss")):
            agg = _aggregate(recs, key)
            label = f"{row['method']} ({_param_text(row)})" if _param_text(row) else row["method"]
            if agg is None:
                ax.plot([], [], label=label + " — diverged", **_style(i))
                continue
            x, m, lo, hi = agg
            ax.plot(x, m, label=label, lw=1.6, **_style(i))
            ax.fill_between(x, lo, hi, alpha=0.15, color=_style(i)["color"], lw=0)
    for ax, name in zip(axes, ("training loss", "test loss")):
        if any(len(line.get_ydata()) for line in ax.get_lines()):  # log scale needs data (all may diverge)
            ax.set_yscale("log")
        ax.set_xlabel("mini-batches")
        ax.set_ylabel(name + " (full set)")
        ax.set_title(name)
        ax.grid(True, which="major", alpha=0.3)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_learning_rates(rows: list[dict], records: dict[str, dict], path: Path, title: str) -> None:
    """The learning rate each adaptive method / controller used, per update (geometric mean
    over seeds; lr-free optimizers show their effective step size d * lr)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 5))
    for i, row in enumerate(rows):
        recs = [records[k] for k in row["keys"]]
        curves = [r["curves"]["effective_lr"] for r in recs if r["status"] == "ok" and r["curves"].get("effective_lr")]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        y = np.log(np.clip(np.array([c[:n] for c in curves], dtype=float), 1e-12, None))
        x = np.arange(1, n + 1)
        ax.plot(x, np.exp(y.mean(0)), label=row["method"], lw=1.5, **_style(i))
        ax.fill_between(x, np.exp(y.min(0)), np.exp(y.max(0)), alpha=0.12, color=_style(i)["color"], lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("mini-batches")
    ax.set_ylabel("learning rate (effective step size for lr-free)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _regression_data(common: dict):
    from envs.primary import PrimaryTrainer

    tr = PrimaryTrainer(common["task"], device="cpu", validation_size=common["validation_size"],
                        data_root=common["data_root"])
    return tr.x_train.double(), tr.y_train.double().reshape(-1)


def plot_trajectories(rows: list[dict], records: dict[str, dict], common: dict, seeds: list[int],
                      path: Path) -> None:
    """Paper Figure 4: the two weights' trajectories over the training-loss contours, one panel
    per seed (different w0), one line per method."""
    import torch

    plt = _plt()
    x, y = _regression_data(common)
    w_star = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.reshape(-1).numpy()
    n = len(y)
    A, b, c = (x.T @ x / n).numpy(), (x.T @ y / n).numpy(), float(y @ y / n)
    panels = seeds[:3]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.8), squeeze=False)
    for ax, seed in zip(axes[0], panels):
        trajs = []
        for i, row in enumerate(rows):
            rec = next((records[k] for k in row["keys"] if records[k]["spec"]["seed"] == seed), None)
            if rec is None or not rec["curves"].get("weights"):
                continue
            w = np.array(rec["curves"]["weights"], dtype=float)
            w = w[np.all(np.isfinite(w), axis=1)]
            trajs.append((i, row, w))
        pts = np.concatenate([w for _, _, w in trajs] + [w_star[None]], axis=0)
        lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
        pad = 0.15 * (hi - lo) + 0.1
        g0, g1 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200), np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200)
        W0, W1 = np.meshgrid(g0, g1)
        # mean squared error as a quadratic form: w^T A w - 2 b^T w + c (no n x grid tensor)
        W = np.stack([W0.ravel(), W1.ravel()], 1)
        loss = (np.einsum("ki,ij,kj->k", W, A, W) - 2 * W @ b + c).reshape(W0.shape)
        levels = np.geomspace(loss.min() * 1.002 + 1e-9, loss.max(), 16)
        ax.contourf(W0, W1, loss, levels=levels, cmap="Blues_r", alpha=0.35)
        cs = ax.contour(W0, W1, loss, levels=levels, colors="0.45", linewidths=0.6)
        ax.clabel(cs, cs.levels[::3], fontsize=6, fmt="%.2g")
        for i, row, w in trajs:
            st = _style(i)
            ax.plot(w[:, 0], w[:, 1], lw=1.0, alpha=0.85, label=row["method"], **st)
            ax.plot(w[0, 0], w[0, 1], "o", color=st["color"], ms=4)
        ax.plot(*w_star, marker="*", color="crimson", ms=13, ls="none", label="least squares w*")
        ax.set_xlim(g0[0], g0[-1])
        ax.set_ylim(g1[0], g1[-1])
        ax.set_xlabel("w[0]")
        ax.set_ylabel("w[1]")
        ax.set_title(f"seed {seed}")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle("Optimisation trajectories over the training-loss contours (paper Fig. 4)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_disagreement(rows: list[dict], records: dict[str, dict], seed: int, path: Path) -> None:
    """Paper Figure 5: gradient disagreement ||g_batch - g_full||, training and test loss over
    time, one run (the first evaluation seed) per method."""
    plt = _plt()
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for i, row in enumerate(rows):
        rec = next((records[k] for k in row["keys"] if records[k]["spec"]["seed"] == seed), None)
        if rec is None or not rec["curves"].get("disagreement"):
            continue
        c, st = rec["curves"], _style(i)
        d = np.array([np.nan if v is None else v for v in c["disagreement"]], dtype=float)
        x = np.asarray(c.get("trace_steps") or np.arange(len(d)))[:len(d)]  # update count of each entry
        axes[0].plot(x, d, lw=0.6, alpha=0.35, color=st["color"])
        k = max(1, len(d) // 50)  # moving average, so the trend is readable under the noise
        axes[0].plot(x[k - 1:], np.convolve(d, np.ones(k) / k, mode="valid"),
                     lw=1.6, label=row["method"], **st)
        for ax, key in zip(axes[1:], ("train_loss", "test_loss")):
            ax.plot(c["eval_steps"][:len(c[key])], c[key], lw=1.6, label=row["method"], **st)
    for ax, name in zip(axes, ("gradient disagreement ||g_batch - g_full||", "training loss", "test loss")):
        ax.set_yscale("log")
        ax.set_ylabel(name, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("mini-batches")
    fig.suptitle(f"Gradient disagreement and losses, seed {seed} (paper Fig. 5)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# =========================================================================== RL policy evaluation
def policy_evaluation(ctrl, task: str, seed: int, episodes: int, steps: int, device: str,
                      data_root: str | None) -> tuple[float, float, int]:
    """Mean and std of the episode return of ``ctrl`` over ``episodes`` episodes, in an env with
    the controller's own training settings (reward included) on ``task``, via SB3's
    ``evaluate_policy``. Returns ``(mean, std, episode_length)``."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    from envs.learning_rate_env import LearningRateEnv

    kw = ctrl.env_kwargs(include_reward=True)
    kw.setdefault("episode_length", steps)
    env = Monitor(LearningRateEnv(task=task, seed=seed, device=device, data_root=data_root, **kw))
    try:
        mean, std = evaluate_policy(ctrl, env, n_eval_episodes=episodes, deterministic=True, warn=False)
    finally:
        env.close()
    return float(mean), float(std), int(kw["episode_length"])


# =========================================================================== main
def _fail(parser: argparse.ArgumentParser, msg: str) -> None:
    parser.exit(2, f"{parser.prog}: error: {msg}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from agents.rundir import RunDirError, describe_os_error, remove_temp_files

    state: dict = {}
    try:
        return _main(args, parser, state)
    except UsageError as exc:
        _fail(parser, str(exc))
    except RunDirError as exc:
        message = str(exc)
    except OSError as exc:  # a full disk, a read-only file system, ...: one line, no traceback
        message = describe_os_error(exc, state.get("out", args.out or "the results directory"))
    finally:
        if state.get("lock") is not None:
            state["lock"].release()
    if state.get("out") is not None:
        remove_temp_files(state["out"], recursive_into=("runs",))
        message += f"; finished runs are kept in {state['out'] / 'runs'}, rerun the command to resume"
    parser.exit(1, f"{parser.prog}: error: {message}\n")
    return 1


def _main(args: argparse.Namespace, parser: argparse.ArgumentParser, state: dict | None = None) -> int:
    import importlib.util

    import torch
    from tqdm.auto import tqdm

    from envs.primary import resolve_device
    from envs.tasks import TASKS, DatasetUnavailableError, make_task

    torch.set_num_threads(1)
    seeds = parse_seeds(args.seeds)
    names = parse_baselines(args.baselines)
    if args.task not in TASKS and ":" not in args.task:
        raise UsageError(f"unknown task {args.task!r}; choose one of: {', '.join(TASKS)}, "
                         f"or 'package.module:function' returning an envs.Task")
    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    if args.eval_every < 1:
        raise UsageError(f"--eval-every must be >= 1, got {args.eval_every}")
    if not args.divergence_factor > 1:
        raise UsageError(f"--divergence-factor must be > 1, got {args.divergence_factor}")
    if args.episodes < 0:
        raise UsageError(f"--episodes must be >= 0, got {args.episodes}")
    try:
        device = str(resolve_device(args.device))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        task = make_task(args.task, data_root=args.data_root)
    except (DatasetUnavailableError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    # ---- controllers: load now, so a bad file is a clear error before any work starts
    controllers = []
    for path in args.checkpoints:
        if not os.path.exists(path):
            raise UsageError(f"checkpoint {path!r} does not exist")
        try:
            ctrl = load_controller(path, device)
        except ImportError as exc:
            raise UsageError(f"cannot load checkpoint {path!r}: {exc}") from None
        except (ValueError, OSError, KeyError, RuntimeError) as exc:  # CheckpointError is a ValueError
            raise UsageError(f"cannot read checkpoint {path!r}: {exc}") from None
        path = os.path.abspath(path)
        _CONTROLLERS[path] = ctrl
        controllers.append((path, ctrl))
    if not names and not controllers:
        raise UsageError("nothing to evaluate: give checkpoints and/or --baselines")

    notes: list[str] = []
    missing = sorted({n for n in names if n in LRFREE
                      and importlib.util.find_spec(LRFREE_PACKAGES[n]) is None})
    for n in missing:
        notes.append(f"{LABELS[n]} skipped: package {LRFREE_PACKAGES[n]!r} is not installed "
                     f"(pip install -e '.[lrfree]').")
    names = [n for n in names if n not in missing]
    validation_size = max([controller_validation_size(c) for _, c in controllers] + [0])
    if validation_size:
        notes.append(f"A controller's features need a validation split: every method trains on the "
                     f"same training set with {validation_size} examples held out.")
    overlap = sorted(set(seeds) & set(FEATURE_FIT_SEEDS)) if "feature" in names else []
    if overlap:
        notes.append(f"Warning: evaluation seeds {overlap} are also the Daniel-style controller's "
                     f"fitting seeds.")

    from agents.rundir import DirectoryLock, prepare_directory, remove_temp_files

    state = {} if state is None else state
    out = prepare_directory(args.out or f"results/evaluate-{args.task}")
    state["lock"] = DirectoryLock(out, purpose="evaluate sweep").acquire()  # released by main()
    state["out"] = out
    remove_temp_files(out, recursive_into=("runs",))  # left by a sweep killed mid-write
    trace = args.task == "regression2d"
    common = {"task": args.task, "steps": args.steps, "eval_every": args.eval_every, "device": device,
              "data_root": args.data_root, "validation_size": validation_size, "trace": trace,
              "divergence_factor": args.divergence_factor, "code": code_fingerprint()}
    show_paper, show_fine = args.grid in ("paper", "both"), args.grid in ("fine", "both")

    t_start = time.perf_counter()
    bar = tqdm(total=0, desc="evaluate", unit="run", dynamic_ncols=True)
    sweep = Sweep(common, out, args.jobs, bar)
    rows: list[dict] = []
    grids: dict[str, dict] = {}
    try:
        # ---- phase 1: everything that needs no tuning result
        decade_opts = [o for o in GRID_OPTIMIZERS if o in names]
        if "cosine" in names and "sgd" not in decade_opts:
            decade_opts.append("sgd")  # cosine peaks are centred on the best decade SGD rate
        phase1 = [make_spec(o, s, lr, optimizer=o) for o in decade_opts for lr in DECADE_GRID for s in seeds]
        if "vsgd" in names:
            phase1 += [make_spec("vsgd", s, policy={"kind": "vsgd"}) for s in seeds]
        if "hd" in names:
            phase1 += [make_spec("hd", s, [lr0, b], policy={"kind": "hd", "beta": b, "lr0": lr0})
                       for lr0 in HD_LR0S for b in HD_BETAS for s in seeds]
        for n in names:
            if n in LRFREE:
                phase1 += [make_spec(n, s, LRFREE[n], optimizer=n) for s in seeds]
        clip_specs = lambda pairs: [make_spec("clipped", s, [lr, c], policy={  # noqa: E731
            "kind": "clipped", "lr": lr, "max_norm": c}, env=CAPPED_BASELINE_ENV) for lr, c in pairs for s in seeds]
        clip_decade = [(lr, c) for lr in CLIP_RATES for c in CLIP_NORMS]
        if "clipped" in names:
            phase1 += clip_specs(clip_decade)
        if "gradnorm" in names:
            from agents.baselines import GRAD_NORM_RULE_GRID

            phase1 += [make_spec("gradnorm-fit", s, list(c), policy={"kind": "gradnorm", "constants": list(c)},
                                 env=CAPPED_BASELINE_ENV)
                       for c in GRAD_NORM_RULE_GRID for s in GRAD_NORM_RULE_FIT_SEEDS]
        if "feature" in names:
            from agents.baselines import FEATURE_CONTROLLER_GRID

            phase1 += [make_spec("feature-fit", s, list(th), policy={"kind": "feature", "theta": list(th),
                                                                    "lr0": FEATURE_LR0})
                       for th in FEATURE_CONTROLLER_GRID for s in FEATURE_FIT_SEEDS]
        ctrl_specs: list[tuple[str, Any, list[dict]]] = []
        for path, ctrl in controllers:
            trained_on = controller_trained_task(ctrl)
            label = getattr(ctrl, "name", None) or Path(path).stem
            if trained_on and trained_on != args.task:
                label += f" (trained on {trained_on})"
            tag = "ctrl-" + hashlib.sha1(path.encode()).hexdigest()[:8]
            env_kw = controller_env_kwargs(ctrl)
            opt = env_kw.pop("optimizer", "sgd")
            specs = [make_spec(tag, s, None, optimizer=opt, policy={"kind": "controller", "path": path},
                               env=env_kw, label=label) for s in seeds]
            ctrl_specs.append((label, ctrl, specs))
            phase1 += specs
        sweep.run(phase1)
        R = sweep.records

        def by(family: str, params: Iterable | None = None, seed_list: Sequence[int] = seeds) -> list[dict]:
            keys = [make_spec(family, s, p)["key"] for p in (params if params is not None else [None])
                    for s in seed_list]
            return [R[k] for k in keys if k in R]

        # ---- phase 2: fine grids, cosine peaks, the fitted feature controller
        best_decade = {}
        for o in decade_opts:
            best_decade[o], _, grids[f"{LABELS[o]} (decade grid)"] = select_best(by(o, DECADE_GRID))
        fine_lrs = {o: sorted({float(_fmt(best_decade[o] * m)) for m in FINE_MULTIPLIERS} | set(DECADE_GRID))
                    for o in FINE_OPTIMIZERS if o in names and show_fine}
        phase2 = [make_spec(o, s, lr, optimizer=o) for o, lrs in fine_lrs.items() for lr in lrs for s in seeds]
        cos_peaks = []
        if "cosine" in names:
            cos_peaks = sorted({float(_fmt(best_decade["sgd"] * m)) for m in COSINE_MULTIPLIERS})
            phase2 += [make_spec("cosine", s, p, policy={"kind": "cosine", "peak": p}) for p in cos_peaks for s in seeds]
        clip_fine: list[tuple[float, float]] = []
        if "clipped" in names:
            (lr0, c0), _, grids["SGD, clipped (decade grid: lr, max_norm)"] = select_best(by("clipped", map(list, clip_decade)))
            clip_fine = sorted({(float(_fmt(lr0 * m)), float(_fmt(c0 * n))) for m in (1.0,) + FINE_MULTIPLIERS
                                for n in CLIP_NORM_MULTIPLIERS} | set(clip_decade))
            phase2 += clip_specs([p for p in clip_fine if p not in clip_decade])
        rule = None
        if "gradnorm" in names:
            from agents.baselines import GRAD_NORM_RULE_GRID

            fit = [r for c in GRAD_NORM_RULE_GRID for r in by("gradnorm-fit", [list(c)], GRAD_NORM_RULE_FIT_SEEDS)]
            rule, _, grids["Gradient-norm rule (fit on training seeds)"] = select_best(fit)
            phase2 += [make_spec("gradnorm", s, list(rule), policy={"kind": "gradnorm", "constants": list(rule)},
                                 env=CAPPED_BASELINE_ENV) for s in seeds]
        theta = None
        if "feature" in names:
            from agents.baselines import FEATURE_CONTROLLER_GRID

            fit = [r for th in FEATURE_CONTROLLER_GRID for r in by("feature-fit", [list(th)], FEATURE_FIT_SEEDS)]
            theta, _, grids["Daniel-style (fit on training seed 0)"] = select_best(fit)
            phase2 += [make_spec("feature", s, list(theta), policy={"kind": "feature", "theta": list(theta),
                                                                     "lr0": FEATURE_LR0}) for s in seeds]
        sweep.run(phase2)
        R = sweep.records
    finally:
        sweep.close()
        bar.close()
    wall = time.perf_counter() - t_start

    # ---- rows of the summary table
    for o in GRID_OPTIMIZERS:
        if o in names and show_paper:
            rows.append(summarize(LABELS[o], "decade grid (paper)", by(o, [best_decade[o]]), best_decade[o], "lr"))
    if "vsgd" in names:
        rows.append(summarize("vSGD", "no tuning (paper)", by("vsgd")))
    if "feature" in names:
        rows.append(summarize("Daniel-style", "fit on train seeds (paper)", by("feature", [list(theta)]),
                              tuple(theta), "theta"))
    for o, lrs in fine_lrs.items():
        best, _, grids[f"{LABELS[o]} (fine grid)"] = select_best(by(o, lrs))
        rows.append(summarize(LABELS[o], "fine grid", by(o, [best]), best, "lr"))
    if clip_fine:
        grid = clip_fine if show_fine else clip_decade
        best, _, grids["SGD, clipped (lr, max_norm)"] = select_best(by("clipped", map(list, grid)))
        rows.append(summarize(LABELS["clipped"], "fine grid" if show_fine else "decade grid",
                              by("clipped", [list(best)]), best, "lr, max_norm"))
    if rule is not None:
        rows.append(summarize(LABELS["gradnorm"], "fit on train seeds", by("gradnorm", [list(rule)]),
                              tuple(rule), "lr0, lr1, cap"))
    if cos_peaks:
        best, _, grids["SGD cosine (peak)"] = select_best(by("cosine", cos_peaks))
        rows.append(summarize("SGD cosine", "tuned peak", by("cosine", [best]), best, "peak"))
    if "hd" in names:
        hd_grid = [[lr0, b] for lr0 in HD_LR0S for b in HD_BETAS]
        best, _, grids["SGD-HD (lr0, beta)"] = select_best(by("hd", hd_grid))
        rows.append(summarize("SGD-HD", "tuned lr0 and beta", by("hd", [list(best)]), best, "lr0, beta"))
    for n in names:
        if n in LRFREE:
            rows.append(summarize(LABELS[n], "lr-free", by(n, [LRFREE[n]]), LRFREE[n], "lr"))
    for label, ctrl, specs in ctrl_specs:
        rows.append(summarize(label, "controller", [R[s["key"]] for s in specs]))

    # ---- RL policy evaluation of the checkpoints
    rl_rows = []
    if args.episodes > 0:
        for label, ctrl, _ in ctrl_specs:
            try:
                m, s, length = policy_evaluation(ctrl, args.task, seeds[0], args.episodes, args.steps,
                                                 device, args.data_root)
                rl_rows.append({"method": label, "episodes": args.episodes, "episode_length": length,
                                "return_mean": m, "return_std": s})
            except Exception as exc:  # report, never lose the sweep's results
                rl_rows.append({"method": label, "episodes": args.episodes, "error": f"{type(exc).__name__}: {exc}"})

    # ---- outputs
    figures = write_figures(rows, R, common, seeds, out, args.task, ctrl_specs)
    text = write_report(args, rows, grids, rl_rows, notes, figures, task.classification, seeds, wall, sweep, out)
    print(text)
    return 0


def write_figures(rows, R, common, seeds, out: Path, task: str, ctrl_specs) -> list[str]:
    figures = []
    paper_rows = [r for r in rows if "paper" in r["protocol"] or r["protocol"] == "controller"]
    other_rows = [r for r in rows if r not in paper_rows or r["protocol"] == "controller"]
    if paper_rows:
        plot_losses(paper_rows, R, out / "loss_paper_protocol.png",
                    f"{task}: the paper's protocol (decade-grid baselines, vSGD, Daniel-style)")
        figures.append("loss_paper_protocol.png")
    if any(r["protocol"] != "controller" for r in other_rows):
        plot_losses(other_rows, R, out / "loss_tuned.png",
                    f"{task}: fine-tuned and learning-rate-free baselines")
        figures.append("loss_tuned.png")
    adaptive = [r for r in rows if r["protocol"] in ("no tuning (paper)", "fit on train seeds (paper)",
                                                     "tuned peak", "tuned beta", "lr-free", "controller")]
    if adaptive:
        plot_learning_rates(adaptive, R, out / "learning_rates.png",
                            f"{task}: learning rate chosen over time (mean over seeds, min-max band)")
        figures.append("learning_rates.png")
    if common["trace"]:
        pick = [r for r in rows if (r["method"] in ("SGD", "Adam") and r["protocol"] == "decade grid (paper)")
                or r["method"] == "vSGD" or r["protocol"] == "controller"]
        pick = pick or rows[:3]
        if pick:
            plot_trajectories(pick, R, common, seeds, out / "fig4_trajectories.png")
            figures.append("fig4_trajectories.png")
        sgd = [r for r in rows if r["method"] == "SGD"][:1]
        ctrls = [r for r in rows if r["protocol"] == "controller"]
        others = ctrls or [r for r in rows if r["method"] in ("vSGD", "Adam") and r not in sgd][:2]
        if sgd or others:
            plot_disagreement(sgd + others, R, seeds[0], out / "fig5_disagreement.png")
            figures.append("fig5_disagreement.png")
    return figures


def write_report(args, rows, grids, rl_rows, notes, figures, classification, seeds, wall, sweep, out: Path) -> str:
    cmd = "python evaluate.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[0].endswith(
        ("evaluate.py", "lrrl-evaluate")) else "evaluate.main(...)"
    n_runs = len(sweep.records)
    parts = [f"# Evaluation on `{args.task}`", "",
             f"{args.steps} updates per run, seeds {seeds} (held-out evaluation seeds), full train/test "
             f"loss every {args.eval_every} updates. Mean ± std over seeds of the final full-set losses. "
             f"Grid baselines are tuned by mean final training loss on these same seeds (the paper's "
             f"protocol, which favours the baselines). A diverged seed counts as infinite loss in "
             f"the grid search; the 'diverged' column counts diverged seeds of the reported setting.",
             "", f"Command: `{cmd}`  ", f"Runs: {n_runs} ({sweep.resumed} resumed from {out / 'runs'}), "
             f"wall time {wall:.0f} s.", ""]
    parts += [f"- {n}" for n in notes] + ([""] if notes else [])
    parts += ["## Summary", "", markdown_table(rows, classification), "",
              f"'collapsed': diverged, or final training loss >= {COLLAPSE_FRACTION} x the initial one.", "",
              "## Final training loss per seed", "", per_seed_table(rows), ""]
    errors = [m for r in rows for m in r["messages"]]
    if errors:
        parts += ["Errors: " + "; ".join(sorted(set(errors))), ""]
    if grids:
        parts += ["## Grid searches", "", grid_table(grids), ""]
    if rl_rows:
        parts += ["## Policy evaluation (RL return, SB3 evaluate_policy)", "",
                  "| controller | episodes | episode length | return |", "|---|---|---|---|"]
        for r in rl_rows:
            ret = r.get("error") or f"{r['return_mean']:.4g} ± {r['return_std']:.2g}"
            parts.append(f"| {r['method']} | {r['episodes']} | {r.get('episode_length', '')} | {ret} |")
        parts.append("")
    if figures:
        parts += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    text = "\n".join(parts)
    (out / "results.md").write_text(text)

    cols = ["method", "protocol", "param_name", "param", "seeds", "diverged", "errors",
            "train_loss_mean", "train_loss_std", "test_loss_mean", "test_loss_std",
            "test_accuracy_mean", "test_accuracy_std", "wall_time"]
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "param": json.dumps(r["param"])})
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "family", "label", "param", "seed", "status", "step", "train_loss", "test_loss",
                    "test_accuracy"])
        for key, rec in sorted(sweep.records.items()):
            c, sp = rec.get("curves") or {}, rec["spec"]
            for i, step in enumerate(c.get("eval_steps", [])):
                acc = c["test_accuracy"][i] if i < len(c.get("test_accuracy", [])) else ""
                w.writerow([key, sp["family"], sp["label"], json.dumps(sp["param"]), sp["seed"], rec["status"],
                            step, c["train_loss"][i], c["test_loss"][i], acc])
    _write_json(out / "results.json", {"task": args.task, "steps": args.steps, "seeds": seeds,
                                       "command": cmd, "classification": classification,
                                       "notes": notes, "summary": rows,
                                       "grids": {k: {json.dumps(p): v for p, v in g.items()} for k, g in grids.items()},
                                       "policy_evaluation": rl_rows, "figures": figures,
                                       "runs": sweep.records})
    return text


if __name__ == "__main__":
    sys.exit(main())
