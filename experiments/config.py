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

from dataclasses import dataclass, field, fields
from typing import Any

#: the validation seed of checkpoint selection (neither a training nor an evaluation seed)
SELECTION_SEED = 500
#: evaluation seeds are HELD_OUT_SEED_START, HELD_OUT_SEED_START + 1, ... (never trained on)
HELD_OUT_SEED_START = 1000
#: at most this many evaluation seeds (each is a full run of every method)
MAX_SEEDS = 10_000
#: seeds are unsigned 64-bit integers (torch.Generator.manual_seed's range)
SEED_LIMIT = 2 ** 64


def held_out_seeds(n: int) -> list[int]:
    """The first ``n`` held-out evaluation seeds."""
    return list(range(HELD_OUT_SEED_START, HELD_OUT_SEED_START + n))


def parse_seeds(text: str) -> list[int]:
    """``"5"`` -> ``[1000, ..., 1004]``; ``"1,2,7"`` -> ``[1, 2, 7]``; ``ValueError`` otherwise."""
    text = (text or "").strip()
    if not text:
        raise ValueError("--seeds is empty: give a count (e.g. 5) or a list (e.g. 1000,1001)")
    short = text if len(text) <= 40 else text[:37] + "..."
    if "," in text:
        items = [s for s in text.split(",") if s.strip()]
        if len(items) > MAX_SEEDS:
            raise ValueError(f"--seeds: {len(items)} seeds given, at most {MAX_SEEDS} are supported")
        try:
            seeds = [int(s) for s in items]
        except ValueError:
            raise ValueError(f"--seeds {short!r}: expected a count or comma-separated integers") from None
    else:
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"--seeds {short!r}: expected a count or comma-separated integers") from None
        if n < 1:
            raise ValueError(f"--seeds {text}: need at least one seed")
        if n > MAX_SEEDS:
            raise ValueError(f"--seeds {short}: at most {MAX_SEEDS} seeds are supported (each seed is a "
                             f"full run of every method)")
        seeds = held_out_seeds(n)
    if not seeds:
        raise ValueError("--seeds is empty: give a count (e.g. 5) or a list (e.g. 1000,1001)")
    bad = next((s for s in seeds if not 0 <= s < SEED_LIMIT), None)
    if bad is not None:
        shown = str(bad) if len(str(bad)) <= 30 else str(bad)[:27] + "..."
        raise ValueError(f"--seeds: seed {shown} is out of range; seeds must be integers in [0, 2**64 - 1]")
    return list(dict.fromkeys(seeds))


@dataclass
class EvaluationSettings:
    """What :func:`experiments.protocol.evaluate_methods` runs (evaluate.py's flags)."""

    task: str = "digits"
    """Evaluation task: a name of :data:`envs.tasks.TASKS` or a user task ``package.module:function``."""
    updates: int = 1000
    """Primary updates (mini-batches) per run."""
    seeds: list[int] = field(default_factory=lambda: held_out_seeds(5))
    """Primary seeds every method runs on (default: the first five held-out seeds)."""
    baselines: list[str] = field(default_factory=lambda: ["all"])
    """Baseline names or aliases of :mod:`experiments.methods` (expanded by :meth:`validate`)."""
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

    def validate(self) -> "EvaluationSettings":
        """Check every field once (``ValueError`` naming the flag); expand baseline aliases and
        resolve the device. Returns ``self``."""
        from envs.primary import resolve_device
        from envs.tasks import TASKS
        from experiments.methods import parse_baselines

        if self.task not in TASKS and ":" not in self.task:
            raise ValueError(f"unknown task {self.task!r}; choose one of: {', '.join(TASKS)}, "
                             f"or 'package.module:function' returning an envs.Task")
        for name, minimum in (("updates", 1), ("jobs", 1), ("eval_every", 1), ("episodes", 0)):
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
