"""N single primary runs behind the batched trainer's interface.

:class:`TrainerList` holds one :class:`~envs.primary.PrimaryTrainer` per run and offers the
operations of :class:`~envs.batched.BatchedPrimaryTrainer` (run index ``i`` for per-run
operations, index tensors of shape ``(N, B)`` and an optional ``envs`` selection for the batched
ones), computed run by run. The step core (:mod:`envs.step_core`) is written against that one
interface, so a model or an optimizer without a batched form, and the single env (N = 1), take
the same path through reset and step as the batched runs.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from envs.control import grad_norm, weight_norm
from envs.primary import PrimaryTrainer


class RunBatches:
    """The batches of run ``i``, drawn from its own stream (``self.streams[i]``: its seeded batch
    order, validation split and probe batch), as ``PrimaryTrainer`` draws them."""

    streams: list

    def next_batch(self, i: int) -> Tensor:
        return self.streams[i].next_batch()

    def validation_batch(self, i: int, size: int, rotating: bool = False) -> Tensor:
        return self.streams[i].validation_batch(size, rotating)

    def probe_batch(self, i: int, size: int, rotating: bool = False) -> Tensor:
        return self.streams[i].probe_batch(size, rotating)


class TrainerList(RunBatches):
    """``trainers[i]`` trains run ``i``; each call of the batched interface loops over the runs.

    Args:
        trainers: the runs' trainers (at least one), sharing task, device and optimizer settings.
    """

    def __init__(self, trainers: Sequence[PrimaryTrainer]) -> None:
        if not trainers:
            raise ValueError("need at least one trainer")
        self.trainers = list(trainers)
        self.num_envs = len(self.trainers)
        self.device = self.trainers[0].device
        self.n_groups = self.trainers[0].n_groups

    @classmethod
    def replicate(cls, template: PrimaryTrainer, seeds: Sequence[int]) -> "TrainerList":
        """Run 0 is ``template`` (seeded ``seeds[0]``); run ``i`` a new trainer of its task and
        settings seeded ``seeds[i]``."""
        others = [PrimaryTrainer(template.task, optimizer=template.optimizer_name,
                                 optimizer_kwargs=template.optimizer_kwargs, device=template.device,
                                 seed=s, per_group=template.per_group, validation_size=len(template.x_val))
                  for s in seeds[1:]]
        return cls([template, *others])

    @property
    def streams(self) -> list[PrimaryTrainer]:
        """Each run's batch stream (validation and probe batches, its seed): its trainer."""
        return self.trainers

    def _ids(self, envs) -> list[int]:
        if envs is None:
            return list(range(self.num_envs))
        return [int(i) for i in (envs.tolist() if isinstance(envs, Tensor) else envs)]

    # ------------------------------------------------------------------ set-up
    def seed(self, i: int, seed: int) -> None:
        self.trainers[i].seed(seed)

    def reset(self, i: int, new_w0: bool = False) -> None:
        self.trainers[i].reset(new_w0=new_w0)

    def state_dict(self, i: int) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.trainers[i].model.state_dict().items()}

    # ------------------------------------------------------------------ training
    def loss_and_grad(self, idx: Tensor, envs=None, other: tuple[Tensor, str] | None = None):
        """As ``BatchedPrimaryTrainer.loss_and_grad``: row ``j`` of ``idx`` is the batch of the
        ``j``-th selected run; the other batch's loss is measured first, at the same weights."""
        losses, others = [], []
        for j, i in enumerate(self._ids(envs)):
            trainer = self.trainers[i]
            if other is not None:
                others.append(trainer.batch_loss(other[0][j], split=other[1]))
            losses.append(trainer.loss_and_grad(idx[j]))
        if other is None:
            return torch.stack(losses)
        return torch.stack(losses), torch.stack(others)

    def batch_loss(self, idx: Tensor, split: str = "train", envs=None) -> Tensor:
        return torch.stack([self.trainers[i].batch_loss(idx[j], split=split)
                            for j, i in enumerate(self._ids(envs))])

    def grad_norm(self, envs=None) -> Tensor:
        return torch.stack([grad_norm(self.trainers[i].parameters()) for i in self._ids(envs)])

    def weight_norm(self, envs=None) -> Tensor:
        """``||w||`` of each selected run (as :func:`envs.control.weight_norm`)."""
        return torch.stack([weight_norm(self.trainers[i].parameters()) for i in self._ids(envs)])

    def update(self, lr: np.ndarray, active: np.ndarray | None = None) -> None:
        """One optimizer step of every run where ``active`` (default all) is True, at its
        rates ``lr[i]`` (shape ``(N, n_groups)``)."""
        lr = np.asarray(lr, dtype=np.float64).reshape(self.num_envs, self.n_groups)
        for i, trainer in enumerate(self.trainers):
            if active is None or active[i]:
                trainer.update(lr[i].tolist())

    def evaluate(self, envs: Sequence[int], splits: Sequence[str] = ("train", "test"),
                 chunk: int = 256) -> list[dict[str, float]]:
        return [self.trainers[i].evaluate(splits, chunk) for i in envs]

    # ------------------------------------------------------------------ per-run state, flat (read-only)
    def flat_params(self, envs=None) -> Tensor:
        return torch.stack([torch.cat([p.detach().reshape(-1) for p in self.trainers[i].parameters()])
                            for i in self._ids(envs)])

    def flat_grads(self, envs=None) -> Tensor:
        return torch.stack([self.trainers[i].flat_grad().detach().clone() for i in self._ids(envs)])

    def full_grads(self, envs=None) -> Tensor:
        rows = []
        for i in self._ids(envs):
            tr = self.trainers[i]
            params = list(tr.model.parameters())
            loss = tr.loss_fn(tr.model(tr.x_train), tr.y_train)
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).detach())
        return torch.stack(rows)
