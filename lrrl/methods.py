"""The baseline catalogue: every method evaluate.py compares controllers against, its grid and
its env settings. The tuning protocol that uses these grids is :mod:`lrrl.protocol`.

* ``sgd``, ``adam``, ``adagrad``, ``rmsprop``: constant rates on the paper's decade grid
  {1e-4, ..., 1}; the best rate by mean final training loss over the seeds is reported (the
  paper's protocol, Section 4.1). The fine grid adds, for SGD and Adam, the best decade rate
  x 0.5, 2, 3, 5, 7 (for SGD at 0.1: 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1): the decade grid flatters
  any controller (DESIGN.md, "Evaluating honestly"). As in the paper, grids are tuned on the
  evaluation seeds, which favours the baselines.
* ``cosine``: SGD with cosine decay, peak tuned on (best decade SGD rate) x 1, 2, 3, 5, 7, 10.
* ``vsgd``: vSGD (Schaul et al. 2013), global rate, finite-difference curvature; no tuning.
* ``hd``: SGD-HD (Baydin et al. 2018), initial rate tuned on {1e-3, ..., 1} and beta on
  {1e-4, ..., 1} (as Baydin et al. tune both).
* ``clipped``: SGD with gradient-norm clipping (``clip_grad_norm_`` then SGD), rate x threshold
  tuned on {0.1, 1, ..., 1000} x {0.001, ..., 10} (large rates are safe once clipped), then
  around the best pair (rate x 0.5 ... 7 as for SGD, threshold x 0.3, 1, 3).
* ``gradnorm``: the gradient-norm rule ``min(geometric ramp lr0 -> lr1, cap / ||g_t||)`` of issue
  16, its three constants fitted on *training* seeds 0 and 1 (like the Daniel-style controller).
* ``feature``: a Daniel et al. (2016)-style log-linear feature controller, its parameters fitted
  on *training* seed 0 (12 candidates), then evaluated on the held-out seeds.
* ``schedulefree-sgd``, ``schedulefree-adamw``, ``prodigy``, ``dadapt-sgd``, ``dadapt-adam``
  (alias ``lrfree``): learning-rate-free optimizers at their recommended lr (multiplier 1.0;
  schedule-free AdamW 0.0025), skipped with a note if their package is missing.
"""
from __future__ import annotations

from typing import Any, Callable

from lrrl.method_base import (RANK_CLIPPED, RANK_COSINE, RANK_FINE, RANK_FITTED_PAPER, RANK_GRADNORM, RANK_HD,
                              RANK_LRFREE, RANK_PAPER, RANK_UNTUNED, BaselineMethod, fmt_param)

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
#: the constant-rate optimizers with a fine grid around their best decade rate
FINE_OPTIMIZERS = ("sgd", "adam")
#: env settings of every baseline: the action is the learning rate itself
BASELINE_ENV = {"action": "raw", "lr_min": 1e-8, "lr_max": 10.0}
#: the same for the clipped and gradient-norm baselines, whose capped rates may be far above 10
CAPPED_BASELINE_ENV = {**BASELINE_ENV, "lr_max": 1e4}


# --------------------------------------------------------------------------- the methods
def _grid(values) -> list[float]:
    return sorted({float(fmt_param(v)) for v in values})


class ConstantRate(BaselineMethod):
    """A constant rate of ``optimizer``: the paper's decade grid, and for SGD and Adam the fine
    grid around its best decade rate."""

    def __init__(self, optimizer: str, label: str) -> None:
        self.name, self.label = optimizer, label

    def first_phase(self, view):
        return decade_specs(view, self.name)

    def second_phase(self, view):
        best = view.best_decade(self.name)
        if self.name not in FINE_OPTIMIZERS or not view.show_fine:
            return []
        lrs = view.state[self.name]["fine"] = sorted(set(_grid(best * m for m in FINE_MULTIPLIERS)) | set(DECADE_GRID))
        return [view.spec(self.name, s, lr, optimizer=self.name) for lr in lrs for s in view.seeds]

    def add_rows(self, view):
        if view.show_paper:
            best = view.best_decade(self.name)
            view.row(RANK_PAPER, self.label, "decade grid (paper)", view.by(self.name, [best]), best, "lr")
        fine = view.state.get(self.name, {}).get("fine")
        if fine:
            best = view.best(f"{self.label} (fine grid)", view.by(self.name, fine))
            view.row(RANK_FINE, self.label, "fine grid", view.by(self.name, [best]), best, "lr")


