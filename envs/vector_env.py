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
from envs.rewards import Pending


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
    batched form (Adagrad, RMSprop, the learning-rate-free ones, ...) - the env runs N single
    ``LearningRateEnv`` s behind the same API and warns once, saying why (``batched=False``
    forces this; ``batched=True`` makes it an error). ``env.batched`` tells which is in use.

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

        self.trainer: BatchedPrimaryTrainer | None = None
        self.envs: list[LearningRateEnv] | None = None
        reason = "batched=False was given"
        if batched is not False:
            try:
                self.trainer = BatchedPrimaryTrainer(
                    template.trainer, [self.default_seed + i for i in range(n)])
            except UnbatchableError as exc:
                if batched:
                    raise ValueError(f"batched=True, but this env cannot be batched: {exc}") from exc
                reason = str(exc)
                gym.logger.warn(f"LearningRateVectorEnv runs {n} single LearningRateEnv(s) one after "
                                f"another (no batched primary training): {reason}")
        self.batched = self.trainer is not None
        self.fallback_reason = None if self.batched else reason
        if not self.batched:
            task_obj = template.trainer.task
            self.envs = [template] + [LearningRateEnv(task_obj, seed=self.default_seed + i, **kwargs)
                                      for i in range(1, n)]
        else:
            self.controls = [copy.deepcopy(template.control) for _ in range(n)]
        self._seeded = False
        self._elapsed = np.zeros(n, dtype=np.int64)  # env steps in the current episodes
        self._warned_obs_max = False
        # per sub-env state of the batched path, as LearningRateEnv's attributes of the same names
        self._idx: list = [None] * n            # batch x_i whose gradient is held for the next update
        self._loss = [0.0] * n                  # f(w_t; x_i)
        self._held_loss = [0.0] * n             # the fixed validation/probe batch's loss at w_t
        self._initial_loss = [0.0] * n          # the episode's first observation (divergence)
        self._obs = np.zeros(self.observation_space.shape, dtype=self.single_observation_space.dtype)

    # ------------------------------------------------------------------ public helpers
    @property
    def single_env(self) -> LearningRateEnv:
        """Sub-env 0's settings as a single env (the template; in fallback mode sub-env 0 itself)."""
        return self._template

    def model_state(self, i: int) -> dict[str, torch.Tensor]:
        """Sub-env ``i``'s primary weights, as its model's ``state_dict()``."""
        if self.batched:
            return self.trainer.state_dict(i)
        return {k: v.detach().clone() for k, v in self.envs[i].trainer.model.state_dict().items()}

    # ------------------------------------------------------------------ per-sub-env state (read-only)
    # What a policy or a trace may read of each sub-env between steps (agents.baselines.run_episodes):
    # the pending batch gradient (the one the next step's first update applies), its norm, the
    # weights, and the full training-set gradient. ``envs``: the sub-envs to read (default all);
    # rows come back in that order. Nothing here changes any state.
    def _env_ids(self, envs) -> list[int]:
        return list(range(self.num_envs)) if envs is None else [int(i) for i in envs]

    def _sel(self, envs):
        if envs is None:
            return None
        return torch.as_tensor(self._env_ids(envs), dtype=torch.long, device=self.trainer.device)

    def pending_grad_norms(self, envs=None) -> np.ndarray:
        """``||g_t||`` per sub-env: the norm of the batch gradient its next update applies (as
        :func:`envs.control.grad_norm` of a single env's parameters), in one synchronisation."""
        if self.batched:
            return np.asarray(self.trainer.grad_norm(envs=self._sel(envs)).tolist(), dtype=np.float64)
        from envs.control import grad_norm
        return np.array([float(grad_norm(self.envs[i].trainer.parameters())) for i in self._env_ids(envs)])

    def flat_weights(self, envs=None) -> torch.Tensor:
        """Each sub-env's weights as one flat row (``model.parameters()`` order), shape ``(len, P)``."""
        if self.batched:
            return self.trainer.flat_params(self._sel(envs))
        return torch.stack([torch.cat([p.detach().reshape(-1) for p in self.envs[i].trainer.parameters()])
                            for i in self._env_ids(envs)])

    def pending_grads(self, envs=None) -> torch.Tensor:
        """Each sub-env's pending batch gradient as one flat row (as ``PrimaryTrainer.flat_grad``)."""
        if self.batched:
            return self.trainer.flat_grads(self._sel(envs))
        return torch.stack([self.envs[i].trainer.flat_grad().detach().clone() for i in self._env_ids(envs)])

    def full_gradients(self, envs=None) -> torch.Tensor:
        """Each sub-env's gradient of the full training-set loss at its current weights, one flat
        row each; the pending batch gradients are untouched."""
        if self.batched:
            return self.trainer.full_grads(self._sel(envs))
        rows = []
        for i in self._env_ids(envs):
            tr = self.envs[i].trainer
            params = list(tr.model.parameters())
            loss = tr.loss_fn(tr.model(tr.x_train), tr.y_train)
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).detach())
        return torch.stack(rows)

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
        self._elapsed[mask] = 0
        if not self.batched:
            results = {i: self.envs[i].reset(seed=seeds[i]) for i in ids}
            reset_infos = [results[i][1] if i in results else None for i in range(n)]
            rows = [results[i][0] for i in ids]
        else:
            if seed is None and not self._seeded:
                seeds = [self.default_seed + i for i in range(n)]
            rows, infos = self._reset_batched(ids, [seeds[i] for i in ids])
            reset_infos = [None] * n
            for i, info in zip(ids, infos):
                reset_infos[i] = info
        self._seeded = True
        for i, row in zip(ids, rows):
            self._obs[i] = row
        return self._obs.copy(), self._stack_infos(reset_infos)

    def _reset_batched(self, ids: list[int], seeds: list):
        """Start a new episode in sub-envs ``ids`` (``seeds[j]``: re-seed sub-env ``ids[j]``,
        None: continue its seed), as ``LearningRateEnv.reset``; returns their first
        observations and infos."""
        tr, env = self.trainer, self._template
        plan = env.reward_plan
        idx, held, val = [], [], []
        for i, s in zip(ids, seeds):
            if s is not None:
                tr.seed(i, s)
            else:
                tr.reset(i, new_w0=env.fresh_w0)
            # the draws in LearningRateEnv.reset's order: batch, held batch, validation batch
            idx.append(tr.next_batch(i))
            if plan.held:
                held.append(self._held_idx(i))
            if "val_loss" in self.features:
                val.append(self._val_idx(i))
        sel = torch.as_tensor(ids, dtype=torch.long, device=tr.device)
        pending = Pending()
        pending.add("loss", tr.loss_and_grad(torch.stack(idx), envs=sel))
        if plan.held:
            pending.add("held", tr.batch_loss(torch.stack(held), split=plan.split, envs=sel))
        if "val_loss" in self.features:
            pending.add("val_loss", tr.batch_loss(torch.stack(val), split="val", envs=sel))
        if "grad_norm" in self.features:
            pending.add("grad_norm", tr.grad_norm(envs=sel))
        values = pending.resolve_rows()  # one synchronisation
        evals = tr.evaluate(ids) if env.eval_every else None
        rows, infos = [], []
        for j, i in enumerate(ids):
            v = values[j]
            loss = v["loss"]
            self._idx[i], self._loss[i] = idx[j], loss
            self._held_loss[i] = v.get("held", 0.0)
            self._initial_loss[i] = loss
            rows.append(self.controls[i].start(loss, val_loss=v.get("val_loss", 0.0),
                                               grad_norm=v.get("grad_norm", 0.0)))
            if not loss < env.obs_max and not self._warned_obs_max:
                self._warned_obs_max = True
                gym.logger.warn(f"sub-env {i}: the initial mini-batch loss {loss:.4g} is not below "
                                f"obs_max={env.obs_max:g}: every step will end the episode as diverged. "
                                f"Pass a larger obs_max, or rescale the task's targets.")
            # (the seed sub-env i's run was drawn from, as LearningRateEnv.reset records it)
            info = {"lr": self._info_lr(i), "step": 0, "batch_loss": loss, "seed": tr.streams[i]._seed}
            if evals is not None:
                info["eval"] = evals[j]
            infos.append(info)
            self._elapsed[i] = 0
        return rows, infos

    def _info_lr(self, i: int, lr: np.ndarray | None = None):
        lr = self.controls[i].lr if lr is None else lr
        return float(lr[0]) if self.n_groups == 1 else lr.copy()

    def _decide(self, actions: np.ndarray) -> np.ndarray:
        """Each sub-env's rates for this decision, shape ``(N, n_groups)``: ``ControlState.decide``
        per sub-env, or for the stateless ``absolute`` and ``raw`` mappings the same operations
        on the whole batch at once (validate, clip to the box, map, clip to the range)."""
        c = self.controls[0]
        if c.action_mode not in ("absolute", "raw"):
            rates = []
            for i, control in enumerate(self.controls):
                try:
                    rates.append(control.decide(actions[i]))
                except (ValueError, TypeError) as exc:
                    raise type(exc)(f"sub-env {i}: {exc}") from exc
            return np.stack(rates)
        if actions.dtype.kind not in "biuf":
            raise TypeError(f"actions must be numeric, got dtype {actions.dtype}")
        with np.errstate(over="ignore"):
            a = actions.astype(np.float64)
        finite = np.isfinite(a).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"sub-env {i}: action must be finite, got {a[i].tolist()}")
        a = np.clip(a, self.single_action_space.low, self.single_action_space.high)
        if c.action_mode == "raw":
            return np.clip(a, c.lr_min, c.lr_max)
        return np.clip(c.unit_to_lr(a), c.lr_min, c.lr_max)

    def _update(self, rates: np.ndarray, active, capped: bool, used: list) -> None:
        """One batched update; with a step-length cap (``action="capped"``) each sub-env's rate
        goes through ``ControlState.update_rate`` with its gradient's norm first."""
        if capped:
            norms = self.trainer.grad_norm().tolist()
            rates = np.stack([c.update_rate(r, g) for c, r, g in zip(self.controls, rates, norms)])
            for i in range(self.num_envs):
                if active is None or active[i]:
                    used[i].append(rates[i])
        self.trainer.update(rates, active=active)

    def _stack_infos(self, dicts: list) -> dict:
        """Per-sub-env info dicts (``None``: no info) batched as gymnasium's ``_add_info`` does
        (arrays of the values' types, ``_key`` masks), in one pass per key."""
        n = self.num_envs
        keys = list(dict.fromkeys(k for d in dicts if d for k in d))
        out: dict = {}
        for k in keys:
            present = np.array([bool(d) and k in d for d in dicts])
            first = next(d[k] for d in dicts if d and k in d)
            if isinstance(first, dict):
                out[k] = self._stack_infos([d[k] if p else None for d, p in zip(dicts, present)])
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

    def _val_idx(self, i: int) -> torch.Tensor:
        env = self._template
        return self.trainer.validation_batch(i, env.validation_batch_size, env.rotating_validation)

    def _held_idx(self, i: int) -> torch.Tensor:
        env = self._template
        return env.reward_plan.held_batch(self.trainer.streams[i], env.held_batch_size, env.rotating_validation)

    def step(self, actions):
        if not self._seeded:
            raise RuntimeError("call reset() before step()")
        actions = self._check_actions(actions)
        if not self.batched:
            return self._step_single(actions)
        return self._step_batched(actions)

    def _finish(self, i: int, terminated: np.ndarray, truncated: np.ndarray) -> bool:
        """Count sub-env ``i``'s step against ``max_episode_steps``; whether its episode ended."""
        self._elapsed[i] += 1
        if self.max_episode_steps is not None and self._elapsed[i] >= self.max_episode_steps:
            truncated[i] = True
        return bool(terminated[i] or truncated[i])

    def _step_single(self, actions):
        n = self.num_envs
        for i in range(n):  # refuse a bad action before any sub-env moves
            try:
                self.envs[i].control.validate_action(actions[i])
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"sub-env {i}: {exc}") from exc
        obs_rows, rewards = [None] * n, np.zeros(n)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        infos: dict = {}
        for i, env in enumerate(self.envs):
            obs_rows[i], rewards[i], terminated[i], truncated[i], info = env.step(actions[i])
            if self._finish(i, terminated, truncated):
                infos = self._add_info(infos, {"final_obs": obs_rows[i], "final_info": info}, i)
                obs_rows[i], info = env.reset()
                self._elapsed[i] = 0
            infos = self._add_info(infos, info, i)
        self._obs = np.stack(obs_rows)
        return self._obs.copy(), rewards, terminated, truncated, infos

    def _step_batched(self, actions):
        n, tr, env = self.num_envs, self.trainer, self._template
        plan = env.reward_plan
        rates = self._decide(actions)  # refuses a bad action before any sub-env moves
        capped = getattr(self.controls[0], "needs_grad_norm", False)  # per-update rates
        used = [[] for _ in range(n)]

        # the loss before the update on the reward batch, per sub-env, as LearningRateEnv.step:
        # known floats (same-batch, fixed held batch) or measured in the step's one synchronisation
        pending = Pending()
        next_idx = [None] * n
        held_idx = [None] * n
        if plan.next_batch_first:
            next_idx = [tr.next_batch(i) for i in range(n)]
        elif plan.held:
            held_idx = [self._held_idx(i) for i in range(n)]
        before = [plan.known_before(self._loss[i], self._held_loss[i], env.rotating_validation) for i in range(n)]
        if before[0] is None:
            pending.add("before", tr.batch_loss(torch.stack(held_idx if plan.held else next_idx), split=plan.split))

        # the block of updates: the first with the gradients already computed, further ones
        # (updates_per_step > 1) each on a new batch; a sub-env whose block is shorter (its
        # episode's end) sits the remaining updates out
        t_before = [c.t for c in self.controls]
        blocks = np.array([c.block_length() for c in self.controls])
        self._update(rates, None, capped, used)
        for j in range(1, int(blocks.max())):
            active = blocks > j
            idx = [tr.next_batch(i) if active[i] else self._idx[i] for i in range(n)]
            tr.loss_and_grad(torch.stack(idx))
            self._update(rates, active, capped, used)
        for i in range(n):
            self.controls[i].advance(rates[i], int(blocks[i]))

        # the reward batch's loss after the update (same-batch, held) and the next observation
        # with its gradient: one batched call at the new weights
        # (next-batch: the reward batch is the next observation's, its loss after is that loss)
        if not plan.next_batch_first:
            next_idx = [tr.next_batch(i) for i in range(n)]
        if plan.batch == "update":
            next_loss, after = tr.loss_and_grad(torch.stack(next_idx), other=(torch.stack(self._idx), "train"))
            pending.add("after", after)
        elif plan.held:
            next_loss, after = tr.loss_and_grad(torch.stack(next_idx), other=(torch.stack(held_idx), plan.split))
            pending.add("after", after)
        else:
            next_loss = tr.loss_and_grad(torch.stack(next_idx))
        pending.add("next", next_loss)
        if "val_loss" in self.features:
            pending.add("val_loss", tr.batch_loss(torch.stack([self._val_idx(i) for i in range(n)]), split="val"))
        if "grad_norm" in self.features:
            pending.add("grad_norm", tr.grad_norm())
        values = pending.resolve_rows()  # the step's one synchronisation

        obs_rows = [None] * n
        rewards = np.zeros(n)
        terminated, truncated = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        infos: dict = {}
        step_infos = [None] * n
        eval_ids = []
        for i in range(n):
            v = values[i]
            next_obs_loss = v["next"]
            loss_after = v.get("after", next_obs_loss)
            loss_before = before[i] if before[i] is not None else v["before"]
            batch_loss = self._loss[i]
            if plan.held:
                self._held_loss[i] = loss_after
            self._idx[i], self._loss[i] = next_idx[i], next_obs_loss
            control = self.controls[i]
            obs = control.observe(next_obs_loss, val_loss=v.get("val_loss"), grad_norm=v.get("grad_norm"))
            diverged = env.reward_fn.diverged(loss_after, next_obs_loss, self._initial_loss[i], env.obs_max)
            reward = env.reward_fn(loss_before, loss_after, diverged)
            critic_obs = obs.copy()
            critic_obs[0] = control.squash_loss(loss_after)
            info = {"lr": self._info_lr(i, np.mean(used[i], axis=0) if capped else None),
                    "loss_before": loss_before, "loss_after": loss_after,
                    "batch_loss": batch_loss, "diverged": diverged, "step": control.t,
                    "critic_next_obs": critic_obs}
            if capped:
                info["rate"], info["step_cap"] = float(rates[i][0]), control.step_cap
            trunc = control.t >= control.episode_length and not diverged
            every = max(env.eval_every, 1)
            crossed = control.t // every > t_before[i] // every
            if env.eval_every and (crossed or trunc) and not diverged:
                eval_ids.append(i)
            obs_rows[i], rewards[i], terminated[i], truncated[i] = obs, float(reward), diverged, trunc
            step_infos[i] = info
        if eval_ids:
            for i, ev in zip(eval_ids, tr.evaluate(eval_ids)):
                step_infos[i]["eval"] = ev

        # SAME_STEP autoreset of the sub-envs whose episodes ended, in one batched reset
        done = [i for i in range(n) if self._finish(i, terminated, truncated)]
        for i in done:
            infos = self._add_info(infos, {"final_obs": obs_rows[i], "final_info": step_infos[i]}, i)
        if done:
            rows, reset_infos = self._reset_batched(done, [None] * len(done))
            for i, row, info in zip(done, rows, reset_infos):
                obs_rows[i], step_infos[i] = row, info
        infos.update(self._stack_infos(step_infos))
        self._obs = np.stack(obs_rows)
        return self._obs.copy(), rewards, terminated, truncated, infos

    def close_extras(self, **kwargs) -> None:
        if self.envs is not None:
            for env in self.envs:
                env.close()
