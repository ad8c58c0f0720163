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
LRFREE_PACKAGES = {"schedulefree-sgd": "schedulefree", "schedulefree-adamw": "schedulefree",
                   "prodigy": "prodigyopt", "dadapt-sgd": "dadaptation", "dadapt-adam": "dadaptation"}
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


def parse_baselines(text: str) -> list[str]:
    """``"sgd,lrfree"`` -> ``["sgd", "schedulefree-sgd", ...]``; ``ValueError`` for an unknown name."""
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
            raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)} "
                             f"or the aliases {', '.join(ALIASES)}")
    return list(dict.fromkeys(names))


def missing_packages(names: list[str]) -> list[str]:
    """The learning-rate-free baselines among ``names`` whose package is not installed."""
    import importlib.util

    return sorted({n for n in names if n in LRFREE and importlib.util.find_spec(LRFREE_PACKAGES[n]) is None})


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
