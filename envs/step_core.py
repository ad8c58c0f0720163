"""The step protocol of N primary runs, written once.

:class:`StepCore` resets and steps N runs (paper Section 3, Algorithm 1: observe, act, update,
reward, next observation) against the batched trainer's interface: a
:class:`~envs.batched.BatchedPrimaryTrainer` (one batched forward/backward for all runs) or a
:class:`~envs.trainer_list.TrainerList` (single trainers, one after another).
:class:`~envs.learning_rate_env.LearningRateEnv` is its view with N = 1 and
:class:`~envs.vector_env.LearningRateVectorEnv` its view with N runs; each run's controller state
(observation, action -> rate) is its own :class:`~envs.control.ControlState`, and the reward
bookkeeping is :mod:`envs.rewards`.

A reset or step costs one host-device synchronisation for all runs: the losses it needs are
collected by name in a :class:`~envs.rewards.Pending` and fetched together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import gymnasium as gym
import numpy as np
import torch

from envs.control import ControlState
from envs.rewards import Pending, RewardPlan, RewardTransform


@dataclass(frozen=True)
class StepPlan:
    """What a reset and a step measure, shared by all runs.

    Attributes:
        reward_plan / reward_fn: which batch the reward compares and how (:mod:`envs.rewards`).
        held_batch_size: the validation/probe reward batch's size (0 for the other rewards).
        validation_batch_size: the ``val_loss`` feature's batch size.
        rotating_validation: redraw the validation/probe batch every step.
        eval_every: full evaluation every so many primary updates (0: never).
        fresh_w0: a new ``w0`` at each reset without a seed.
    """

    reward_plan: RewardPlan
    reward_fn: RewardTransform
    held_batch_size: int
    validation_batch_size: int
    rotating_validation: bool
    eval_every: int
    fresh_w0: bool


@dataclass
class StepResult:
    """One step of N runs: row ``i`` of each is run ``i``'s."""

    obs: list[np.ndarray]
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: list[dict]


