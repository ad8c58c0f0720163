"""``LearningRateEnv``: primary training of a neural network as a Gymnasium environment."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import gymnasium as gym
import numpy as np
import torch

# observations and the action -> rate mapping live in envs.control (shared with the scheduler)
from envs.control import (ACTIONS, FEATURES, LOG_FLOOR, ControlState, check_number, check_seed,  # noqa: F401
                           grad_norm, weight_norm)
from envs.primary import PrimaryTrainer
from envs.rewards import REWARDS, TRANSFORMS, Pending, RewardTransform, reward_plan  # noqa: F401
from envs.tasks import Task


def _is_size(v) -> bool:
    """An integer >= 1 (a batch size), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1


class LearningRateEnv(gym.Env):
    """Set the learning rate of a primary network's training, one mini-batch at a time.

    ## Description
    Reinforcement learning for learning-rate control (Xu et al. 2017, Algorithm 1). The
    environment trains a primary model (a :class:`~envs.tasks.Task`: data, model, loss) with
    a primary optimizer (SGD by default). At every step the agent chooses the learning rate
    of one update. Per step ``t``, with batch ``x_i`` drawn and ``grad f(w_t; x_i)`` computed:

    1. the observation was ``f(w_t; x_i)``, the mean loss of the current weights on ``x_i``;
    2. the action is mapped to a learning rate ``lr_t``;
    3. ``w_{t+1} = w_t - lr_t * grad f(w_t; x_i)`` (or the configured optimizer's step);
    4. the reward is ``f(w_t; x_i) - f(w_{t+1}; x_i)`` (``reward="same-batch"``);
    5. batch ``x_j`` is drawn; the next observation is ``f(w_{t+1}; x_j)``. Its backward pass
       is the next step's gradient, so a step costs one forward+backward plus one forward.
       This reuse of ``x_j`` as the next step's ``x_i`` is ours: the paper's Algorithm 1 samples
       a fresh ``x_i`` at the top of every step (line 3) and uses ``x_j`` only for the actor's
       update (line 20). It saves one forward per step, and the state the actor acts on is the
       loss of the batch its rate is applied to (docs/paper-deviations.md).

    ## Action Space
    ``action="absolute"`` (default): ``Box(-1, 1, (n,), float32)`` mapped log-uniformly onto
    ``[lr_min, lr_max]``: ``lr = lr_min * (lr_max / lr_min) ** ((a + 1) / 2)`` (a scaled box, as
    SB3's agents expect; not the paper's parametrisation, whose action is the rate itself:
    ``action="raw"`` below, the ``paper`` preset's).
    ``action="relative"``: ``Box(-1, 1, (n,))``, the rate is multiplied by
    ``relative_factor ** a`` (so within ``[1/f, f]``) every ``relative_every`` env steps, starting
    from ``initial_lr`` and clipped to ``[lr_min, lr_max]`` (Xu, Dai, Kemp, Metz 2019).
    ``action="raw"``: ``Box(lr_min, lr_max, (n,))``, the learning rate itself (the paper's
    ``a = pi(s)``; an action outside the box is clipped to it).
    ``action="capped"``: ``Box(-1, 1, (2,))``, a rate (log-uniform on ``[lr_min, lr_max]``) and
    a step-length cap (log-uniform on ``[step_cap_min, step_cap_max]``); every update of the
    decision uses ``min(rate, step_cap / ||g||)``, ``g`` the gradient that update applies, so no
    step is longer than the cap (with SGD: SGD with gradient-norm clipping at ``step_cap / rate``).
    Large rates train fast, and what kills a network is the occasional step that is too long,
    which shows in the gradient's norm, not in the loss (issue 16). ``info["rate"]`` and
    ``info["step_cap"]`` are the decision; ``info["lr"]`` is the mean rate the block used.
    ``action="trust"``: the capped action in the model's own units, so that one controller means
    the same on any model: the rate is a multiple (in ``[lr_min, lr_max]``) of ``||w_0|| / ||g_0||``
    (the rate whose first step would be as long as the weights) and the cap a fraction (in
    ``[step_cap_min, step_cap_max]``) of ``||w_t||`` (a trust ratio, as in LARS): every update
    uses ``min(rate, step_cap * ||w_t|| / ||g||)``.
    ``relative_loss=True``: the observation's first entry is ``log10(loss / the episode's first
    loss)``, in ``[-8, 2]``, the same on any problem (with the scale-free features ``grad_ratio``
    and ``loss_trend``, a controller that sees no absolute scale).
    ``safety_net=True`` (any action): a loss that climbs back towards the untrained network's,
    or is not finite, halves every later rate (:meth:`envs.control.ControlState.observe`).
    ``n`` is 1, or the number of layers with ``per_group=True`` (one rate per layer).
    Finite actions outside the box are clipped; NaN or infinite actions raise ``ValueError``,
    non-numeric ones ``TypeError``, wrong shapes ``ValueError``. ``info["lr"]`` is the rate used.
    This mapping and the observation below are :class:`envs.control.ControlState` (``env.control``),
    shared with :class:`agents.scheduler.ControllerScheduler`, which runs a trained controller in
    any PyTorch loop with exactly the env's observations and rates.

    ## Observation Space
    ``Box(0, obs_max, (1,), float32)``: the mini-batch loss (clipped to ``obs_max``), followed by
    the extra features named in ``features`` in the order given (off by default):
    ``lr`` (log-scaled onto [-1, 1], one per group; always on with ``action="relative"``),
    ``step_fraction``, ``loss_ema``, ``loss_var``, ``val_loss``, ``grad_norm``.
    With ``log_observations=True`` the loss-like entries (all but ``lr`` and ``step_fraction``)
    are given as ``log10`` in ``[-8, log10(obs_max)]``: losses span decades during training.

    ## Rewards
    ``reward="same-batch"`` (the paper's): ``f(w_t; x_i) - f(w_{t+1}; x_i)``.
    ``reward="next-batch"``: ``f(w_t; x_j) - f(w_{t+1}; x_j)`` on the next batch ``x_j``, which
    the update did not use (one extra forward, as for same-batch).
    ``reward="validation"``: the decrement of the loss on a batch of ``validation_batch_size``
    examples from a validation split held out of the training set (``validation_size``
    examples), fixed or redrawn each step (``rotating_validation``).
    ``reward="probe"``: the same on a probe batch of ``probe_batch_size`` examples of the
    training set itself (fixed or rotating; ``probe_batch_size=None``, the default, takes
    ``validation_batch_size``): a low-noise measure of training-loss progress, for
    when the goal is the training loss (the validation split's loss stops falling once the
    model fits its training set, so it rewards generalisation, not optimisation).
    ``reward_transform="log-ratio"`` gives ``log(before) - log(after)`` instead of
    ``before - after``. ``reward_scale`` multiplies every reward, the divergence penalty
    included: ``reward_scale * (before - after)``, or ``-reward_scale * divergence_penalty`` on
    divergence (the same meaning as the actor-critic's ``reward_scale``, which multiplies the
    whole reward before the TD error; the two multiply). At the default ``reward_scale=1`` no
    reward changes; see Version History.
    ``info["loss_before"]`` / ``info["loss_after"]`` are the two losses the reward compares.
    Which batch each mode measures, and the transform, are :mod:`envs.rewards`
    (``env.reward_plan``, ``env.reward_fn``), shared with :class:`~envs.vector_env.LearningRateVectorEnv`.
    **Divergence** (a non-finite loss, or one above ``divergence_factor`` (default 100) times
    the episode's first observation, or above ``obs_max``) ends the episode with ``terminated=True`` and
    reward ``-reward_scale * divergence_penalty`` (penalty default 10, in reward units at
    ``reward_scale=1``: far more than any
    loss decrement a normal episode can earn, so that divergence always costs the agent).
    The factor is generous on purpose: with small batches (regression2d's 10) one batch's loss
    can be ten times another's without anything going wrong; a real divergence overshoots any
    factor within a few steps. A collapse back to chance level is not divergence by this rule
    (see ``agents.wrappers.CollapseTermination`` for training).
    A task whose first loss is already at or above ``obs_max`` would diverge at every step:
    ``reset()`` warns about it once (raise ``obs_max`` or rescale the targets).

    ## Starting State
    The primary model's weights are ``w0``, drawn from ``seed`` (fixed for all episodes by
    default, re-drawn each episode with ``fresh_w0=True``); the optimizer state is fresh; the
    first observation is the loss of ``w0`` on a newly drawn batch. ``reset(seed=s)`` re-draws
    ``w0`` and restarts the batch order from ``s``. The first ``reset()`` without a seed uses the
    constructor's ``seed`` if one was given, else draws a random one (Gymnasium's convention);
    either way ``info["seed"]`` records it, and ``reset(seed=info["seed"])`` replays the run.

    ## Episode End
    Truncation after ``episode_length`` primary updates (the paper's reset frequency ``e``), that is
    after ``ceil(episode_length / updates_per_step)`` env steps (:attr:`max_episode_steps`, also
    ``env.spec.max_episode_steps`` for an env made by ``gymnasium.make``); termination on divergence.

    ## Rendering
    ``render_mode``: ``None``, ``"ansi"`` (a line of text for the current step), ``"rgb_array"``
    (a plot of the episode's loss and rate so far) or ``"human"`` (the line printed at every
    reset and step); see :meth:`render`.

    ## Copies, pickles and processes
    ``copy.deepcopy`` and ``pickle`` carry the whole state, including the gradient pending in
    ``.grad`` and the optimizer's state, so a copy continues exactly like the original (a task
    whose model factory or loss is a lambda cannot be pickled; the error says how to fix it).
    A worker process forked from a process that used torch runs torch single-threaded
    (:mod:`envs.fork_safety`), so ``AsyncVectorEnv`` and ``SubprocVecEnv`` never hang.

    ## Arguments
    task: task name (``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``, ``regression2d``) or a
        :class:`~envs.tasks.Task`. optimizer / optimizer_kwargs: the primary optimizer.
    episode_length: primary updates per episode (``e``). lr_min / lr_max: learning-rate range.
    action, relative_factor, relative_every, initial_lr, step_cap_min, step_cap_max, safety_net: see
    Action Space.
    reward, reward_transform, reward_scale: see Rewards.
    validation_size: examples held out of the training set as the validation split (default:
    ``validation_batch_size`` when ``reward="validation"`` or the ``val_loss`` feature needs it, else 0).
    validation_batch_size: the validation batch of ``reward="validation"`` and of the ``val_loss``
    feature (an integer >= 1 when used; default 200).
    probe_batch_size: the probe batch of ``reward="probe"`` (an integer >= 1, or ``None``, the
    default: ``validation_batch_size``, as before this argument existed; ``0`` raises ``ValueError``
    as ``validation_batch_size=0`` does with ``reward="probe"``).
    rotating_validation: redraw the validation/probe batch every step instead of a fixed one.
    features: extra state features. obs_max: observation cap.
    per_group: one rate per layer. divergence_factor, divergence_penalty: see Rewards.
    fresh_w0: re-draw ``w0`` every episode. eval_every: every N primary updates (and at reset
    and at the episode's end) put the full train/test loss and accuracy in ``info["eval"]``
    (0: never). updates_per_step: primary updates per env step (``k``, default 1, the paper's):
    the action's rate is held for ``k`` updates, each on its own batch; the reward compares the
    reward batch before and after the whole block; ``episode_length`` and ``eval_every`` still
    count primary updates, so an episode has ``ceil(episode_length / k)`` env steps.
    seed: the seed of the first ``reset()`` without one (``None``, the default: a random seed
        drawn then; an integer makes unseeded use deterministic, as the training scripts need).
    render_mode: see Rendering.
    device: ``auto``, ``cpu`` or ``cuda``. data_root / download: where datasets live.

    ## Version History
    - v0 (current): the paper's protocol and the options above. Later additions, all keeping
      every default setting's numbers: ``probe_batch_size`` (the probe batch of
      ``reward="probe"`` was sized by ``validation_batch_size``, still its default);
      ``reward_scale`` now scales the divergence penalty too (it multiplied only the loss
      decrement, so a scale above 1 made divergence relatively cheaper; at the default
      ``reward_scale=1`` no reward changes, and no recorded run used another). On the CPU a
      convolutional task's network now trains in channels-last layout (faster; the same
      computation, float rounding ~1e-7 relative per step apart from before, see
      :func:`envs.primary.channels_last_on_cpu`); not an id change.

    ## Info
    ``lr``, ``loss_before``, ``loss_after``, ``batch_loss`` (``f(w_t; x_i)``), ``diverged``,
    ``step`` (primary updates so far, not env steps), ``critic_next_obs`` (the next observation with its loss entry replaced by
    ``loss_after``: the paper's ``s_i^{t+1}`` for the critic's TD target) and ``eval`` when due;
    ``reset()`` gives ``lr``, ``step``, ``batch_loss``, ``seed`` and ``eval``. The README has
    them in one table.
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}

    def __init__(
        self,
        task: str | Task = "digits",
        optimizer: str = "sgd",
        optimizer_kwargs: dict | None = None,
        episode_length: int = 200,
        lr_min: float = 1e-5,
        lr_max: float = 1.0,
        action: str = "absolute",
        relative_factor: float = 2.0,
        relative_every: int = 1,
        initial_lr: float | None = None,
        reward: str = "same-batch",
        reward_transform: str = "raw",
        reward_scale: float = 1.0,
        validation_size: int | None = None,
        validation_batch_size: int = 200,
        rotating_validation: bool = False,
        probe_batch_size: int | None = None,
        features: Sequence[str] = (),
        obs_max: float = 1e3,
        per_group: bool = False,
        divergence_factor: float = 100.0,
        divergence_penalty: float = 10.0,
        fresh_w0: bool = False,
        eval_every: int = 0,
        updates_per_step: int = 1,
        log_observations: bool = False,
        step_cap_min: float = 1e-2,
        step_cap_max: float = 10.0,
        safety_net: bool = False,
        relative_loss: bool = False,
        seed: int | None = None,
        device: str = "auto",
        data_root: str | None = None,
        download: bool = True,
        render_mode: str | None = None,
    ) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.render_mode = render_mode
        # every number is checked here, once, with a message naming it (the controller-facing
        # ones in ControlState below): a NaN or a nonsensical value would otherwise run silently
        check_number("reward_scale", reward_scale, low=0, low_open=True)
        check_number("divergence_penalty", divergence_penalty, low=0)
        check_number("divergence_factor", divergence_factor, low=1, low_open=True)
        check_number("eval_every", eval_every, low=0, integer=True)
        check_number("episode_length", episode_length, low=1, integer=True)
        check_number("updates_per_step", updates_per_step, low=1, integer=True)
        check_number("lr_min", lr_min, low=0, low_open=True)
        check_number("lr_max", lr_max, low=0, low_open=True)
        check_number("step_cap_min", step_cap_min, low=0, low_open=True)
        check_number("step_cap_max", step_cap_max, low=0, low_open=True)
        check_seed("seed", seed)
        # the reward's bookkeeping (which batch, which transform, divergence): envs.rewards,
        # shared with LearningRateVectorEnv
        self.reward_plan = reward_plan(reward)
        self.reward_fn = RewardTransform(reward_transform, float(reward_scale), float(divergence_penalty),
                                         float(divergence_factor))
        # the controller-facing arguments (action, lr range, features, ...) are checked by
        # ControlState below; the unknown-feature check is needed first, for the validation split
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}; choose from {list(FEATURES)}")
        needs_val = reward == "validation" or "val_loss" in features
        if (needs_val or (reward == "probe" and probe_batch_size is None)) and not _is_size(validation_batch_size):
            raise ValueError(f"reward={reward!r} and the val_loss feature measure a held batch of "
                             f"validation_batch_size examples: it must be an integer >= 1, got "
                             f"{validation_batch_size!r}")
        if probe_batch_size is not None and not _is_size(probe_batch_size):
            raise ValueError(f"probe_batch_size (the probe batch of reward='probe') must be None or an "
                             f"integer >= 1, got {probe_batch_size!r}")
        if validation_size is None:
            validation_size = validation_batch_size if needs_val else 0
        if needs_val and validation_size < 1:
            raise ValueError("reward='validation' and the val_loss feature need validation_size >= 1")

        # seed=None: the first reset() without a seed draws one (Gymnasium's convention); until
        # then the trainer holds seed 0's w0, which that reset replaces
        self.trainer = PrimaryTrainer(task, optimizer=optimizer, optimizer_kwargs=optimizer_kwargs,
                                      device=device, seed=0 if seed is None else seed, per_group=per_group,
                                      validation_size=validation_size, data_root=data_root,
                                      download=download)
        self.reward_mode, self.reward_transform = reward, reward_transform
        self.reward_scale = self.reward_fn.scale
        self.validation_batch_size = int(validation_batch_size)
        self.probe_batch_size = self.validation_batch_size if probe_batch_size is None else int(probe_batch_size)
        self.rotating_validation = bool(rotating_validation)
        self.divergence_factor, self.divergence_penalty = float(divergence_factor), float(divergence_penalty)
        self.fresh_w0, self.eval_every = bool(fresh_w0), int(eval_every)
        self.default_seed = None if seed is None else int(seed)

        self.n_groups = self.trainer.n_groups
        # the controller's interface (observation, action -> rate, running state): one owner,
        # shared with agents.scheduler.ControllerScheduler
        self.control = ControlState(
            self.n_groups, lr_min=lr_min, lr_max=lr_max, action=action, relative_factor=relative_factor,
            relative_every=relative_every, initial_lr=initial_lr, features=features, obs_max=obs_max,
            log_observations=log_observations, episode_length=episode_length,
            updates_per_step=updates_per_step, step_cap_min=step_cap_min, step_cap_max=step_cap_max,
            safety_net=safety_net, relative_loss=relative_loss)
        self.features = self.control.features
        self.action_space = self.control.action_space
        self.observation_space = self.control.observation_space
        # validation/probe rewards compare a held batch (of this size) before and after the update
        self.held_batch_size = (self.validation_batch_size if reward == "validation"
                                else self.probe_batch_size if reward == "probe" else 0)
        self._seeded = False
        self._warned_obs_max = False
        self._registered_spec: gym.envs.registration.EnvSpec | None = None
        self._history: dict[str, list] = {"step": [], "batch_loss": [], "lr": []}  # for render()
        self._last_info: dict = {}

    # ------------------------------------------------------------------ spec
    @property
    def max_episode_steps(self) -> int:
        """Env steps (decisions) per episode: ``ceil(episode_length / updates_per_step)``."""
        return -(-self.episode_length // self.updates_per_step)

    @property
    def spec(self) -> gym.envs.registration.EnvSpec | None:
        """The registration spec (set by ``gymnasium.make``; ``None`` for a directly built env), with
        ``max_episode_steps`` telling the truth: the env truncates its own episodes after
        :attr:`max_episode_steps` env steps, whatever ``episode_length`` and
        ``updates_per_step`` were passed. (The ids register no ``max_episode_steps``, so that
        ``gymnasium.make`` adds no second ``TimeLimit`` of a stale length; one passed to
        ``gymnasium.make`` still adds gymnasium's ``TimeLimit``, whose spec shows that limit.)"""
        spec = self._registered_spec
        if spec is None or spec.max_episode_steps is not None:
            return spec
        return dataclasses.replace(spec, max_episode_steps=self.max_episode_steps)

    @spec.setter
    def spec(self, spec: gym.envs.registration.EnvSpec | None) -> None:
        self._registered_spec = spec

    # ------------------------------------------------------------------ helpers
    # the controller-facing settings live once, in ControlState
    episode_length = property(lambda self: self.control.episode_length,
                              doc="Primary updates per episode (the paper's ``e``).")
    updates_per_step = property(lambda self: self.control.updates_per_step)
    lr_min = property(lambda self: self.control.lr_min)
    lr_max = property(lambda self: self.control.lr_max)
    initial_lr = property(lambda self: self.control.initial_lr)
    action_mode = property(lambda self: self.control.action_mode)
    obs_max = property(lambda self: self.control.obs_max)

    @property
    def _t(self) -> int:
        """Primary updates so far in this episode."""
        return self.control.t

    @property
    def _lr(self) -> np.ndarray:
        """The current rate(s), shape ``(n_groups,)``."""
        return self.control.lr

    def lr_to_unit(self, lr: np.ndarray | float) -> np.ndarray:
        """Learning rate -> its log-scaled position in [-1, 1] (inverse of the absolute action)."""
        return self.control.lr_to_unit(lr)

    def unit_to_lr(self, a: np.ndarray | float) -> np.ndarray:
        """Absolute action in [-1, 1] -> learning rate in [lr_min, lr_max], log-uniformly."""
        return self.control.unit_to_lr(a)

    def _grad_norm_tensor(self) -> torch.Tensor:
        return grad_norm(self.trainer.parameters())

    def _weight_norm(self) -> float | None:
        """``||w_t||`` when the action needs it (``trust``), else ``None``."""
        return float(weight_norm(self.trainer.parameters())) if self.control.needs_weight_norm else None

    def _val_idx(self) -> torch.Tensor:
        return self.trainer.validation_batch(self.validation_batch_size, self.rotating_validation)

    def _held_idx(self) -> torch.Tensor:
        """The reward batch of the validation and probe rewards (fixed unless rotating)."""
        return self.reward_plan.held_batch(self.trainer, self.held_batch_size, self.rotating_validation)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        check_seed("reset(seed=...)", seed)
        if seed is None and not self._seeded:
            # the first reset without a seed: the constructor's seed, or a fresh random one
            # (Gymnasium's convention; the envs of a vector env must differ), recorded in info
            seed = self.default_seed if self.default_seed is not None else \
                int(np.random.SeedSequence().generate_state(1)[0])
        super().reset(seed=seed)
        if seed is not None:
            self.trainer.seed(seed)
        else:
            self.trainer.reset(new_w0=self.fresh_w0)
        self._seeded = True
        plan = self.reward_plan
        self._idx = self.trainer.next_batch()
        pending = Pending()
        pending.add("loss", self.trainer.loss_and_grad(self._idx))
        if plan.held:
            pending.add("held", self.trainer.batch_loss(self._held_idx(), split=plan.split))
        if "val_loss" in self.features:
            pending.add("val_loss", self.trainer.batch_loss(self._val_idx(), split="val"))
        if self.control.observes_grad_norm or self.control.needs_weight_norm:
            pending.add("grad_norm", self._grad_norm_tensor())
        values = pending.resolve()
        self._loss = values["loss"]
        self._held_loss = values.get("held", 0.0)
        obs = self.control.start(self._loss, val_loss=values.get("val_loss", 0.0),
                                 grad_norm=values.get("grad_norm", 0.0), weight_norm=self._weight_norm())
        self._initial_loss = self._loss
        if not self._loss < self.obs_max and not self._warned_obs_max:
            # every step would count as divergence and the observation would be stuck at obs_max
            self._warned_obs_max = True
            gym.logger.warn(f"the initial mini-batch loss {self._loss:.4g} is not below obs_max="
                            f"{self.obs_max:g}: every step will end the episode as diverged. "
                            f"Pass a larger obs_max, or rescale the task's targets.")
        info = {"lr": self._info_lr(), "step": 0, "batch_loss": self._loss, "seed": self.trainer._seed}
        if self.eval_every:
            info["eval"] = self.trainer.evaluate()
        if self.render_mode is not None:
            self._history = {"step": [0], "batch_loss": [self._loss], "lr": [self._info_lr()]}
            self._last_info = info
            if self.render_mode == "human":
                print(self._render_text())
        return obs, info

    @property
    def current_batch(self) -> torch.Tensor:
        """Indices of the batch ``x_i`` whose gradient at ``w_t`` is in ``.grad`` (the next update's)."""
        return self._idx

    def _info_lr(self, lr: np.ndarray | None = None):
        lr = self._lr if lr is None else lr
        return float(lr[0]) if self.n_groups == 1 else lr.copy()

    def _update(self, lr: np.ndarray) -> np.ndarray:
        """One primary update with the gradient in ``.grad`` at rate(s) ``lr`` (through the
        step-length cap of ``action="capped"``, which needs this gradient's norm: one host
        synchronisation per update in that mode only). Returns the rate(s) used."""
        if self.control.needs_grad_norm:
            lr = self.control.update_rate(lr, float(self._grad_norm_tensor()), self._weight_norm())
        self.trainer.update(lr.tolist())
        return lr

    def step(self, action):
        if not self._seeded:
            raise RuntimeError("call reset() before step()")
        lr = self.control.decide(action)
        trainer, plan = self.trainer, self.reward_plan
        # the loss before the update on the reward batch: known (same-batch: f(w_t; x_i); a fixed
        # held batch: its loss after the last step) or measured now, in the step's one synchronisation
        pending = Pending()
        held_idx = next_idx = None
        if plan.next_batch_first:
            next_idx = trainer.next_batch()
        elif plan.held:
            held_idx = self._held_idx()
        loss_before = plan.known_before(self._loss, self._held_loss, self.rotating_validation)
        if loss_before is None:
            pending.add("before", trainer.batch_loss(held_idx if plan.held else next_idx, split=plan.split))

        # the block of updates at this rate: the first uses the gradient of x_i at w_t already in
        # .grad; each further one (updates_per_step > 1) draws its own batch
        t_before = self._t
        # (at least one: stepping on past truncation without reset still counts its update)
        n_updates = self.control.block_length()
        used = [self._update(lr)]
        for _ in range(n_updates - 1):
            trainer.loss_and_grad(trainer.next_batch())
            used.append(self._update(lr))
        self.control.advance(lr, n_updates)

        # the reward batch's loss after the update (next-batch: the next observation's loss)
        if plan.batch == "update":
            pending.add("after", trainer.batch_loss(self._idx))
        elif plan.held:
            pending.add("after", trainer.batch_loss(held_idx, split=plan.split))
        if next_idx is None:
            next_idx = trainer.next_batch()
        pending.add("next", trainer.loss_and_grad(next_idx))  # next observation and gradient at once
        if "val_loss" in self.features:
            pending.add("val_loss", trainer.batch_loss(self._val_idx(), split="val"))
        if self.control.observes_grad_norm:
            pending.add("grad_norm", self._grad_norm_tensor())
        values = pending.resolve()  # the step's one host-device synchronisation
        next_obs_loss = values["next"]
        loss_after = values.get("after", next_obs_loss)
        if loss_before is None:
            loss_before = values["before"]
        batch_loss = self._loss
        if plan.held:
            self._held_loss = loss_after
        self._idx, self._loss = next_idx, next_obs_loss
        obs = self.control.observe(next_obs_loss, val_loss=values.get("val_loss"),
                                   grad_norm=values.get("grad_norm"))

        diverged = self.reward_fn.diverged(loss_after, next_obs_loss, self._initial_loss, self.obs_max)
        reward = self.reward_fn(loss_before, loss_after, diverged)

        critic_obs = obs.copy()
        critic_obs[0] = self.control.squash_loss(loss_after)
        # (the mean only where the rates differ within the block: a mean of equal floats may round)
        used_lr = np.mean(used, axis=0) if self.control.needs_grad_norm else lr
        info = {"lr": self._info_lr(used_lr), "loss_before": loss_before, "loss_after": loss_after,
                "batch_loss": batch_loss, "diverged": diverged, "step": self._t,
                "critic_next_obs": critic_obs}
        if self.control.needs_grad_norm:
            info["rate"], info["step_cap"] = float(lr[0]), self.control.step_cap
        truncated = self._t >= self.episode_length and not diverged
        crossed = self._t // max(self.eval_every, 1) > t_before // max(self.eval_every, 1)
        if self.eval_every and (crossed or truncated) and not diverged:
            info["eval"] = trainer.evaluate()
        if self.render_mode is not None:
            self._record_for_render(info, float(reward), diverged, truncated)
        return obs, float(reward), diverged, truncated, info

    # ------------------------------------------------------------------ rendering
    def _record_for_render(self, info: dict, reward: float, terminated: bool, truncated: bool) -> None:
        self._history["step"].append(info["step"])
        self._history["batch_loss"].append(self._loss)  # f(w_{t+1}; x_j), the observed loss
        self._history["lr"].append(info["lr"])
        self._last_info = {**info, "reward": reward, "terminated": terminated, "truncated": truncated}
        if self.render_mode == "human":
            print(self._render_text())

    def _render_text(self) -> str:
        info = self._last_info
        if not info:
            return "LearningRateEnv: call reset() first"
        lr = np.atleast_1d(info["lr"])
        rate = " ".join(f"{r:.3e}" for r in lr)
        line = f"update {info['step']:>5}/{self.episode_length}  lr {rate}  batch loss {info['batch_loss']:.6g}"
        if "loss_after" in info:
            line += (f"  reward-batch loss {info['loss_before']:.6g} -> {info['loss_after']:.6g}"
                     f"  reward {info['reward']:+.4g}")
            if info["terminated"]:
                line += "  DIVERGED"
            elif info["truncated"]:
                line += "  (episode end)"
        return line

    def _render_plot(self) -> np.ndarray:
        # matplotlib's Agg canvas directly: no pyplot state, no display needed
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.8), dpi=100)
        canvas = FigureCanvasAgg(fig)
        loss_ax, lr_ax = fig.subplots(2, 1, sharex=True)
        steps = self._history["step"]
        # a diverged loss is drawn at the observation cap, as the observation shows it
        losses = np.clip(np.nan_to_num(np.asarray(self._history["batch_loss"], dtype=float),
                                       nan=self.obs_max, posinf=self.obs_max), 1e-12, self.obs_max)
        loss_ax.plot(steps, losses, color="tab:blue")
        loss_ax.set_yscale("log")
        loss_ax.set_ylabel("mini-batch loss")
        lr_ax.plot(steps, np.asarray(self._history["lr"], dtype=float).reshape(len(steps), -1),
                   color="tab:orange", drawstyle="steps-pre")
        lr_ax.set_yscale("log")
        lr_ax.set_ylim(self.lr_min, self.lr_max)
        lr_ax.set_ylabel("learning rate")
        lr_ax.set_xlabel("primary updates")
        lr_ax.set_xlim(0, self.episode_length)
        fig.suptitle(self._render_text(), fontsize=7)
        fig.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.1, hspace=0.12)  # tight_layout is slow
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

    def render(self):
        """Render the episode so far, as ``render_mode`` says (Gymnasium's convention):

        - ``"ansi"``: a line of text for the current step (primary updates so far, rate(s), the
          mini-batch loss, the reward batch's loss before and after, the reward);
        - ``"rgb_array"``: a 480x640x3 ``uint8`` image: the observed mini-batch loss and the
          learning rate against primary updates for the episode so far (for ``RecordVideo``);
        - ``"human"``: the env prints the ``"ansi"`` line itself at every reset and step, so
          ``render()`` returns ``None`` and prints nothing more (rl-zoo3's ``enjoy`` calls it
          after every step);
        - ``None``: warns and returns ``None``.
        """
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or "
                            "'rgb_array' to gymnasium.make or LearningRateEnv")
            return None
        if self.render_mode == "rgb_array":
            return self._render_plot()
        if self.render_mode == "human":
            return None
        return self._render_text()
