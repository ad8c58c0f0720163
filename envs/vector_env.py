"""``LearningRateVectorEnv``: N primary training runs as one Gymnasium vector environment."""
from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.batched import BatchedPrimaryTrainer, UnbatchableError
from envs.control import check_seed
from envs.learning_rate_env import LearningRateEnv
from envs.primary import PrimaryTrainer
from envs.step_core import StepCore
from envs.trainer_list import TrainerList


def unbatch_info(infos: dict, i: int) -> dict:
    """Sub-env ``i``'s entries of a gymnasium batched info dict (``infos[key][i]`` where the mask
    ``infos["_" + key]`` allows it; nested dicts alike; numpy scalars as Python numbers). The
    autoreset entries ``final_obs`` / ``final_info`` are left out: unbatch ``infos["final_info"]``
    for an ended sub-env's last step."""
    out = {}
    for key, value in infos.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        mask = infos.get("_" + key)
        if mask is not None and not mask[i]:
            continue
        if isinstance(value, dict):
            out[key] = unbatch_info(value, i)
        else:
            item = value[i]
            out[key] = item.item() if isinstance(item, np.generic) else item
    return out


def stack_infos(dicts: list[dict | None]) -> dict:
    """Per-sub-env info dicts (``None``: no info) batched as gymnasium's ``VectorEnv._add_info``
    does (arrays of the values' types, ``_key`` masks, nested dicts alike), in one pass per key."""
    n = len(dicts)
    keys = list(dict.fromkeys(k for d in dicts if d for k in d))
    out: dict = {}
    for k in keys:
        present = np.array([bool(d) and k in d for d in dicts])
        first = next(d[k] for d in dicts if d and k in d)
        if isinstance(first, dict):
            out[k] = stack_infos([d[k] if p else None for d, p in zip(dicts, present)])
        else:
            if isinstance(first, np.ndarray):
                array = np.zeros((n, *first.shape), dtype=first.dtype)
            elif type(first) in (int, float, bool) or isinstance(first, np.number):
                array = np.zeros(n, dtype=type(first))
            else:
                array = np.full(n, None, dtype=object)
            for i in np.flatnonzero(present):
                array[i] = dicts[i][k]
            out[k] = array
        out["_" + k] = present
    return out


def _runs_trainer(template: PrimaryTrainer, seeds: list[int], batched: bool | None):
    """The N runs' trainer and, when they cannot be batched, why: a
    :class:`~envs.batched.BatchedPrimaryTrainer`, or a :class:`~envs.trainer_list.TrainerList` of
    single trainers (``batched=False``, or an unbatchable model or optimizer: a warning, or with
    ``batched=True`` a ``ValueError``)."""
    reason = "batched=False was given"
    if batched is not False:
        try:
            return BatchedPrimaryTrainer(template, seeds), None
        except UnbatchableError as exc:
            if batched:
                raise ValueError(f"batched=True, but this env cannot be batched: {exc}") from exc
            reason = str(exc)
            gym.logger.warn(f"LearningRateVectorEnv runs {len(seeds)} single LearningRateEnv(s) one after "
                            f"another (no batched primary training): {reason}")
    return TrainerList.replicate(template, seeds), reason