class StepCore:
    """Reset and step of N primary runs.

    Args:
        trainer: the runs' trainer (the batched interface: ``BatchedPrimaryTrainer`` or
            ``TrainerList``).
        controls: one :class:`~envs.control.ControlState` per run.
        plan: the measurements (:class:`StepPlan`).
        name_runs: prefix errors and warnings with the run (``sub-env i:``), as a vector env does.

    Per-run state (lists of length N): ``idx`` (the batch ``x_i`` whose gradient the next update
    applies), ``loss`` (``f(w_t; x_i)``, the observed loss), ``held_loss`` (the fixed held
    batch's loss at ``w_t``), ``initial_loss`` (the episode's first observation, for divergence).
    """

    def __init__(self, trainer, controls: Sequence[ControlState], plan: StepPlan,
                 name_runs: bool = False) -> None:
        self.trainer, self.controls, self.plan = trainer, list(controls), plan
        self.num_runs = n = len(self.controls)
        self.name_runs = name_runs
        self.features = self.controls[0].features
        self.n_groups = self.controls[0].n_groups
        self.idx: list = [None] * n
        self.loss = [0.0] * n
        self.held_loss = [0.0] * n
        self.initial_loss = [0.0] * n
        self._warned_obs_max = False

    def _label(self, i: int) -> str:
        return f"sub-env {i}: " if self.name_runs else ""

    def _sel(self, ids: Sequence[int]) -> torch.Tensor:
        return torch.as_tensor(list(ids), dtype=torch.long, device=self.trainer.device)

    def held_batch(self, i: int) -> torch.Tensor:
        """Run ``i``'s validation/probe reward batch (fixed unless rotating)."""
        p = self.plan
        return p.reward_plan.held_batch(self.trainer.streams[i], p.held_batch_size, p.rotating_validation)

    def validation_batch(self, i: int) -> torch.Tensor:
        """Run ``i``'s batch of the ``val_loss`` feature (fixed unless rotating)."""
        return self.trainer.validation_batch(i, self.plan.validation_batch_size, self.plan.rotating_validation)

    def _add_features(self, pending: Pending, ids: Sequence[int] | None) -> None:
        """The measurements the observation needs of runs ``ids`` (None: all, a step): the
        validation loss, the gradient's norm (at a reset also for the trust action's ``||g_0||``)."""
        tr, every, control = self.trainer, list(range(self.num_runs)) if ids is None else ids, self.controls[0]
        sel = None if ids is None else self._sel(ids)
        if "val_loss" in self.features:
            pending.add("val_loss", tr.batch_loss(torch.stack([self.validation_batch(i) for i in every]),
                                                  split="val", envs=sel))
        if control.observes_grad_norm or (ids is not None and control.needs_weight_norm):
            pending.add("grad_norm", tr.grad_norm(envs=sel))

    def _weight_norms(self, ids: Sequence[int] | None = None) -> list[float | None]:
        """``||w_t||`` of runs ``ids`` (None: all) where the action needs it (``trust``), else ``None`` s."""
        n = self.num_runs if ids is None else len(ids)
        if not self.controls[0].needs_weight_norm:
            return [None] * n
        return self.trainer.weight_norm(envs=None if ids is None else self._sel(ids)).tolist()

    def _update_norms(self) -> tuple[list[float], list[float | None]]:
        """Every run's ``||g_t||`` and (``trust``) ``||w_t||`` for this update's caps, in one
        synchronisation."""
        tr = self.trainer
        if not self.controls[0].needs_weight_norm:
            return tr.grad_norm().tolist(), [None] * self.num_runs
        grad_norms, weight_norms = torch.stack([tr.grad_norm(), tr.weight_norm()]).tolist()
        return grad_norms, weight_norms

    def info_lr(self, i: int, lr: np.ndarray | None = None):
        """Run ``i``'s rate for ``info["lr"]``: a float, or an array with one rate per group."""
        lr = self.controls[i].lr if lr is None else lr
        return float(lr[0]) if self.n_groups == 1 else lr.copy()

    # ------------------------------------------------------------------ reset
    def reset(self, ids: Sequence[int], seeds: Sequence[int | None]) -> tuple[list[np.ndarray], list[dict]]:
        """Start a new episode in runs ``ids`` (``seeds[j]``: re-seed run ``ids[j]``; ``None``: its
        weights back to ``w0``, or a fresh ``w0``, its batch order continuing). Returns their
        first observations and infos (``lr``, ``step``, ``batch_loss``, ``seed``, ``eval``)."""
        tr, plan = self.trainer, self.plan
        idx, held = [], []
        for i, s in zip(ids, seeds):
            if s is not None:
                tr.seed(i, s)
            else:
                tr.reset(i, new_w0=plan.fresh_w0)
            # each run's draws in this order: batch, held batch, validation batch
            idx.append(tr.next_batch(i))
            if plan.reward_plan.held:
                held.append(self.held_batch(i))
        sel = self._sel(ids)
        pending = Pending()
        pending.add("loss", tr.loss_and_grad(torch.stack(idx), envs=sel))
        if plan.reward_plan.held:
            pending.add("held", tr.batch_loss(torch.stack(held), split=plan.reward_plan.split, envs=sel))
        self._add_features(pending, ids)
        values = pending.resolve_rows()  # one synchronisation
        evals = tr.evaluate(ids) if plan.eval_every else None
        weight_norms = self._weight_norms(ids)
        rows, infos = [], []
        for j, i in enumerate(ids):
            v = values[j]
            loss = v["loss"]
            self.idx[i], self.loss[i], self.initial_loss[i] = idx[j], loss, loss
            self.held_loss[i] = v.get("held", 0.0)
            rows.append(self.controls[i].start(loss, val_loss=v.get("val_loss", 0.0),
                                               grad_norm=v.get("grad_norm", 0.0), weight_norm=weight_norms[j]))
            self._check_initial_loss(i, loss)
            info = {"lr": self.info_lr(i), "step": 0, "batch_loss": loss, "seed": tr.streams[i]._seed}
            if evals is not None:
                info["eval"] = evals[j]
            infos.append(info)
        return rows, infos

    def _check_initial_loss(self, i: int, loss: float) -> None:
        obs_max = self.controls[i].obs_max
        if not loss < obs_max and not self._warned_obs_max:
            # every step would count as divergence and the observation would be stuck at obs_max
            self._warned_obs_max = True
            gym.logger.warn(f"{self._label(i)}the initial mini-batch loss {loss:.4g} is not below "
                            f"obs_max={obs_max:g}: every step will end the episode as diverged. "
                            f"Pass a larger obs_max, or rescale the task's targets.")

    # ------------------------------------------------------------------ step
    def decide(self, actions) -> np.ndarray:
        """Each run's rates for this decision, shape ``(N, n_groups)`` (``ControlState.decide``
        per run); a bad action raises before any run moves."""
        rates = []
        for i, control in enumerate(self.controls):
            try:
                rates.append(control.decide(actions[i]))
            except (ValueError, TypeError) as exc:
                if not self.name_runs:
                    raise
                raise type(exc)(f"sub-env {i}: {exc}") from exc
        return np.stack(rates)

    def step(self, rates: np.ndarray) -> StepResult:
        """One decision of every run at ``rates`` (from :meth:`decide`): the reward batch's loss
        before, the block of updates, the loss after and the next observation, the rewards."""
        tr, plan = self.trainer, self.plan.reward_plan
        n = self.num_runs
        pending = Pending()
        # the reward batch's loss before the update: known (same-batch: f(w_t; x_i); a fixed held
        # batch: its loss after the last step) or measured now, in the step's one synchronisation
        next_idx = held_idx = None
        if plan.next_batch_first:
            next_idx = [tr.next_batch(i) for i in range(n)]
        elif plan.held:
            held_idx = [self.held_batch(i) for i in range(n)]
        before = [plan.known_before(self.loss[i], self.held_loss[i], self.plan.rotating_validation)
                  for i in range(n)]
        if before[0] is None:
            pending.add("before", tr.batch_loss(torch.stack(held_idx if plan.held else next_idx),
                                                split=plan.split))
        t_before = [c.t for c in self.controls]
        used = self._apply_block(rates)
        # the reward batch's loss after the update and the next observation with its gradient, in
        # one call at the new weights (next-batch: the reward batch is the next observation's)
        if next_idx is None:
            next_idx = [tr.next_batch(i) for i in range(n)]
        if plan.batch == "update" or plan.held:
            other = torch.stack(self.idx if plan.batch == "update" else held_idx)
            next_loss, after = tr.loss_and_grad(torch.stack(next_idx), other=(other, plan.split))
            pending.add("after", after)
        else:
            next_loss = tr.loss_and_grad(torch.stack(next_idx))
        pending.add("next", next_loss)
        self._add_features(pending, None)
        values = pending.resolve_rows()  # the step's one synchronisation
        return self._results(values, before, next_idx, rates, used, t_before)

    def _apply_block(self, rates: np.ndarray) -> list[list[np.ndarray]]:
        """The block of updates at ``rates``: the first with the gradients already computed,
        further ones (``updates_per_step > 1``) each on a new batch; a run whose block is shorter
        (its episode's end) sits the remaining updates out. Returns each run's rates per update
        where a step-length cap makes them differ (``action="capped"``), else empty lists."""
        tr, n = self.trainer, self.num_runs
        capped = self.controls[0].needs_grad_norm
        used: list[list[np.ndarray]] = [[] for _ in range(n)]
        blocks = np.array([c.block_length() for c in self.controls])
        for j in range(int(blocks.max())):
            active = None if j == 0 else blocks > j
            if j > 0:
                idx = [tr.next_batch(i) if active[i] else self.idx[i] for i in range(n)]
                tr.loss_and_grad(torch.stack(idx))
            step_rates = rates
            if capped:  # each run's rate through its cap, with its gradient's (and weights') norm
                norms, weight_norms = self._update_norms()
                step_rates = np.stack([c.update_rate(r, g, w) for c, r, g, w
                                       in zip(self.controls, rates, norms, weight_norms)])
                for i in range(n):
                    if active is None or active[i]:
                        used[i].append(step_rates[i])
            tr.update(step_rates, active=active)
        for i, control in enumerate(self.controls):
            control.advance(rates[i], int(blocks[i]))
        return used

    def _results(self, values: list[dict], before: list, next_idx: list, rates: np.ndarray,
                 used: list, t_before: list[int]) -> StepResult:
        """Observations, rewards, ends and infos of every run from the step's measurements."""
        n, plan = self.num_runs, self.plan
        result = StepResult([None] * n, np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), [None] * n)
        eval_ids = []
        for i in range(n):
            v, control = values[i], self.controls[i]
            next_obs_loss = v["next"]
            loss_after = v.get("after", next_obs_loss)
            loss_before = before[i] if before[i] is not None else v["before"]
            batch_loss = self.loss[i]
            if plan.reward_plan.held:
                self.held_loss[i] = loss_after
            self.idx[i], self.loss[i] = next_idx[i], next_obs_loss
            obs = control.observe(next_obs_loss, val_loss=v.get("val_loss"), grad_norm=v.get("grad_norm"))
            diverged = plan.reward_fn.diverged(loss_after, next_obs_loss, self.initial_loss[i], control.obs_max)
            critic_obs = obs.copy()
            critic_obs[0] = control.squash_loss(loss_after)
            # (the mean only where the rates differ within the block: a mean of equal floats may round)
            info = {"lr": self.info_lr(i, np.mean(used[i], axis=0) if used[i] else None),
                    "loss_before": loss_before, "loss_after": loss_after, "batch_loss": batch_loss,
                    "diverged": diverged, "step": control.t, "critic_next_obs": critic_obs}
            if control.needs_grad_norm:
                info["rate"], info["step_cap"] = float(rates[i][0]), control.step_cap
            truncated = control.t >= control.episode_length and not diverged
            every = max(plan.eval_every, 1)
            crossed = control.t // every > t_before[i] // every
            if plan.eval_every and (crossed or truncated) and not diverged:
                eval_ids.append(i)
            result.obs[i], result.infos[i] = obs, info
            result.rewards[i] = float(plan.reward_fn(loss_before, loss_after, diverged))
            result.terminated[i], result.truncated[i] = diverged, truncated
        for i, ev in zip(eval_ids, self.trainer.evaluate(eval_ids) if eval_ids else []):
            result.infos[i]["eval"] = ev
        return result
