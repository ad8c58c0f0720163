"""Configuration, defined once and validated once: the seeds every protocol shares, the typed
settings of an evaluation (:class:`EvaluationSettings`) and of a controller training
(:class:`TrainSettings`).

Seeds. Controllers train on small primary seeds (0, 1, ...), choose their best checkpoint on
:data:`SELECTION_SEED`, and are evaluated on held-out seeds from :data:`HELD_OUT_SEED_START` on,
which nothing else uses. Counts are in two units that are never mixed: *env steps* (controller
decisions; ``train_controller.py --steps``) and *primary updates* (mini-batch updates of the
primary network; ``evaluate.py --updates``). With ``updates_per_step = k`` one env step is k
updates.
"""
from __future__ import annotations

import math

from dataclasses import dataclass, field, fields
from typing import Any

from agents.registry import AGENT_TYPES, agent_type

#: the validation seed of checkpoint selection (neither a training nor an evaluation seed)
SELECTION_SEED = 500
#: evaluation seeds are HELD_OUT_SEED_START, HELD_OUT_SEED_START + 1, ... (never trained on)
HELD_OUT_SEED_START = 1000
#: at most this many evaluation seeds (each is a full run of every method)
MAX_SEEDS = 10_000
#: seeds are unsigned 64-bit integers (torch.Generator.manual_seed's range)
SEED_LIMIT = 2 ** 64
#: runs of a sweep trained side by side in one vector env (``evaluate.py --batch``); chosen by
#: measurement (README, "Many runs in one batched step")
DEFAULT_BATCH = 16


class SettingsError(ValueError):
    """Settings or inputs refused before any work started (a command line reports it as a usage
    error, exit status 2; nothing was written)."""


class BackendError(SettingsError):
    """A sweep backend that cannot start (:func:`lrrl.sweep.make_backend`: Ray not
    installed, a cluster address that does not answer, a resource request the cluster cannot
    meet): one line, raised before anything is written."""


def held_out_seeds(n: int) -> list[int]:
    """The first ``n`` held-out evaluation seeds."""
    return list(range(HELD_OUT_SEED_START, HELD_OUT_SEED_START + n))


def parse_seeds(text: str, count_start: int = HELD_OUT_SEED_START, flag: str = "--seeds") -> list[int]:
    """``"5"`` -> ``[1000, ..., 1004]`` (a count from ``count_start``); ``"1,2,7"`` -> ``[1, 2, 7]``;
    ``"0-4"`` -> ``[0, 1, 2, 3, 4]`` (ranges inclusive, also inside a list: ``"0-2,9"``);
    ``ValueError`` naming ``flag`` otherwise."""
    text = (text or "").strip()
    if not text:
        raise ValueError(f"{flag} is empty: give a count (e.g. 5), a list (e.g. 1000,1001) or a range (e.g. 0-4)")
    short = text if len(text) <= 40 else text[:37] + "..."
    bad_text = f"{flag} {short!r}: expected a count, comma-separated integers or a range A-B"
    if "," in text or "-" in text:
        items = [s.strip() for s in text.split(",") if s.strip()]
        seeds: list[int] = []
        for item in items:
            first, dash, last = item.partition("-")
            try:
                lo, hi = (int(first), int(last)) if dash else (int(item), int(item))
            except ValueError:
                raise ValueError(bad_text) from None
            if hi < lo:
                raise ValueError(f"{flag} {item!r}: a range A-B needs A <= B")
            if len(seeds) + hi - lo + 1 > MAX_SEEDS:
                raise ValueError(f"{flag}: more than {MAX_SEEDS} seeds given, at most {MAX_SEEDS} are supported")
            seeds += range(lo, hi + 1)
    else:
        try:
            n = int(text)
        except ValueError:
            raise ValueError(bad_text) from None
        if n < 1:
            raise ValueError(f"{flag} {text}: need at least one seed")
        if n > MAX_SEEDS:
            raise ValueError(f"{flag} {short}: at most {MAX_SEEDS} seeds are supported (each seed is a "
                             f"full run of every method)")
        seeds = list(range(count_start, count_start + n))
    if not seeds:
        raise ValueError(f"{flag} is empty: give a count (e.g. 5), a list (e.g. 1000,1001) or a range (e.g. 0-4)")
    bad = next((s for s in seeds if not 0 <= s < SEED_LIMIT), None)
    if bad is not None:
        shown = str(bad) if len(str(bad)) <= 30 else str(bad)[:27] + "..."
        raise ValueError(f"{flag}: seed {shown} is out of range; seeds must be integers in [0, 2**64 - 1]")
    return list(dict.fromkeys(seeds))