class LearningRateVectorEnv(VectorEnv):
    """``num_envs`` independent :class:`~envs.learning_rate_env.LearningRateEnv` runs, trained
    with one batched forward/backward per step.

    ## Description
    Sub-env ``i`` is exactly ``LearningRateEnv(task, seed=seed + i, **kwargs)``: its own primary
    network (own ``w0``, batch order, learning rate(s), optimizer state), its own controller state
    (:class:`~envs.control.ControlState`), its own episodes. Its trajectory (observations, rewards,
    rates, infos, weights) equals the single env's driven by the same actions, to float rounding
    (tests/test_vector_env.py checks 1e-5 relative). All N networks are trained by
    :class:`~envs.batched.BatchedPrimaryTrainer`: one batched call (layer by layer, or one
    ``torch.func.vmap``) computes the N losses and gradients, one batched optimizer step (SGD,
    momentum, Nesterov, Adam, AdamW) updates the stacked weights. Where that is impossible - a model ``torch.func`` cannot batch
    (BatchNorm in training mode, dropout, data-dependent control flow) or an optimizer without a
    batched form (Adagrad, RMSprop, the learning-rate-free ones, ...) - the N runs are single
    trainers one after another (:class:`~envs.trainer_list.TrainerList`, the same trainer
    interface) and the env warns once, saying why (``batched=False`` forces this; ``batched=True``
    makes it an error). ``env.batched`` tells which is in use. Either way reset and step are
    :class:`~envs.step_core.StepCore`'s, the single env's own (``LearningRateEnv`` is that core with
    N = 1).

    ## Action Space
    The single env's action space batched: ``Box(low, high, (num_envs, n))``; row ``i`` is env
    ``i``'s action (absolute / relative / raw, ``n`` rates with ``per_group``). An action batch
    of another shape raises ``ValueError`` naming the expected shape; a NaN or infinite action
    raises ``ValueError`` naming the sub-env; nothing is changed by a refused step.

    ## Observation Space
    The single env's observation space batched: ``Box(..., (num_envs, d), float32)``.

    ## Rewards
    Per sub-env, as the single env's (same-batch, next-batch, validation, probe; raw or log-ratio;
    ``-reward_scale * divergence_penalty`` on divergence), from the same
    :class:`~envs.rewards.RewardPlan` and :class:`~envs.rewards.RewardTransform`.
    ``step`` returns a float64 array of shape ``(num_envs,)``.

    ## Starting State
    ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i`` (its ``w0`` and batch order, as
    ``LearningRateEnv.reset(seed=s + i)``); ``reset()`` before any seeding uses ``seed + i``.
    A later ``reset()`` without a seed starts a new episode in every sub-env (weights back to
    ``w0``, or a fresh ``w0`` with ``fresh_w0``; batch orders continue).
    ``reset(options={"reset_mask": mask})`` (gymnasium's partial reset) restarts only the masked
    sub-envs, e.g. when a training wrapper ends an episode the env itself did not end.

    ## Episode End and autoreset
    Per sub-env, as the single env: truncation after ``episode_length`` primary updates,
    termination on divergence (only that sub-env; the others go on); and, as with gymnasium's
    ``TimeLimit``, truncation after ``max_episode_steps`` env steps when that is given.
    ``metadata["autoreset_mode"]`` is ``AutoresetMode.SAME_STEP``: a sub-env whose episode ended
    is reset within the same ``step`` call; the returned observation is its new episode's first,
    the final observation and info are in ``infos["final_obs"]`` / ``infos["final_info"]`` (with
    the masks ``infos["_final_obs"]`` / ``infos["_final_info"]``), as gymnasium's
    ``SyncVectorEnv(autoreset_mode="SameStep")`` does. (SAME_STEP rather than gymnasium's default
    NEXT_STEP: no env step is spent on a reset, and it is stable-baselines3's convention, so
    :class:`agents.vec_env.SB3VecEnv` needs no bookkeeping.)

    ## Info
    The single env's keys, batched the gymnasium way (``infos[key][i]`` with the mask
    ``infos["_" + key]``): ``lr`` (float, or an array per group), ``loss_before``, ``loss_after``,
    ``batch_loss``, ``diverged``, ``step``, ``critic_next_obs``, ``eval`` (a dict of arrays).

    ## Arguments
    task: as ``LearningRateEnv`` (a name or a :class:`~envs.tasks.Task`). num_envs: number of
    sub-envs (an integer >= 1). seed: sub-env ``i``'s default seed is ``seed + i``.
    batched: ``None`` (batched when possible, else N single envs with a warning), ``True``
    (batched or ``ValueError``), ``False`` (N single envs). max_episode_steps: optional env-step
    limit per episode. Every other keyword argument is ``LearningRateEnv``'s.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, task="digits", num_envs: int = 1, *, seed: int = 0, batched: bool | None = None,
                 max_episode_steps: int | None = None, **kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if max_episode_steps is not None and (not isinstance(max_episode_steps, (int, np.integer))
                                              or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be None or an integer >= 1, got {max_episode_steps!r}")
        check_seed("seed", seed)
        self.num_envs = n = int(num_envs)
        self.default_seed = 0 if seed is None else int(seed)
        self.max_episode_steps = max_episode_steps
        # sub-env 0 as a single env: validates the arguments, resolves the task and holds the data
        template = LearningRateEnv(task, seed=self.default_seed, **kwargs)
        self._template = template
        self.single_action_space = template.action_space
        self.single_observation_space = template.observation_space
        self.action_space = batch_space(self.single_action_space, n)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.metadata = dict(self.metadata)
        self.render_mode = None
        self.n_groups = template.n_groups
        self.features = template.features

        seeds = [self.default_seed + i for i in range(n)]
        self.trainer, self.fallback_reason = _runs_trainer(template.trainer, seeds, batched)
        self.batched = self.fallback_reason is None
        # the step protocol of the N runs: one core, each run with its own controller state
        self.core = StepCore(self.trainer, [copy.deepcopy(template.control) for _ in range(n)],
                             template.core.plan, name_runs=True)
        self.controls = self.core.controls
        self._seeded = False
        self._elapsed = np.zeros(n, dtype=np.int64)  # env steps in the current episodes
        self._obs = np.zeros(self.observation_space.shape, dtype=self.single_observation_space.dtype)

    # ------------------------------------------------------------------ public helpers
    @property
    def single_env(self) -> LearningRateEnv:
        """Sub-env 0's settings as a single env (the template, whose trainer is run 0's data)."""
        return self._template

    def model_state(self, i: int) -> dict[str, torch.Tensor]:
        """Sub-env ``i``'s primary weights, as its model's ``state_dict()``."""
        return self.trainer.state_dict(i)

    # ------------------------------------------------------------------ per-sub-env state (read-only)
    # What a policy or a trace may read of each sub-env between steps (agents.baselines.run_episodes):
    # the pending batch gradient (the one the next step's first update applies), its norm, the
    # weights, and the full training-set gradient. ``envs``: the sub-envs to read (default all);
    # rows come back in that order. Nothing here changes any state.
    def _sel(self, envs):
        if envs is None:
            return None
        return torch.as_tensor([int(i) for i in envs], dtype=torch.long, device=self.trainer.device)

    def pending_grad_norms(self, envs=None) -> np.ndarray:
        """``||g_t||`` per sub-env: the norm of the batch gradient its next update applies (as
        :func:`envs.control.grad_norm` of a single env's parameters), in one synchronisation."""
        return np.asarray(self.trainer.grad_norm(envs=self._sel(envs)).tolist(), dtype=np.float64)

    def flat_weights(self, envs=None) -> torch.Tensor:
        """Each sub-env's weights as one flat row (``model.parameters()`` order), shape ``(len, P)``."""
        return self.trainer.flat_params(self._sel(envs))

    def pending_grads(self, envs=None) -> torch.Tensor:
        """Each sub-env's pending batch gradient as one flat row (as ``PrimaryTrainer.flat_grad``)."""
        return self.trainer.flat_grads(self._sel(envs))

    def full_gradients(self, envs=None) -> torch.Tensor:
        """Each sub-env's gradient of the full training-set loss at its current weights, one flat
        row each; the pending batch gradients are untouched."""
        return self.trainer.full_grads(self._sel(envs))

    def _check_actions(self, actions) -> np.ndarray:
        shape = (self.num_envs, *self.single_action_space.shape)
        if isinstance(actions, torch.Tensor):  # a torch policy's output (requires_grad or on a GPU): its value
            actions = actions.detach().cpu().numpy()
        try:
            arr = np.asarray(actions)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"actions must be an array of shape {shape}, got {actions!r}: {exc}") from exc
        if arr.shape == (self.num_envs,) and shape[1:] == (1,):
            arr = arr.reshape(shape)
        if arr.shape != shape:
            raise ValueError(f"actions must have shape {shape} (num_envs, action size), got {arr.shape}")
        return arr

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        """Reset every sub-env; ``seed=s`` gives sub-env ``i`` the seed ``s + i`` (a list gives
        each its own). ``options={"reset_mask": mask}`` (gymnasium's partial reset) starts a new
        episode only in the sub-envs where ``mask`` is True (e.g. after a wrapper ended their
        episodes); the others' rows of the returned observations are their current ones."""
        super().reset(seed=None)
        n = self.num_envs
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"reset(seed=...) takes an int or {n} seeds, got {len(seeds)}")
        for s in seeds:
            check_seed("reset(seed=...)", s)
        mask = np.ones(n, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (n,):
                raise ValueError(f"options['reset_mask'] must have shape ({n},), got {mask.shape}")
            if not self._seeded and not mask.all():
                raise RuntimeError("the first reset() must reset every sub-env")
        ids = [int(i) for i in np.flatnonzero(mask)]
        if seed is None and not self._seeded:
            seeds = [self.default_seed + i for i in range(n)]
        rows, infos = self.core.reset(ids, [seeds[i] for i in ids])
        self._elapsed[mask] = 0
        self._seeded = True
        reset_infos = [None] * n
        for i, row, info in zip(ids, rows, infos):
            self._obs[i], reset_infos[i] = row, info
        return self._obs.copy(), stack_infos(reset_infos)

    def step(self, actions):
        if not self._seeded:
            raise RuntimeError("call reset() before step()")
        result = self.core.step(self.core.decide(self._check_actions(actions)))
        obs_rows, infos = result.obs, result.infos
        # SAME_STEP autoreset of the sub-envs whose episodes ended, in one reset of the core
        self._elapsed += 1
        if self.max_episode_steps is not None:
            result.truncated |= self._elapsed >= self.max_episode_steps
        done = [int(i) for i in np.flatnonzero(result.terminated | result.truncated)]
        finals = [None] * self.num_envs
        for i in done:
            finals[i] = {"final_obs": obs_rows[i], "final_info": infos[i]}
        if done:
            rows, reset_infos = self.core.reset(done, [None] * len(done))
            for i, row, info in zip(done, rows, reset_infos):
                obs_rows[i], infos[i] = row, info
            self._elapsed[done] = 0
        batched_infos = stack_infos(finals) if done else {}
        batched_infos.update(stack_infos(infos))
        self._obs = np.stack(obs_rows)
        return self._obs.copy(), result.rewards, result.terminated, result.truncated, batched_infos
