"""The rewards of :class:`~envs.learning_rate_env.LearningRateEnv`, written once.

Both :class:`~envs.learning_rate_env.LearningRateEnv` and
:class:`~envs.vector_env.LearningRateVectorEnv` (N runs in one batched step) read their reward
bookkeeping from here:

- :class:`RewardPlan`, one per reward mode (:data:`REWARD_PLANS`): which batch the reward
  measures before and after the update - the update's own batch (``same-batch``), the next batch
  (``next-batch``), a validation batch (``validation``) or the probe batch of training examples
  (``probe``) - and which of those losses is already known without a forward pass;
- :class:`RewardTransform`: ``raw`` (``before - after``) or ``log-ratio``
  (``log(before) - log(after)``), times ``scale``; the divergence rule and its penalty;
- :class:`Pending`: the losses of a reset or step, by name, fetched from the device in one
  synchronisation (so no code counts list positions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

REWARDS = ("same-batch", "next-batch", "validation", "probe")
TRANSFORMS = ("raw", "log-ratio")
LOSS_FLOOR = 1e-12  # losses are floored here before a log, and the divergence limit's initial loss


@dataclass(frozen=True)
class RewardPlan:
    """What a reward mode measures: the loss of one batch at ``w_t`` (before) and at ``w_{t+1}``
    (after the update, or the block of ``updates_per_step`` updates).

    ``batch`` is ``"update"`` (the update's own batch ``x_i``, whose loss at ``w_t`` is the
    observation), ``"next"`` (the next batch ``x_j``, drawn before the update; its loss at
    ``w_{t+1}`` is the next observation), ``"validation"`` (a batch of the validation split) or
    ``"probe"`` (the probe batch of training examples). The last two are *held* batches: fixed
    (their loss after one step is their loss before the next) or redrawn every step (rotating).
    ``split`` is the data split the batch indexes (``"train"`` or ``"val"``).
    """

    mode: str
    batch: str
    split: str = "train"

    @property
    def held(self) -> bool:
        """Whether the batch is a held validation/probe batch (drawn by :meth:`held_batch`)."""
        return self.batch in ("validation", "probe")

    @property
    def next_batch_first(self) -> bool:
        """Whether the next batch ``x_j`` is drawn before the update (it is the reward batch)."""
        return self.batch == "next"

    def known_before(self, observed: float, held: float, rotating: bool) -> float | None:
        """The reward batch's loss at ``w_t`` when known without a forward pass: the observed
        loss ``f(w_t; x_i)`` (same-batch) or the fixed held batch's loss from the last step
        (validation/probe, not rotating); ``None`` when it must be measured."""
        if self.batch == "update":
            return observed
        if self.held and not rotating:
            return held
        return None

    def held_batch(self, stream, size: int, rotating: bool) -> torch.Tensor:
        """Indices of the held batch from ``stream`` (a ``PrimaryTrainer``, or one run of a
        ``BatchedPrimaryTrainer``): the validation split's first ``size`` examples or the fixed
        probe batch, or a fresh random batch of ``size`` when ``rotating``."""
        if self.batch == "validation":
            return stream.validation_batch(size, rotating)
        if self.batch == "probe":
            return stream.probe_batch(size, rotating)
        raise ValueError(f"reward {self.mode!r} has no held batch")


REWARD_PLANS: dict[str, RewardPlan] = {
    "same-batch": RewardPlan("same-batch", "update"),
    "next-batch": RewardPlan("next-batch", "next"),
    "validation": RewardPlan("validation", "validation", split="val"),
    "probe": RewardPlan("probe", "probe"),
}


def reward_plan(mode: str) -> RewardPlan:
    """The plan of reward mode ``mode`` (one of :data:`REWARDS`), or ``ValueError``."""
    if mode not in REWARD_PLANS:
        raise ValueError(f"reward must be one of {REWARDS}, got {mode!r}")
    return REWARD_PLANS[mode]


@dataclass(frozen=True)
class RewardTransform:
    """Reward from the reward batch's losses before and after the update, and divergence.

    ``kind="raw"``: ``scale * (before - after)``; ``kind="log-ratio"``:
    ``scale * (log(before) - log(after))`` (losses floored at :data:`LOSS_FLOOR`).
    A diverged step's reward is ``-scale * divergence_penalty``: ``scale`` multiplies every
    reward, the penalty included, as the actor-critic's ``reward_scale`` does (at the default
    ``scale=1`` this is ``-divergence_penalty``).
    Divergence (:meth:`diverged`): a non-finite loss after the update, or one above
    ``min(obs_max, divergence_factor * the episode's first observation)``.
    """

    kind: str = "raw"
    scale: float = 1.0
    divergence_penalty: float = 10.0
    divergence_factor: float = 100.0

    def __post_init__(self) -> None:
        if self.kind not in TRANSFORMS:
            raise ValueError(f"reward_transform must be 'raw' or 'log-ratio', got {self.kind!r}")

    def diverged(self, loss_after: float, next_loss: float, initial_loss: float, obs_max: float) -> bool:
        """Whether the reward batch's loss after the update or the next observation's loss is
        non-finite or above the limit."""
        limit = min(obs_max, self.divergence_factor * max(initial_loss, LOSS_FLOOR))
        worst = max(loss_after, next_loss)
        return not (math.isfinite(loss_after) and math.isfinite(next_loss)) or worst > limit

    def __call__(self, before: float, after: float, diverged: bool = False) -> float:
        """The reward of a step whose reward batch's loss went from ``before`` to ``after``."""
        if diverged:
            return -(self.scale * self.divergence_penalty)
        if self.kind == "log-ratio":
            return self.scale * (math.log(max(before, LOSS_FLOOR)) - math.log(max(after, LOSS_FLOOR)))
        return self.scale * (before - after)


class Pending:
    """Named loss tensors of a reset or step, fetched from the device in one synchronisation:
    scalars (:meth:`resolve`: ``{name: float}``) or one value per run of a batched trainer
    (:meth:`resolve_rows`: ``[{name: float}, ...]``, one dict per run)."""

    def __init__(self) -> None:
        self._names: list[str] = []
        self._tensors: list[torch.Tensor] = []

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._names:
            raise KeyError(f"{name!r} is already pending")
        self._names.append(name)
        self._tensors.append(tensor)

    def resolve(self) -> dict[str, float]:
        return dict(zip(self._names, torch.stack(self._tensors).tolist()))

    def resolve_rows(self) -> list[dict[str, float]]:
        return [dict(zip(self._names, row)) for row in torch.stack(self._tensors, dim=1).tolist()]