def decade_specs(view, optimizer: str) -> list[dict]:
    """The decade grid of a constant rate of ``optimizer`` on every seed."""
    return [view.spec(optimizer, s, lr, optimizer=optimizer) for lr in DECADE_GRID for s in view.seeds]


class CosineDecay(BaselineMethod):
    """SGD with cosine decay, its peak tuned around the best decade SGD rate."""

    name, label = "cosine", "SGD cosine"

    def first_phase(self, view):
        return [] if "sgd" in view.names else decade_specs(view, "sgd")  # the peaks' centre

    def second_phase(self, view):
        best = view.best_decade("sgd")
        peaks = view.state[self.name]["peaks"] = _grid(best * m for m in COSINE_MULTIPLIERS)
        return [view.spec(self.name, s, p, policy={"kind": "cosine", "peak": p}) for p in peaks for s in view.seeds]

    def add_rows(self, view):
        best = view.best("SGD cosine (peak)", view.by(self.name, view.state[self.name]["peaks"]))
        view.row(RANK_COSINE, self.label, "tuned peak", view.by(self.name, [best]), best, "peak")


class VSGD(BaselineMethod):
    """vSGD: no tuning."""

    name, label = "vsgd", "vSGD"

    def first_phase(self, view):
        return [view.spec(self.name, s, policy={"kind": "vsgd"}) for s in view.seeds]

    def add_rows(self, view):
        view.row(RANK_UNTUNED, self.label, "no tuning (paper)", view.by(self.name))


class HypergradientSGD(BaselineMethod):
    """SGD-HD: initial rate and beta tuned on a grid."""

    name, label = "hd", "SGD-HD"

    def first_phase(self, view):
        return [view.spec(self.name, s, [lr0, b], policy={"kind": "hd", "beta": b, "lr0": lr0})
                for lr0, b in self.grid() for s in view.seeds]

    @staticmethod
    def grid() -> list[list[float]]:
        return [[lr0, b] for lr0 in HD_LR0S for b in HD_BETAS]

    def add_rows(self, view):
        best = view.best("SGD-HD (lr0, beta)", view.by(self.name, self.grid()))
        view.row(RANK_HD, self.label, "tuned lr0 and beta", view.by(self.name, [list(best)]), best, "lr0, beta")


class LearningRateFree(BaselineMethod):
    """A learning-rate-free optimizer at its recommended rate (multiplier)."""

    def __init__(self, optimizer: str, label: str, lr: float, package: str) -> None:
        self.name, self.label, self.lr, self.package = optimizer, label, lr, package

    def first_phase(self, view):
        return [view.spec(self.name, s, self.lr, optimizer=self.name) for s in view.seeds]

    def add_rows(self, view):
        view.row(RANK_LRFREE, self.label, "lr-free", view.by(self.name, [self.lr]), self.lr, "lr")


class ClippedSGD(BaselineMethod):
    """SGD with gradient-norm clipping: rate x threshold on a decade grid, then around the best pair."""

    name, label = "clipped", "SGD, clipped"
    decade = [(lr, c) for lr in CLIP_RATES for c in CLIP_NORMS]

    def _specs(self, view, pairs) -> list[dict]:
        return [view.spec(self.name, s, [lr, c], policy={"kind": "clipped", "lr": lr, "max_norm": c},
                          env=CAPPED_BASELINE_ENV) for lr, c in pairs for s in view.seeds]

    def first_phase(self, view):
        return self._specs(view, self.decade)

    def second_phase(self, view):
        lr0, c0 = view.best("SGD, clipped (decade grid: lr, max_norm)", view.by(self.name, map(list, self.decade)))
        fine = sorted({(float(fmt_param(lr0 * m)), float(fmt_param(c0 * n))) for m in (1.0,) + FINE_MULTIPLIERS
                       for n in CLIP_NORM_MULTIPLIERS} | set(self.decade))
        view.state[self.name]["fine"] = fine
        return self._specs(view, [p for p in fine if p not in self.decade])

    def add_rows(self, view):
        grid = view.state[self.name]["fine"] if view.show_fine else self.decade
        best = view.best("SGD, clipped (lr, max_norm)", view.by(self.name, map(list, grid)))
        view.row(RANK_CLIPPED, self.label, "fine grid" if view.show_fine else "decade grid",
                 view.by(self.name, [list(best)]), best, "lr, max_norm")


