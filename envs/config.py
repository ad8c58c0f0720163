"""The env's settings, each defined once, in three typed groups.

- :class:`PrimaryConfig`: how the primary network trains (optimizer, layer groups, ``w0``,
  evaluation, the validation split);
- :class:`ControlConfig`: what the controller sees and how its action becomes a rate (the
  arguments of :class:`~envs.control.ControlState`);
- :class:`RewardConfig`: what the reward measures (mode, transform, held batches, divergence).

:class:`EnvConfig` holds one of each. Every field is a *setting*: its default, a line of help,
the check a recorded value must pass, whether it shapes a trained controller's inputs and
outputs (``controller``) and whether ``train_controller.py`` has a flag for it (``flag``: the
kind of value the flag parses). What is derived from here, not listed again: the flat keyword
arguments of :class:`~envs.learning_rate_env.LearningRateEnv` and ``gymnasium.make``
(:meth:`EnvConfig.from_flat`, the one adapter), the ``env_kwargs`` schema of a run's
``settings.json`` (:mod:`agents.settings_schema`), the controller's recorded keys
(:data:`agents.checkpoint.CONTROLLER_ENV_KEYS`), the environment flags of ``train_controller.py``
with their help, and the check that every preset names only known keys.

The flat names are what ``gymnasium.make(id, **kwargs)``, rl-zoo3 hyperparameter files and
recorded settings use, so each is unique across the groups.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from envs.control import ACTIONS, ANNEALS, check_number
from envs.rewards import REWARDS, TRANSFORMS

#: the kinds of ``train_controller.py`` flags (``None``: no flag): an integer >= 1, a finite
#: number, on/off, a string, one of ``choices``, a comma-separated list
FLAG_KINDS = ("positive_int", "float", "bool", "str", "choice", "list")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# the checks of recorded values (agents.settings_schema): (predicate, what the value must be)
INT_AT_LEAST_1 = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
INT_AT_LEAST_0 = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
POSITIVE = (lambda v: _is_num(v) and v > 0, "a number > 0")
NUMBER = (_is_num, "a number")
STRING = (lambda v: isinstance(v, str), "a string")
BOOL = (lambda v: isinstance(v, bool), "true or false")


def _optional(check: tuple[Callable, str]) -> tuple[Callable, str]:
    return (lambda v: v is None or check[0](v), f"{check[1]} or null")


def setting(default: Any, help: str, check: tuple[Callable[[Any], bool], str], *, flag: str | None = None,
            choices: Sequence[str] = (), controller: bool = False) -> Any:
    """A config field: ``default``, ``help`` (the flag's help text), ``check`` (predicate, what a
    recorded value must be), ``flag`` (one of :data:`FLAG_KINDS`, or ``None``: no flag),
    ``choices`` (of a ``choice`` flag), ``controller`` (shapes a controller's observations or
    actions: recorded with it and kept wherever it runs)."""
    if flag is not None and flag not in FLAG_KINDS:
        raise ValueError(f"flag must be one of {FLAG_KINDS}, got {flag!r}")
    meta = {"help": help, "check": check, "flag": flag, "choices": tuple(choices), "controller": controller}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class PrimaryConfig:
    """How the primary network trains."""

    optimizer: str = setting("sgd", "primary optimizer (sgd, momentum, adam, ...)",
                             (lambda v: isinstance(v, str) and ":" not in v, "an optimizer name (no 'module:')"),
                             flag="str", controller=True)
    optimizer_kwargs: dict | None = setting(None, "extra keyword arguments of the primary optimizer",
                                            (lambda v: v is None or isinstance(v, dict), "an object or null"),
                                            controller=True)
    per_group: bool = setting(False, "one learning rate per layer (a vector action)", BOOL, flag="bool",
                              controller=True)
    fresh_w0: bool = setting(False, "re-draw the primary model's initial weights every episode", BOOL,
                             flag="bool")
    eval_every: int = setting(0, "full train/test evaluation in info['eval'] every N primary updates "
                                 "(and at reset and the episode's end; 0: never)", INT_AT_LEAST_0)
    validation_size: int | None = setting(None, "examples held out of the training set as the validation "
                                                "split (default: validation_batch_size, at most a quarter of "
                                                "the training set, when the reward or a feature needs it, "
                                                "else 0)", _optional(INT_AT_LEAST_0))

    def __post_init__(self) -> None:
        check_number("eval_every", self.eval_every, low=0, integer=True)


@dataclass(frozen=True)
class ControlConfig:
    """What the controller sees and how its action becomes a rate: the arguments of
    :class:`~envs.control.ControlState` (which checks them), besides the number of rates."""

    lr_min: float = setting(1e-5, "smallest learning rate", POSITIVE, flag="float", controller=True)
    lr_max: float = setting(1.0, "largest learning rate", POSITIVE, flag="float", controller=True)
    action: str = setting("absolute", "absolute log-lr, relative multiplicative change, the raw rate, capped: "
                                      "a log-lr and a log step-length cap, each update using min(lr, cap / ||g||), "
                                      "or trust: capped in the model's units (lr x ||w0||/||g0||, cap x ||w||)",
                          STRING, flag="choice", choices=ACTIONS, controller=True)
    relative_factor: float = setting(2.0, "--action relative: the rate changes by at most this factor "
                                          "per decision", POSITIVE, flag="float", controller=True)
    relative_every: int = setting(1, "--action relative: decisions between changes of the rate",
                                  INT_AT_LEAST_1, controller=True)
    initial_lr: float | None = setting(None, "starting rate of --action relative (default: geometric mean "
                                             "of the range)", _optional(POSITIVE), flag="float", controller=True)
    features: tuple[str, ...] = setting((), "comma-separated extra state features (lr, step_fraction, "
                                            "loss_ema, loss_var, val_loss, grad_norm, and the scale-free "
                                            "grad_ratio, loss_trend); 'none' for the loss only",
                                        (lambda v: isinstance(v, list) and all(isinstance(f, str) for f in v),
                                         "a list of strings"), flag="list", controller=True)
    obs_max: float = setting(1e3, "cap of the loss-like observation entries", POSITIVE, controller=True)
    log_observations: bool = setting(False, "loss-like observation entries as log10", BOOL, flag="bool",
                                     controller=True)
    episode_length: int = setting(200, "primary updates per episode (the paper's reset frequency e; an "
                                       "episode has ceil(episode_length / updates_per_step) env steps)",
                                  INT_AT_LEAST_1, flag="positive_int")
    updates_per_step: int = setting(1, "primary updates per env step: the chosen rate is held for k updates",
                                    INT_AT_LEAST_1, flag="positive_int", controller=True)
    step_cap_min: float = setting(1e-2, "--action capped: smallest step-length cap (trust: as a fraction of "
                                        "||w||)", POSITIVE, flag="float", controller=True)
    step_cap_max: float = setting(10.0, "--action capped: largest step-length cap (trust: as a fraction of "
                                        "||w||)", POSITIVE, flag="float", controller=True)
    safety_net: bool = setting(False, "halve every later rate when the loss climbs back towards the untrained "
                                      "network's (or is not finite)", BOOL, flag="bool", controller=True)
    relative_loss: bool = setting(False, "observe log10(loss / the episode's first loss) instead of the loss",
                                  BOOL, flag="bool", controller=True)
    anneal: str = setting("none", "a schedule on every rate and step cap the controller sets: linear: times "
                                  "the fraction of the horizon left (a decay to zero it need not learn)",
                          STRING, flag="choice", choices=ANNEALS, controller=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        check_number("episode_length", self.episode_length, low=1, integer=True)
        check_number("updates_per_step", self.updates_per_step, low=1, integer=True)
        for name in ("lr_min", "lr_max", "step_cap_min", "step_cap_max"):
            check_number(name, getattr(self, name), low=0, low_open=True)


@dataclass(frozen=True)
class RewardConfig:
    """What the reward measures, and divergence."""

    reward: str = setting("same-batch", "reward batch: the update's own (paper), the next, a held-out "
                                        "validation batch, or a fixed probe batch of training examples",
                          STRING, flag="choice", choices=REWARDS)
    reward_transform: str = setting("raw", "loss decrement, or decrement of log loss", STRING, flag="choice",
                                    choices=TRANSFORMS)
    reward_scale: float = setting(1.0, "multiplies every reward, the divergence penalty included", POSITIVE)
    validation_batch_size: int = setting(200, "the validation batch of reward='validation' and of the "
                                              "val_loss feature", INT_AT_LEAST_1, controller=True)
    probe_batch_size: int | None = setting(None, "--reward probe: examples in the fixed probe batch "
                                                 "(default: the validation batch size)",
                                           _optional(INT_AT_LEAST_1), flag="positive_int")
    rotating_validation: bool = setting(False, "redraw the validation/probe batch every step", BOOL)
    divergence_factor: float = setting(100.0, "a loss above this multiple of the episode's first ends it as "
                                              "diverged", (lambda v: _is_num(v) and v > 1, "a number > 1"))
    divergence_penalty: float = setting(10.0, "the reward of a diverged step is minus this (times "
                                              "reward_scale)", NUMBER)

    def __post_init__(self) -> None:
        check_number("reward_scale", self.reward_scale, low=0, low_open=True)
        check_number("divergence_penalty", self.divergence_penalty, low=0)
        check_number("divergence_factor", self.divergence_factor, low=1, low_open=True)


GROUPS = {"primary": PrimaryConfig, "control": ControlConfig, "reward": RewardConfig}


@dataclass(frozen=True)
class EnvConfig:
    """All of an env's settings: one group each (``primary``, ``control``, ``reward``)."""

    primary: PrimaryConfig = field(default_factory=PrimaryConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)

    @classmethod
    def from_flat(cls, settings: Mapping[str, Any], base: "EnvConfig | None" = None) -> "EnvConfig":
        """The one adapter from flat keyword arguments (``lr_min=...``, ``reward=...``: the names
        of ``gymnasium.make``, presets and recorded settings) to the groups: ``base`` (default
        all defaults) with the given keys replaced. An unknown key is a ``TypeError``, as an
        unexpected keyword argument is."""
        base = cls() if base is None else base
        owner = setting_owners()
        unknown = [k for k in settings if k not in owner]
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {unknown}; the env's settings are "
                            f"{', '.join(owner)}")
        groups = {}
        for group in GROUPS:
            given = {k: v for k, v in settings.items() if owner[k] == group}
            current = getattr(base, group)
            groups[group] = dataclasses.replace(current, **given) if given else current
        return cls(**groups)

    def flat(self) -> dict[str, Any]:
        """Every setting by its flat name (the inverse of :meth:`from_flat`)."""
        return {f.name: getattr(getattr(self, group), f.name)
                for group, cls in GROUPS.items() for f in dataclasses.fields(cls)}


def settings_fields() -> dict[str, dataclasses.Field]:
    """Flat name -> its field (with its metadata), over all groups, in declaration order."""
    return {f.name: f for cls in GROUPS.values() for f in dataclasses.fields(cls)}


def setting_owners() -> dict[str, str]:
    """Flat name -> the group that owns it."""
    return {f.name: group for group, cls in GROUPS.items() for f in dataclasses.fields(cls)}


def controller_keys() -> tuple[str, ...]:
    """The settings that shape a controller's observations and actions (recorded with it)."""
    return tuple(name for name, f in settings_fields().items() if f.metadata["controller"])


def flag_settings() -> dict[str, dataclasses.Field]:
    """The settings ``train_controller.py`` has a flag for (``--lr-min`` for ``lr_min``, ...)."""
    return {name: f for name, f in settings_fields().items() if f.metadata["flag"] is not None}
