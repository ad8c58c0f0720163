"""Scoring on the task suite: every method on every instance of a split, relative to tuned SGD.

``evaluate.py --suite test`` (or ``train``) is :func:`run_suite`. For each family of the split
(:mod:`envs.suite`) and each of the first ``instances`` scoring instances (seeds 1000, 1001, ...;
the instance's primary seed is its instance seed), the one tuning protocol
(:func:`lrrl.protocol.evaluate_methods`) runs the baselines and controllers on that
instance for its own horizon, with its grids tuned on that instance (as the protocol does: it
favours the baselines), and the random policy runs through the same sweep. Every run lands in
``OUT/instances/FAMILY@SEED/runs`` (the sweep's files), so an interrupted suite resumes where it
stopped, and each instance keeps its own per-task report (``results.md`` there).

The score (:func:`ratio`): per instance, a method's final full training loss divided by that of
SGD tuned on the fine grid for the same instance (and the same for the test loss). A collapsed
run (diverged, failed, or ended at >= 0.9 of its initial training loss:
:func:`lrrl.stats.collapsed`) scores :data:`FAILED_RATIO` = 100, and no ratio is worse
than that, so one failure shows in the aggregate but cannot dominate it without bound (the rule of
MLCommons AlgoPerf's self-tuning ruleset). Aggregates over the split (:func:`aggregate`): the
geometric mean of the ratios over all instances (lower is better; 1 = as good as tuned SGD), the
number of collapses, the interquartile mean (IQM) of the ratios with a 95% stratified-bootstrap
confidence interval, and a performance profile (the fraction of instances with ratio <= tau),
both from ``rliable`` (families are its tasks, instances its runs; its bootstrap, not ours).

Methods (:data:`SUITE_BASELINES`, the default; names as ``--baselines`` takes them):
``random`` (a log-uniform random rate in [1e-5, 1] every step: the random policy of the default
env), ``sgd`` (tuned: the fine grid; constant defaults 0.01 and 0.1 read from its decade grid),
``adam`` (tuned, and the default 1e-3 from its grid), ``clipped`` (rate and threshold tuned),
and ``lrfree`` (schedule-free SGD and AdamW, Prodigy, D-Adaptation SGD and Adam at their
published defaults). DoG is not included: no maintained package of it is installed.
Any baseline of :mod:`lrrl.methods` may be added; ``sgd`` is always run (the reference).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from lrrl import methods as M
from lrrl.config import DEFAULT_BATCH, EvaluationSettings
from lrrl.stats import collapsed

#: the score of a collapsed or diverged run, and the worst any run can score
FAILED_RATIO = 100.0
#: the reference methods of the suite (``random`` is the suite's own; the rest are protocol baselines)
SUITE_BASELINES = ("random", "sgd", "adam", "clipped", "lrfree")
#: the reference every ratio is relative to
REFERENCE = "SGD tuned"
#: constant defaults read from the decade grids: (label, grid family, rate)
DEFAULT_RATES = (("SGD 0.01", "sgd", 0.01), ("SGD 0.1", "sgd", 0.1), ("Adam 1e-3", "adam", 1e-3))
#: thresholds of the performance profile: fraction of instances with ratio <= tau
PROFILE_TAUS = (0.1, 0.5, 1.0, 2.0, 10.0)
RANDOM_RANGE = (1e-5, 1.0)
#: full train/test loss measurements per run (at 0 and every horizon / EVAL_POINTS updates)
EVAL_POINTS = 5


def parse_suite_baselines(text: str) -> tuple[list[str], bool]:
    """``"random,sgd,lrfree"`` -> (protocol baseline names with ``sgd`` always included, whether
    the random policy runs); ``ValueError`` for an unknown name."""
    names = [n.strip().lower() for n in (text or "").split(",") if n.strip()]
    random = "random" in names
    protocol = M.parse_baselines(",".join(n for n in names if n != "random"))
    if "sgd" not in protocol:
        protocol.insert(0, "sgd")  # the reference of every ratio
    return protocol, random


@dataclass
class SuiteSettings:
    """What :func:`run_suite` runs (``evaluate.py --suite`` flags)."""

    split: str = "test"
    """``train`` or ``test``: which families (:func:`envs.suite.split_families`)."""
    families: list[str] | None = None
    """A subset of the split's families (default: all of them)."""
    instances: int = 3
    """Scoring instances per family (seeds 1000, 1001, ...)."""
    baselines: str = ",".join(SUITE_BASELINES)
    """Baselines, comma-separated (``random`` plus names/aliases of :mod:`lrrl.methods`)."""
    jobs: int = 1
    """Worker processes (``--backend local``)."""
    batch: int = DEFAULT_BATCH
    """Runs trained side by side in one vector env (:class:`lrrl.sweep.Sweep`)."""
    device: str = "cpu"
    """Device of the primary networks."""
    reps: int = 2000
    """Bootstrap resamples of rliable's confidence intervals."""
    protocol_baselines: list[str] = field(default_factory=list)
    random: bool = True

    def validate(self) -> "SuiteSettings":
        """Check every field (``ValueError`` naming the flag); resolve the families and baselines."""
        from envs.suite import SuiteError, family, split_families

        allowed = split_families(self.split)
        if self.families:
            for name in self.families:
                if family(name).split != self.split:
                    raise SuiteError(f"--families: {name!r} belongs to the {family(name).split} split, "
                                     f"not {self.split}")
        self.families = list(self.families or allowed)
        for name, minimum in (("instances", 1), ("jobs", 1), ("batch", 1), ("reps", 100)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"--{name} must be an integer >= {minimum}, got {value!r}")
        if self.instances > 1000:
            raise ValueError(f"--instances must be at most 1000 (the scoring seed range), got {self.instances}")
        self.protocol_baselines, self.random = parse_suite_baselines(self.baselines)
        return self