class FittedRule(BaselineMethod):
    """A rule whose constants are fitted on training seeds (the candidates of a grid, the best
    mean final training loss), then run on the evaluation seeds.

    Args:
        name / label: as every method's. fit_seeds: the training seeds of the fit.
        candidates: the name of the candidate grid in :mod:`agents.baselines`.
        policy: ``constants -> the run spec's policy``. env: the runs' env settings (default
            :data:`BASELINE_ENV`).
        grid_name, rank, tuning, param_name: the fit's grid and the row, as reported.
        fitted_what: named in the warning when an evaluation seed is also a fitting seed
            (``None``: no warning).
    """

    def __init__(self, name: str, label: str, fit_seeds: tuple[int, ...], candidates: str,
                 policy: Callable[[list], dict], grid_name: str, rank: int, tuning: str, param_name: str,
                 env: dict | None = None, fitted_what: str | None = None) -> None:
        self.name, self.label, self.fit_seeds, self.candidates_name = name, label, tuple(fit_seeds), candidates
        self.policy, self.env, self.grid_name = policy, env, grid_name
        self.rank, self.tuning, self.param_name, self.fitted_what = rank, tuning, param_name, fitted_what

    def candidates(self) -> list[list]:
        from agents import baselines

        return [list(c) for c in getattr(baselines, self.candidates_name)]

    def notes(self, view):
        overlap = sorted(set(view.seeds) & set(self.fit_seeds)) if self.fitted_what else []
        return [f"Warning: evaluation seeds {overlap} are also the {self.fitted_what}'s "
                f"fitting seeds."] if overlap else []

    def first_phase(self, view):
        return [view.spec(f"{self.name}-fit", s, c, policy=self.policy(c), env=self.env)
                for c in self.candidates() for s in self.fit_seeds]

    def second_phase(self, view):
        fit = [r for c in self.candidates() for r in view.by(f"{self.name}-fit", [c], self.fit_seeds)]
        best = view.state[self.name]["best"] = list(view.best(self.grid_name, fit))
        return [view.spec(self.name, s, best, policy=self.policy(best), env=self.env) for s in view.seeds]

    def add_rows(self, view):
        best = view.state[self.name]["best"]
        view.row(self.rank, self.label, self.tuning, view.by(self.name, [best]), tuple(best), self.param_name)


# --------------------------------------------------------------------------- the registry
#: every baseline method, by name, in table order: one line each
BASELINE_METHODS: dict[str, BaselineMethod] = {m.name: m for m in (
    ConstantRate("sgd", "SGD"),
    ConstantRate("adam", "Adam"),
    ConstantRate("adagrad", "Adagrad"),
    ConstantRate("rmsprop", "RMSprop"),
    ClippedSGD(),
    # min(geometric ramp lr0 -> lr1, cap / ||g_t||), its constants fitted on training seeds
    FittedRule("gradnorm", "Gradient-norm rule", GRAD_NORM_RULE_FIT_SEEDS, "GRAD_NORM_RULE_GRID",
               lambda c: {"kind": "gradnorm", "constants": list(c)}, "Gradient-norm rule (fit on training seeds)",
               RANK_GRADNORM, "fit on train seeds", "lr0, lr1, cap", env=CAPPED_BASELINE_ENV),
    CosineDecay(),
    VSGD(),
    HypergradientSGD(),
    # a Daniel et al. (2016)-style log-linear feature controller fitted on a training seed
    FittedRule("feature", "Daniel-style", FEATURE_FIT_SEEDS, "FEATURE_CONTROLLER_GRID",
               lambda th: {"kind": "feature", "theta": list(th), "lr0": FEATURE_LR0},
               "Daniel-style (fit on training seed 0)", RANK_FITTED_PAPER, "fit on train seeds (paper)", "theta",
               fitted_what="Daniel-style controller"),
    LearningRateFree("schedulefree-sgd", "Schedule-free SGD", 1.0, "schedulefree"),
    LearningRateFree("schedulefree-adamw", "Schedule-free AdamW", 0.0025, "schedulefree"),
    LearningRateFree("prodigy", "Prodigy", 1.0, "prodigyopt"),
    LearningRateFree("dadapt-sgd", "D-Adapt SGD", 1.0, "dadaptation"),
    LearningRateFree("dadapt-adam", "D-Adapt Adam", 1.0, "dadaptation"),
)}
BASELINES = tuple(BASELINE_METHODS)
LRFREE = {n: m.lr for n, m in BASELINE_METHODS.items() if isinstance(m, LearningRateFree)}
LRFREE_PACKAGES = {n: m.package for n, m in BASELINE_METHODS.items() if isinstance(m, LearningRateFree)}
ALIASES = {"lrfree": tuple(LRFREE), "daniel": ("feature",), "sgd-hd": ("hd",), "clip": ("clipped",),
           "all": BASELINES, "none": ()}