@dataclass
class EvaluationSettings:
    """What :func:`lrrl.protocol.evaluate_methods` runs (evaluate.py's flags)."""

    task: str = "digits"
    """Evaluation task: a name of :data:`envs.tasks.TASKS` or a user task ``package.module:function``."""
    updates: int = 1000
    """Primary updates (mini-batches) per run."""
    seeds: list[int] = field(default_factory=lambda: held_out_seeds(5))
    """Primary seeds every method runs on (default: the first five held-out seeds)."""
    baselines: list[str] = field(default_factory=lambda: ["all"])
    """Baseline names or aliases of :mod:`lrrl.methods` (expanded by :meth:`validate`)."""
    grid: str = "both"
    """Report the paper's decade grid (``paper``), the fine grid around its best (``fine``), or both."""
    jobs: int = 1
    """Worker processes for independent runs (one torch thread each)."""
    device: str = "cpu"
    """Device of the primary networks (``auto``/``cpu``/``cuda``, resolved by :meth:`validate`)."""
    data_root: str | None = None
    """Folder holding MNIST/CIFAR-10 files."""
    eval_every: int = 20
    """Measure full train/test loss every this many updates (curve resolution)."""
    divergence_factor: float = 100.0
    """A run diverges when a mini-batch loss exceeds this multiple of its first one."""
    episodes: int = 3
    """Episodes of the RL policy evaluation of each controller (0: skip)."""
    batch: int = DEFAULT_BATCH
    """Runs trained side by side in one vector env (:func:`lrrl.sweep.run_batch`; 1: one at a
    time). The same runs to float rounding; the default is measured (README, issue 12)."""

    def validate(self) -> "EvaluationSettings":
        """Check every field once (``ValueError`` naming the flag); expand baseline aliases and
        resolve the device. Returns ``self``."""
        from envs.primary import resolve_device
        from envs.tasks import TASKS
        from lrrl.methods import parse_baselines

        if self.task not in TASKS and ":" not in self.task:
            raise ValueError(f"unknown task {self.task!r}; choose one of: {', '.join(TASKS)}, "
                             f"or 'package.module:function' returning an envs.Task")
        for name, minimum in (("updates", 1), ("jobs", 1), ("eval_every", 1), ("episodes", 0), ("batch", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {minimum}, got {value!r}")
        if not self.divergence_factor > 1:
            raise ValueError(f"--divergence-factor must be > 1, got {self.divergence_factor}")
        if self.grid not in ("paper", "fine", "both"):
            raise ValueError(f"--grid must be paper, fine or both, got {self.grid!r}")
        if not self.seeds:
            raise ValueError("--seeds is empty")
        bad = next((s for s in self.seeds if not 0 <= int(s) < SEED_LIMIT), None)
        if bad is not None:
            raise ValueError(f"--seeds: seed {bad} is out of range; seeds must be integers in [0, 2**64 - 1]")
        self.seeds = list(dict.fromkeys(int(s) for s in self.seeds))
        self.baselines = parse_baselines(",".join(self.baselines))
        self.device = str(resolve_device(self.device))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: agent keyword arguments a flag may set, per agent (anything else is refused by name)
AGENT_KEYS = {name: a.flag_keys for name, a in AGENT_TYPES.items()}
#: training budget when neither the flag nor the preset gives one (env steps)
DEFAULT_TRAIN_STEPS = 10_000


@dataclass
class TrainSettings:
    """Everything a controller training run needs; written to ``settings.json`` (:meth:`to_json`)
    and read back from it (:meth:`from_json`), both through the one schema
    (:func:`agents.settings_schema.validate_settings`)."""

    agent: str
    """The controller: ``actor-critic`` (the paper's), ``policy-search``, ``ddpg`` or ``td3``."""
    env_kwargs: dict
    """:class:`envs.LearningRateEnv` keyword arguments (reward, action, features, ranges, ...)."""
    agent_kwargs: dict
    """Keyword arguments of the agent class (ActorCritic, PolicySearch, or the SB3 factory)."""
    preset: str = "recommended"
    """The named configuration of :mod:`lrrl.presets` these settings started from."""
    task: str = "digits"
    """Task name, or a comma-separated list for round-robin multi-task episodes."""
    steps: int = DEFAULT_TRAIN_STEPS
    """Total env steps (controller decisions) to train for, resumed steps included."""
    seed: int = 0
    """Seed of the agent and of the training env's primary runs."""
    num_envs: int = 1
    """Primary runs trained side by side in one batched env (actor-critic, ddpg, td3): N parallel
    episodes, the agent's updates per transition unchanged."""
    device: str = "cpu"
    """Device of the primary model and the agent."""
    data_root: str | None = None
    """Folder holding dataset files (mnist, cifar10)."""
    checkpoint_every: int = 1000
    """Write an atomic checkpoint every this many env steps (0: only at the end)."""
    workers: int | None = None
    """Policy search: processes running a generation's episodes (None: the machine's cores)."""
    select_best: int = 0
    """Every this many episodes (policy search: generations) evaluate the deterministic policy on
    :attr:`eval_seeds` and keep the best as the checkpoint (0: keep the last)."""
    eval_seeds: list[int] = field(default_factory=lambda: [SELECTION_SEED])
    """Primary seeds of checkpoint selection (neither training nor held-out evaluation seeds)."""
    collapse_termination: bool = False
    """Training only: end an episode as diverged when the loss climbs back to chance level."""
    finite_horizon: bool = False
    """Training only: the episode's end is terminal (no bootstrapping past it)."""
    spaces: dict | None = None
    """The env's observation and action boxes as JSON, recorded when a run starts (an SB3
    checkpoint is rebuilt from them, never unpickled)."""

    _TRAIN_KEYS = ("task", "steps", "seed", "num_envs", "device", "data_root", "checkpoint_every", "workers",
                   "select_best", "eval_seeds", "collapse_termination", "finite_horizon")

    @property
    def tasks(self) -> list[str]:
        return [t.strip() for t in self.task.split(",") if t.strip()]

    def to_json(self) -> dict:
        """The ``settings.json`` layout: ``agent``, ``preset``, ``env_kwargs``, ``agent_kwargs``, ``train``."""
        from agents.settings_schema import validate_settings

        record = {"agent": self.agent, "preset": self.preset, "env_kwargs": self.env_kwargs,
                  "agent_kwargs": self.agent_kwargs, "train": {k: getattr(self, k) for k in self._TRAIN_KEYS}}
        if self.spaces is not None:
            record["spaces"] = self.spaces
        return validate_settings(record)

    @classmethod
    def from_json(cls, settings: dict, path: str = "settings.json") -> "TrainSettings":
        """Settings read from a run's ``settings.json`` (validated; ``CheckpointError`` naming the field)."""
        from agents.settings_schema import validate_settings

        settings = validate_settings(settings, path)
        train = {k: v for k, v in settings["train"].items() if k in cls._TRAIN_KEYS}
        return cls(agent=settings["agent"], preset=settings.get("preset", ""), env_kwargs=settings["env_kwargs"],
                   agent_kwargs=settings["agent_kwargs"], spaces=settings.get("spaces"), **train)

    @classmethod
    def from_preset(cls, preset: str = "recommended", agent: str | None = None, env: dict | None = None,
                    agent_overrides: dict | None = None, **train: Any) -> "TrainSettings":
        """A preset with single values overridden: ``env`` (env keyword arguments),
        ``agent_overrides`` (keys of :data:`AGENT_KEYS` for the chosen agent; another agent's key is
        a ``ValueError`` naming it) and ``train`` (the other fields). ``None`` values are ignored."""
        from lrrl.presets import get_preset

        p = get_preset(preset)
        agent = agent or p.get("algo", "actor-critic")
        kind = agent_type(agent)
        env_kwargs = {**p["env"], **{k: v for k, v in (env or {}).items() if v is not None}}
        overrides = {k: v for k, v in (agent_overrides or {}).items() if v is not None}
        wrong = [k for k in overrides if k not in kind.flag_keys]
        if wrong:
            raise ValueError(f"--{wrong[0].replace('_', '-')} does not apply to --agent {agent}")
        train = {k: v for k, v in train.items() if v is not None}
        if isinstance(train.get("task"), str):  # "digits, regression2d," -> "digits,regression2d"
            train["task"] = ",".join(t.strip() for t in train["task"].split(",") if t.strip())
        unknown = [k for k in train if k not in cls._TRAIN_KEYS]
        if unknown:
            raise TypeError(f"unknown training setting {unknown[0]!r}")
        num_envs = int(train.get("num_envs", 1))
        if num_envs > 1 and kind.episodic and (train.get("workers") or 1) > 1:
            raise ValueError("the policy search runs a generation's episodes side by side either in "
                             "--workers processes or in one --num-envs vector env: give one of them")
        if train.get("workers") is not None and not kind.episodic:
            raise ValueError(f"--workers does not apply to --agent {agent}")
        agent_kwargs = {**kind.preset_kwargs(p, num_envs), **overrides}
        ptrain = p.get("train", {})
        defaults = {"task": ptrain.get("task", "digits"),
                    "steps": ptrain.get("steps", DEFAULT_TRAIN_STEPS), "select_best": ptrain.get("select_best", 0),
                    "eval_seeds": list(ptrain.get("eval_seeds", [SELECTION_SEED])),
                    "collapse_termination": bool(ptrain.get("collapse_termination", False)),
                    "finite_horizon": bool(ptrain.get("finite_horizon", False))}
        settings = cls(agent=agent, preset=preset, env_kwargs=env_kwargs, agent_kwargs=agent_kwargs,
                       **{**defaults, **train})
        settings.validate()
        return settings

    @property
    def _episode_steps_estimate(self) -> int:
        return -(-int(self.env_kwargs.get("episode_length", 200)) // int(self.env_kwargs.get("updates_per_step", 1)))

    @property
    def generation_steps(self) -> int | None:
        """Env steps of one policy-search generation (``population`` x ``episodes_per_candidate``
        episodes of ``ceil(episode_length / updates_per_step)`` steps; on the suite, whose
        instances have their own horizons, ``episode_length`` is the longest); ``None`` for the
        other agents."""
        if not AGENT_TYPES[self.agent].episodic:
            return None
        per_episode = self._episode_steps_estimate
        return int(self.agent_kwargs.get("population", 12)) * int(self.agent_kwargs.get("episodes_per_candidate", 1)) \
            * per_episode

    def validate(self) -> "TrainSettings":
        """Check the tasks exist (names or ``module:function``), a policy search's budget holds at
        least one generation (it runs whole generations only: a smaller one would train nothing
        and save an untrained controller), and the record is well-formed."""
        from envs.tasks import TASKS

        scale = self.agent_kwargs.get("reward_scale")
        if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"--reward-scale must be a finite number > 0 (it multiplies every reward), got {scale!r}")
        if not self.tasks:
            raise ValueError("--task: give a task name")
        from envs.suite import TRAINING_TASK

        unknown = [t for t in self.tasks if t not in TASKS and ":" not in t and t != TRAINING_TASK]
        if unknown:
            raise ValueError(f"--task: unknown task {unknown[0]!r}; choose from {', '.join(TASKS)} "
                             f"(or a comma-separated list of them), or {TRAINING_TASK}")
        if TRAINING_TASK in self.tasks and (len(self.tasks) > 1 or self.num_envs > 1):
            raise ValueError(f"--task {TRAINING_TASK} trains on the suite alone, one episode at a time "
                             f"(no other task, no --num-envs)")
        if self.data_root is not None:
            from pathlib import Path

            if not Path(self.data_root).is_dir():
                raise ValueError(f"--data-root: {self.data_root!r} is not a directory")
        try:
            self.to_json()
        except ValueError as exc:  # CheckpointError: name the field, not a file
            raise ValueError(str(exc).replace("'settings.json': ", "")) from None
        generation = self.generation_steps
        if generation is not None and self.steps < generation:
            raise ValueError(f"--steps {self.steps} is less than one generation of the policy search "
                             f"({generation // self._episode_steps_estimate} episodes x "
                             f"{self._episode_steps_estimate} steps = {generation} "
                             f"steps), so nothing would be trained; give --steps {generation} or more")
        return self