def sample_instances(split: str, n: int, seed: int, seeds: str = "train", replace: bool = True,
                     families: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """``n`` instances ``(family, instance seed)`` of a split for training or selecting a
    controller: families uniformly (cycling through them in a shuffled order when
    ``replace=False``, so every family appears equally often), instance seeds uniformly from the
    seed range ``seeds`` (:data:`envs.suite.INSTANCE_SEEDS`: ``train`` for training, ``selection``
    for checkpoint selection; never ``scoring`` for anything but scores), with or without
    replacement of the ``(family, seed)`` pairs. Deterministic in ``seed``. Run an instance with
    ``LearningRateEnv(task=make_instance(family, s), episode_length=task.meta["horizon"], ...)``,
    or :func:`with_batch_size` first to change its batch size."""
    from envs.suite import SuiteError, family, seed_range, split_families

    names = list(families or split_families(split))
    for name in names:
        if family(name).split != split:
            raise SuiteError(f"family {name!r} belongs to the {family(name).split} split, not {split}")
    pool = seed_range(seeds)
    if not replace and n > len(pool) * len(names):
        raise SuiteError(f"cannot draw {n} distinct instances from {len(names)} families x {len(pool)} seeds")
    rng = np.random.default_rng(seed)
    out: list[tuple[str, int]] = []
    taken: set[tuple[str, int]] = set()
    order: list[str] = []
    while len(out) < n:
        if replace:
            name = names[int(rng.integers(len(names)))]
        else:
            if not order:
                order = [names[i] for i in rng.permutation(len(names))]
            name = order.pop()
        pick = (name, int(pool[int(rng.integers(len(pool)))]))
        if not replace and pick in taken:
            order.append(name)
            continue
        taken.add(pick)
        out.append(pick)
    return out


def with_batch_size(task, batch_size: int):
    """A copy of a suite instance with another batch size (the same data and model), named
    ``FAMILY@SEED/bBATCH``: batch size is one of the things a controller must be robust to."""
    import dataclasses

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return dataclasses.replace(task, name=f"{task.name}/b{batch_size}", batch_size=batch_size,
                               meta={**task.meta, "batch_size": min(batch_size, len(task.x_train))})


def instance_settings(settings: SuiteSettings, family_name: str, seed: int) -> EvaluationSettings:
    """The tuning protocol's settings for one instance: its task name, its horizon, its seed,
    the fine grid (the decade grid is inside it), no RL policy evaluation."""
    from envs.suite import make_instance, task_spec

    horizon = make_instance(family_name, seed).meta["horizon"]
    return EvaluationSettings(task=task_spec(family_name, seed), updates=horizon, seeds=[seed],
                              baselines=list(settings.protocol_baselines), grid="fine", jobs=settings.jobs,
                              device=settings.device, eval_every=max(1, horizon // EVAL_POINTS), episodes=0,
                              batch=settings.batch).validate()


def ratio(record: dict | None, reference: dict | None, key: str = "train_loss") -> float:
    """A run's final ``key`` (``train_loss`` or ``test_loss``) over the reference run's, with a
    collapsed run scored :data:`FAILED_RATIO` and every ratio capped there; ``nan`` when there is
    no run or the reference has no finite final value (a broken instance, reported as such)."""
    if record is None or reference is None:
        return math.nan
    ref = (reference.get("final") or {}).get(key)
    if ref is None or not math.isfinite(ref) or ref <= 0:
        return math.nan
    if collapsed(record):
        return FAILED_RATIO
    value = (record.get("final") or {}).get(key)
    if value is None or not math.isfinite(value):
        return FAILED_RATIO
    return min(float(value) / float(ref), FAILED_RATIO)


def geometric_mean(values: Sequence[float]) -> float:
    """``exp(mean(log v))`` over the finite values (``nan`` if none)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    return float(np.exp(np.mean(np.log(v)))) if len(v) else math.nan


def aggregate(scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> dict[str, dict]:
    """Aggregate ratio arrays of shape ``(instances, families)`` per method (lower is better):
    ``geometric_mean``, ``collapsed`` (count of ratios at :data:`FAILED_RATIO`), ``n``, and from
    rliable ``iqm`` with ``iqm_ci`` (95%, stratified bootstrap over instances within families,
    ``reps`` resamples) and ``profile`` (tau -> fraction of instances with ratio <= tau, with
    its CI). A ``nan`` ratio (a broken instance) is left out of the geometric mean and makes
    rliable's estimates ``nan``."""
    rly, metrics = _rliable()
    out: dict[str, dict] = {}
    clean = {m: np.asarray(s, dtype=float) for m, s in scores.items()}
    finite = {m: s for m, s in clean.items() if np.all(np.isfinite(s))}
    iqm, iqm_ci, prof, prof_ci = {}, {}, {}, {}
    if finite:
        np.random.seed(seed)  # rliable's resampling draws from numpy's global generator
        iqm, iqm_ci = rly.get_interval_estimates(finite, lambda x: np.array([metrics.aggregate_iqm(x)]),
                                                 reps=reps)
        # rliable counts scores strictly above tau: on -log10(ratio), that is ratio < tau (nudged to <=)
        taus = -np.log10(np.asarray(PROFILE_TAUS)) - 1e-9
        np.random.seed(seed)  # create_performance_profile draws from numpy's global generator
        prof, prof_ci = rly.create_performance_profile({m: -np.log10(s) for m, s in finite.items()}, taus,
                                                       reps=reps)
    for m, s in clean.items():
        flat = s.reshape(-1)
        row = {"geometric_mean": geometric_mean(flat), "n": int(np.isfinite(flat).sum()),
               "collapsed": int(np.sum(flat >= FAILED_RATIO)), "iqm": math.nan, "iqm_ci": [math.nan, math.nan],
               "profile": {}}
        if m in iqm:
            row["iqm"], row["iqm_ci"] = float(iqm[m][0]), [float(iqm_ci[m][0][0]), float(iqm_ci[m][1][0])]
            row["profile"] = {f"{t:g}": [float(prof[m][i]), float(prof_ci[m][0][i]), float(prof_ci[m][1][i])]
                              for i, t in enumerate(PROFILE_TAUS)}
        out[m] = row
    return out


def _rliable():
    """rliable's ``library`` and ``metrics``; ``ImportError`` with the install command if missing.

    rliable 1.2 hands ``random_state=`` to ``arch``'s bootstrap, which arch 8 renamed ``seed=``
    (and arch 7 does not import under pandas 3): where arch lacks ``random_state``, rliable's
    stratified bootstrap is given the one-word translation. Its resampling draws from numpy's
    global generator either way, which :func:`aggregate` seeds."""
    import inspect

    try:
        import arch.bootstrap as arch_bs
        from rliable import library as rly
        from rliable import metrics
    except ImportError as exc:
        raise ImportError(f"the suite's aggregate needs rliable, a dependency of lrrl: "
                          f"pip install rliable ({exc})") from None
    if "random_state" not in inspect.signature(arch_bs.IIDBootstrap.__init__).parameters \
            and not getattr(rly.StratifiedBootstrap, "_lrrl_seed_shim", False):
        def __init__(self, *args, random_state=None, task_bootstrap=False, **kwargs):
            arch_bs.IIDBootstrap.__init__(self, *args, seed=random_state, **kwargs)
            self._args_shape = args[0].shape
            self._num_tasks = self._args_shape[1]
            self._parameters = [self._num_tasks, task_bootstrap]
            self._task_bootstrap = task_bootstrap
            self._strata_indices = self._get_strata_indices()

        rly.StratifiedBootstrap.__init__ = __init__
        rly.StratifiedBootstrap._lrrl_seed_shim = True
    return rly, metrics


# --------------------------------------------------------------------------- running
def _records_of(results, settings: SuiteSettings, seed: int, random_record: dict | None) -> dict[str, dict]:
    """Method label -> the instance's run record, for every method the suite reports."""
    from lrrl.sweep import make_spec

    R = results.records
    chosen: dict[str, dict] = {}
    if random_record is not None:
        chosen["Random policy"] = random_record
    for label, fam, lr in DEFAULT_RATES:
        key = make_spec(fam, seed, lr)["key"]
        if key in R:
            chosen[label] = R[key]
    tuned = {("SGD", "fine grid"): REFERENCE, ("Adam", "fine grid"): "Adam tuned",
             (M.LABELS["clipped"], "fine grid"): "SGD clipped tuned"}
    for row in results.rows:
        label = tuned.get((row["method"], row["protocol"]))
        if label is None and row["protocol"] in ("lr-free", "controller"):
            label = row["method"]
        if label is not None and row["keys"]:
            rec = R[row["keys"][0]]
            rec = {**rec, "tuned": row["param"]}
            chosen[label] = rec
    return chosen


def _method_order(labels: Sequence[str]) -> list[str]:
    first = ["Random policy", "SGD 0.01", "SGD 0.1", "Adam 1e-3", REFERENCE, "Adam tuned", "SGD clipped tuned"]
    return [m for m in first if m in labels] + [m for m in labels if m not in first]


@dataclass
class SuiteResults:
    """What :func:`run_suite` measured: per instance the records of every method, the ratios
    and the aggregates (what the report is made from)."""

    settings: SuiteSettings
    instances: list[dict]
    """One entry per instance: ``family``, ``seed``, ``task`` (meta), ``methods`` (label -> final losses, status, tuned parameter)."""
    methods: list[str]
    train_scores: dict[str, np.ndarray]
    test_scores: dict[str, np.ndarray]
    aggregate_train: dict[str, dict]
    aggregate_test: dict[str, dict]
    per_family: dict[str, dict[str, float]]
    notes: list[str]
    wall_time: float
    runs: int
    resumed: int


def run_suite(settings: SuiteSettings, controllers: Sequence, out: str | Path, command: str,
              progress: bool = True, backend=None) -> tuple[SuiteResults, str]:
    """Run every method on every instance of ``settings`` (module docstring) into ``out``
    (``out/instances/FAMILY@SEED/``, resumable), score and aggregate, and write ``suite.md`` and
    ``suite.json`` into ``out``. Returns the results and the Markdown report. ``controllers``:
    :class:`lrrl.protocol.ControllerEntry` s; ``backend``: where runs execute (default a
    local pool of ``settings.jobs`` processes, shared by all instances)."""
    from tqdm.auto import tqdm

    from agents.rundir import DirectoryLock, prepare_directory, remove_temp_files
    from envs.suite import make_instance, scoring_seeds
    from lrrl.protocol import evaluate_methods
    from lrrl.report import write_report
    from lrrl.sweep import LocalPool, Sweep, make_spec

    out = prepare_directory(out)
    own_backend = backend is None
    backend = LocalPool(settings.jobs) if backend is None else backend
    t0 = time.perf_counter()
    seeds = scoring_seeds(settings.instances)
    instances, notes, n_runs, n_resumed = [], [], 0, 0
    try:
        with DirectoryLock(out, purpose="suite evaluation"):
            for fam in settings.families:
                for seed in seeds:
                    where = out / "instances" / f"{fam}@{seed}"
                    where.mkdir(parents=True, exist_ok=True)
                    remove_temp_files(where, recursive_into=("runs",))
                    st = instance_settings(settings, fam, seed)
                    if progress:
                        tqdm.write(f"suite: {fam}@{seed} ({st.updates} updates)")
                    results = evaluate_methods(st, controllers, where, progress=progress, backend=backend)
                    random_record = None
                    if settings.random:
                        spec = make_spec("random", seed, None, policy={"kind": "random", "seed": seed,
                                                                       "lr_min": RANDOM_RANGE[0],
                                                                       "lr_max": RANDOM_RANGE[1]},
                                         label="Random policy")
                        with Sweep(results.common, where, settings.jobs, None, batch=settings.batch,
                                   backend=backend) as sweep:
                            sweep.run([spec])
                            random_record = sweep.records[spec["key"]]
                            n_resumed += sweep.resumed
                            n_runs += 1
                    write_report(results, [], where, command)
                    n_runs += len(results.records)
                    n_resumed += results.resumed
                    notes += [f"{fam}@{seed}: {n}" for n in results.notes]
                    task = make_instance(fam, seed)
                    chosen = _records_of(results, settings, seed, random_record)
                    instances.append({
                        "family": fam, "seed": seed, "meta": task.meta,
                        "n_parameters": sum(p.numel() for p in task.model_factory().parameters()),
                        "n_train": len(task.x_train), "n_test": len(task.x_test), "records": chosen,
                        "methods": {m: {"status": r["status"], "tuned": r.get("tuned"),
                                        "collapsed": collapsed(r), "wall_time": r["wall_time"],
                                        **{k: (r.get("final") or {}).get(k) for k in
                                           ("train_loss", "test_loss", "test_accuracy")},
                                        "initial_train_loss": ((r.get("curves") or {}).get("train_loss") or [None])[0]}
                                    for m, r in chosen.items()}})
    finally:
        if own_backend:
            backend.close()
    wall = time.perf_counter() - t0
    results = score(settings, instances, notes, wall, n_runs, n_resumed)
    text = write_suite_report(results, out, command)
    return results, text


def score(settings: SuiteSettings, instances: list[dict], notes: list[str], wall: float, runs: int,
          resumed: int) -> SuiteResults:
    """Ratios, aggregates and per-family geometric means of measured instances."""
    labels = _method_order(list(dict.fromkeys(m for inst in instances for m in inst["records"])))
    for inst in instances:
        ref = inst["records"].get(REFERENCE)
        if ref is None or not math.isfinite(ratio(ref, ref)):
            notes.append(f"{inst['family']}@{inst['seed']}: tuned SGD has no finite final loss: no ratios "
                         f"(a broken instance)")
        for m in labels:
            rec = inst["records"].get(m)
            entry = inst["methods"].setdefault(m, {})
            entry["ratio_train"], entry["ratio_test"] = ratio(rec, ref, "train_loss"), ratio(rec, ref, "test_loss")
    train = scores_from_instances(instances, labels, "ratio_train")
    test = scores_from_instances(instances, labels, "ratio_test")
    per_family = family_means(instances, train)
    return SuiteResults(settings=settings, instances=instances, methods=labels, train_scores=train,
                        test_scores=test, aggregate_train=aggregate(train, settings.reps),
                        aggregate_test=aggregate(test, settings.reps), per_family=per_family, notes=notes,
                        wall_time=wall, runs=runs, resumed=resumed)


def family_means(instances: Sequence[dict], scores: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per method, each family's geometric-mean ratio (``scores`` as from :func:`scores_from_instances`)."""
    fams = list(dict.fromkeys(i["family"] for i in instances))
    return {m: {f: geometric_mean(s[:, j]) for j, f in enumerate(fams)} for m, s in scores.items()}


def scores_from_instances(per_instance: Sequence[dict], methods: Sequence[str],
                          key: str = "ratio_train") -> dict[str, np.ndarray]:
    """Ratio arrays ``(instances, families)`` per method from ``suite.json``'s ``per_instance``."""
    fams = list(dict.fromkeys(i["family"] for i in per_instance))
    n = max(sum(i["family"] == f for i in per_instance) for f in fams)
    out = {m: np.full((n, len(fams)), np.nan) for m in methods}
    seen = {f: 0 for f in fams}
    for inst in per_instance:
        j = fams.index(inst["family"])
        i, seen[inst["family"]] = seen[inst["family"]], seen[inst["family"]] + 1
        for m in methods:
            v = (inst["methods"].get(m) or {}).get(key)
            out[m][i, j] = math.nan if v is None else float(v)
    return out


def profile_figure(scores: dict[str, np.ndarray], path: Path, title: str, reps: int = 2000) -> Path | None:
    """A PNG of the performance profiles: share of instances with training-loss ratio <= tau
    against tau (log scale), with rliable's 95% bootstrap bands; ``None`` if nothing is finite."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rly, _ = _rliable()
    finite = {m: s for m, s in scores.items() if np.all(np.isfinite(s))}
    if not finite:
        return None
    taus = np.geomspace(0.01, FAILED_RATIO, 41)
    np.random.seed(0)
    prof, ci = rly.create_performance_profile({m: -np.log10(s) for m, s in finite.items()},
                                              -np.log10(taus) - 1e-9, reps=reps)
    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    from matplotlib import colormaps

    colors = colormaps["tab20"]
    for k, m in enumerate(finite):
        color = "black" if m == REFERENCE else colors(k % 20)
        ax.plot(taus, prof[m], label=m, color=color, lw=2.5 if m == REFERENCE else 1.5,
                ls="-" if k % 2 == 0 else "--")
        ax.fill_between(taus, ci[m][0], ci[m][1], color=color, alpha=0.08)
    ax.set_xscale("log")
    ax.set_xlabel("tau: ratio of final training loss to tuned SGD's")
    ax.set_ylabel("share of instances with ratio <= tau")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path


# --------------------------------------------------------------------------- the report
def _r(x: float) -> str:
    return "—" if x is None or not math.isfinite(x) else (f"{x:.3g}" if x < 1000 else f"{x:.2e}")


def aggregate_table(results: SuiteResults) -> str:
    """method | geo. mean train ratio | geo. mean test ratio | IQM train ratio [95% CI] | collapsed |
    fraction of instances with ratio <= 1."""
    lines = ["| method | geo. mean ratio, train loss | geo. mean ratio, test loss | IQM ratio, train loss [95% CI] "
             "| collapsed | share with ratio <= 1 |", "|---|---|---|---|---|---|"]
    for m in results.methods:
        a, t = results.aggregate_train[m], results.aggregate_test[m]
        p = a["profile"].get("1")
        lines.append(f"| {m} | {_r(a['geometric_mean'])} | {_r(t['geometric_mean'])} | {_r(a['iqm'])} "
                     f"[{_r(a['iqm_ci'][0])}, {_r(a['iqm_ci'][1])}] | {a['collapsed']}/{a['n']} | "
                     f"{'—' if p is None else f'{p[0]:.2f}'} |")
    return "\n".join(lines)


def family_table(results: SuiteResults, loss: str = "train") -> str:
    """Per method and family, the geometric-mean ratio of the final training (or test) loss."""
    fams = list(dict.fromkeys(i["family"] for i in results.instances))
    means = results.per_family if loss == "train" else family_means(results.instances, results.test_scores)
    lines = ["| method | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for m in results.methods:
        lines.append(f"| {m} | " + " | ".join(_r(means[m][f]) for f in fams) + " |")
    return "\n".join(lines)


def accuracy_table(results: SuiteResults) -> str:
    """Mean test accuracy per method over the classification instances, overall and per family
    (a collapsed run counts with the accuracy it ended at); empty without classification."""
    fams = list(dict.fromkeys(i["family"] for i in results.instances
                              if (i["methods"].get(REFERENCE) or {}).get("test_accuracy") is not None))
    if not fams:
        return ""
    lines = ["| method | all classification instances | " + " | ".join(fams) + " |",
             "|---|---|" + "---|" * len(fams)]
    for m in results.methods:
        per_family: dict[str, list[float]] = {f: [] for f in fams}
        for inst in results.instances:
            accuracy = (inst["methods"].get(m) or {}).get("test_accuracy")
            if inst["family"] in per_family and accuracy is not None:
                per_family[inst["family"]].append(accuracy)
        every = [a for accs in per_family.values() for a in accs]
        cells = [f"{100 * float(np.mean(accs)):.1f}%" if accs else "—" for accs in [every, *per_family.values()]]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile_table(results: SuiteResults) -> str:
    lines = ["| method | " + " | ".join(f"ratio <= {t:g}" for t in PROFILE_TAUS) + " |",
             "|---|" + "---|" * len(PROFILE_TAUS)]
    for m in results.methods:
        prof = results.aggregate_train[m]["profile"]
        cells = [f"{prof[f'{t:g}'][0]:.2f} [{prof[f'{t:g}'][1]:.2f}, {prof[f'{t:g}'][2]:.2f}]" if prof else "—"
                 for t in PROFILE_TAUS]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def instance_table(results: SuiteResults) -> str:
    """Per instance: horizon, batch size, tuned SGD's final training loss, and every method's ratio."""
    head = ["instance", "updates", "batch", "tuned SGD: lr, final train loss"] + [
        m for m in results.methods if m != REFERENCE]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for inst in results.instances:
        ref = inst["methods"].get(REFERENCE, {})
        cells = [f"{inst['family']}@{inst['seed']}", str(inst["meta"]["horizon"]), str(inst["meta"]["batch_size"]),
                 f"{_r(ref.get('tuned') or math.nan)}, {_r(ref.get('train_loss') or math.nan)}"]
        for m in head[4:]:
            v = inst["methods"].get(m, {})
            cells.append("collapsed" if v.get("collapsed") else _r(v.get("ratio_train", math.nan)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_suite_report(results: SuiteResults, out: Path, command: str) -> str:
    """Write ``suite.md`` and ``suite.json`` into ``out``; return the Markdown."""
    from lrrl.sweep import write_json

    st = results.settings
    parts = [f"# Suite evaluation: `{st.split}` split", "",
             f"Families: {', '.join(st.families)}; {st.instances} scoring instance(s) each (seeds "
             f"{', '.join(str(s) for s in sorted({i['seed'] for i in results.instances}))}; primary seed = instance "
             f"seed); every method on each instance's own horizon and batch size. Ratio = final full "
             f"training (test) loss / that of SGD tuned on the fine grid for the same instance; a collapsed "
             f"run (diverged, or final training loss >= 0.9 x initial) scores {FAILED_RATIO:g}. Lower is "
             f"better. IQM and its 95% CI: rliable, stratified bootstrap ({st.reps} resamples) over "
             f"instances within families.", "",
             f"Command: `{command}`  ",
             f"Runs: {results.runs} ({results.resumed} resumed), wall time {results.wall_time:.0f} s.", ""]
    parts += [f"- {n}" for n in results.notes] + ([""] if results.notes else [])
    accuracy = accuracy_table(results)
    parts += ["## Aggregate", "", aggregate_table(results), "",
              "## Geometric-mean ratio (training loss) per family", "", family_table(results), "",
              "## Geometric-mean ratio (test loss) per family", "", family_table(results, "test"), "",
              *(["## Test accuracy (classification instances)", "", accuracy, ""] if accuracy else []),
              "## Performance profile: share of instances with training-loss ratio <= tau [95% CI]", "",
              profile_table(results), "",
              "## Per instance: training-loss ratio", "", instance_table(results), ""]
    figure = profile_figure(results.train_scores, out / "suite_profile.png",
                            f"Performance profiles, {st.split} split ({len(results.instances)} instances)", st.reps)
    if figure is not None:
        parts += ["## Figure", "", f"![performance profiles]({figure.name})", ""]
    text = "\n".join(parts)
    (out / "suite.md").write_text(text)
    write_json(out / "suite.json", {
        "command": command, "split": st.split, "families": st.families, "instances": st.instances,
        "baselines": st.baselines, "failed_ratio": FAILED_RATIO, "methods": results.methods,
        "aggregate_train": results.aggregate_train, "aggregate_test": results.aggregate_test,
        "per_family": results.per_family, "notes": results.notes, "wall_time": results.wall_time,
        "runs": results.runs, "resumed": results.resumed,
        "per_instance": [{k: v for k, v in i.items() if k != "records"} for i in results.instances]})
    return text