LABELS = {n: m.label for n, m in BASELINE_METHODS.items()}


def label(name: str) -> str:
    """A family's label in tables: its method's, or the name itself."""
    method = BASELINE_METHODS.get(name)
    return method.label if method is not None else name


def parse_baselines(text: str) -> list[str]:
    """``"sgd,lrfree"`` -> ``["sgd", "schedulefree-sgd", ...]``; ``ValueError`` for an unknown name."""
    names: list[str] = []
    for raw in (text or "").split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name == "all":
            names.extend(BASELINE_METHODS)
        elif name in ALIASES:
            names.extend(ALIASES[name])
        elif name in BASELINE_METHODS:
            names.append(name)
        else:
            raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINE_METHODS)} "
                             f"or the aliases {', '.join(ALIASES)}")
    return list(dict.fromkeys(names))


def missing_packages(names: list[str]) -> list[str]:
    """The baselines among ``names`` whose package is not installed."""
    import importlib.util

    return sorted({n for n in names if BASELINE_METHODS[n].package is not None
                   and importlib.util.find_spec(BASELINE_METHODS[n].package) is None})


#: a run spec's policy kind -> the :mod:`agents.baselines` class that drives the env
POLICY_CLASSES = {"constant": "ConstantLR", "cosine": "CosineLR", "vsgd": "VSGD", "hd": "HypergradientSGD",
                  "feature": "FeatureController", "clipped": "ClippedSGD", "gradnorm": "GradNormRule",
                  "controller": "ControllerPolicy", "random": "RandomRate"}


def policy_batchable(policy: dict) -> bool:
    """Whether runs of this policy can go side by side in one vector env
    (:func:`agents.baselines.run_episodes`; the class's ``batchable`` flag)."""
    from agents import baselines as B

    return bool(getattr(getattr(B, POLICY_CLASSES[policy["kind"]]), "batchable", False))


def make_policy(policy: dict, controller_loader: Callable[[str], Any]):
    """A run spec's ``policy`` dict -> the :mod:`agents.baselines` policy object that drives the env.
    ``controller_loader(path)`` gives the trained controller of a ``{"kind": "controller"}`` policy."""
    from agents import baselines as B

    kind = policy["kind"]
    if kind not in POLICY_CLASSES:
        raise ValueError(f"unknown policy kind {kind!r}")
    cls = getattr(B, POLICY_CLASSES[kind])
    if kind == "constant":
        return cls(policy["lr"])
    if kind == "cosine":
        return cls(policy["peak"])
    if kind == "vsgd":
        return cls()
    if kind == "hd":
        return cls(policy["beta"], lr0=policy["lr0"])
    if kind == "feature":
        return cls(tuple(policy["theta"]), lr0=policy["lr0"])
    if kind == "clipped":
        return cls(policy["lr"], policy["max_norm"])
    if kind == "gradnorm":
        return cls(*policy["constants"])
    if kind == "random":
        return cls(policy["seed"], policy["lr_min"], policy["lr_max"])
    return cls(controller_loader(policy["path"]))
