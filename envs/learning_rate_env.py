"""``LearningRateEnv``: primary training of a neural network as a Gymnasium environment."""
from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import torch

# observations and the action -> rate mapping live in envs.control (shared with the scheduler)
from envs.config import EnvConfig
from envs.control import ACTIONS, FEATURES, LOG_FLOOR, ControlState, check_number, check_seed, grad_norm  # noqa: F401
from envs.primary import PrimaryTrainer
from envs.step_core import StepCore, StepPlan
from envs.trainer_list import TrainerList
from envs.rewards import REWARDS, TRANSFORMS, RewardTransform, reward_plan  # noqa: F401
from envs.tasks import Task, make_task


def _is_size(v) -> bool:
    """An integer >= 1 (a batch size), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1


# the default validation split takes at most this share of the training set, so that a small
# dataset (the suite's iris instances hold 113 training examples) keeps most of it for training
VALIDATION_MAX_SHARE = 0.25


def default_validation_size(batch_size: int, n_train: int) -> int:
    """The validation split held out of ``n_train`` training examples for a held batch of
    ``batch_size`` examples, unless ``validation_size`` is given: one batch, at most
    ``VALIDATION_MAX_SHARE`` of the training set."""
    return min(int(batch_size), int(VALIDATION_MAX_SHARE * n_train))


def _validation_size(config: EnvConfig, n_train: int) -> int:
    """The validation split's size, with the checks across groups: the validation reward and the
    ``val_loss`` feature measure a held batch of ``validation_batch_size`` examples from it
    (:func:`default_validation_size` unless ``validation_size`` is given)."""
    reward, features = config.reward, config.control.features
    unknown = [f for f in features if f not in FEATURES]
    if unknown:  # (ControlState says so too, but the split is sized first)
        raise ValueError(f"unknown features {unknown}; choose from {list(FEATURES)}")
    needs_val = reward.reward == "validation" or "val_loss" in features
    if (needs_val or (reward.reward == "probe" and reward.probe_batch_size is None)) \
            and not _is_size(reward.validation_batch_size):
        raise ValueError(f"reward={reward.reward!r} and the val_loss feature measure a held batch of "
                         f"validation_batch_size examples: it must be an integer >= 1, got "
                         f"{reward.validation_batch_size!r}")
    if reward.probe_batch_size is not None and not _is_size(reward.probe_batch_size):
        raise ValueError(f"probe_batch_size (the probe batch of reward='probe') must be None or an "
                         f"integer >= 1, got {reward.probe_batch_size!r}")
    size = config.primary.validation_size
    if size is None:
        size = default_validation_size(reward.validation_batch_size, n_train) if needs_val else 0
    if needs_val and size < 1:
        raise ValueError(f"reward='validation' and the val_loss feature need validation_size >= 1 (the task "
                         f"has {n_train} training examples)")
    if size >= n_train:
        raise ValueError(f"validation_size={size} holds out the whole training set ({n_train} examples); "
                         f"it must be below {n_train}")
    return size


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
    ``anneal="linear"`` (any action but ``relative``): every rate and step cap the action sets is
    multiplied by the fraction of ``episode_length`` left at the middle of its block, a linear
    decay to zero that the controller does not have to learn
    (:meth:`envs.control.ControlState.anneal_factor`).
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
    examples; by default ``validation_batch_size``, at most a quarter of the training set), fixed
    or redrawn each step (``rotating_validation``).
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
        :class:`~envs.tasks.Task`.
    config: an :class:`~envs.config.EnvConfig`, the settings in three typed groups: ``primary``
        (optimizer, optimizer_kwargs, per_group, fresh_w0, eval_every, validation_size),
        ``control`` (lr_min, lr_max, action and its parameters, features, obs_max,
        log_observations, relative_loss, safety_net, anneal, episode_length, updates_per_step) and ``reward`` (reward,
        reward_transform, reward_scale, the held batches, divergence); each field is documented
        there. Default: every default.
    **settings: any setting by its flat name (``lr_min=1e-4``, ``reward="probe"``, ...), as
        ``gymnasium.make(id, **kwargs)`` passes them; they replace ``config``'s values.
        ``updates_per_step`` (``k``): the action's rate is held for ``k`` updates, each on its
        own batch; the reward compares the reward batch before and after the whole block;
        ``episode_length`` and ``eval_every`` count primary updates, so an episode has
        ``ceil(episode_length / k)`` env steps.
    seed: the seed of the first ``reset()`` without one (``None``, the default: a random seed
        drawn then; an integer makes unseeded use deterministic, as the training scripts need).
    device: ``auto``, ``cpu`` or ``cuda``. data_root / download: where datasets live.
    render_mode: see Rendering.

    ## Version History
    - v0 (current): the paper's protocol and the options above. Later additions, all keeping
      every default setting's numbers: ``probe_batch_size`` (the probe batch of
      ``reward="probe"`` was sized by ``validation_batch_size``, still its default);
      ``reward_scale`` now scales the divergence penalty too (it multiplied only the loss
      decrement, so a scale above 1 made divergence relatively cheaper; at the default
      ``reward_scale=1`` no reward changes, and no recorded run used another). On the CPU a
      convolutional task's network now trains in channels-last layout (faster; the same
      computation, float rounding ~1e-7 relative per step apart from before, see
      :func:`envs.primary.channels_last_on_cpu`); not an id change; ``anneal`` (default
      ``none``, the action as before).

    ## Info
    ``lr``, ``loss_before``, ``loss_after``, ``batch_loss`` (``f(w_t; x_i)``), ``diverged``,
    ``step`` (primary updates so far, not env steps), ``critic_next_obs`` (the next observation with its loss entry replaced by
    ``loss_after``: the paper's ``s_i^{t+1}`` for the critic's TD target) and ``eval`` when due;
    ``reset()`` gives ``lr``, ``step``, ``batch_loss``, ``seed`` and ``eval``. The README has
    them in one table.
    """

    metadata = {"render_modes": ["ansi", "rgb_array", "human"], "render_fps": 4}

    def __init__(self, task: str | Task = "digits", config: EnvConfig | None = None, *,
                 seed: int | None = None, device: str = "auto", data_root: str | None = None,
                 download: bool = True, render_mode: str | None = None, **settings: Any) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.render_mode = render_mode
        # flat keyword arguments (gymnasium.make's, presets', recorded settings') become the typed
        # groups in one adapter; each group checks its own numbers, ControlState the controller's
        self.config = config = EnvConfig.from_flat(settings, base=config)
        primary, reward = config.primary, config.reward
        check_seed("seed", seed)
        # the reward's bookkeeping (which batch, which transform, divergence): envs.rewards
        self.reward_plan = reward_plan(reward.reward)
        self.reward_fn = RewardTransform(reward.reward_transform, float(reward.reward_scale),
                                         float(reward.divergence_penalty), float(reward.divergence_factor))
        task = make_task(task, data_root=data_root, download=download)
        validation_size = _validation_size(config, len(task.x_train))
        # seed=None: the first reset() without a seed draws one (Gymnasium's convention); until
        # then the trainer holds seed 0's w0, which that reset replaces
        self.trainer = PrimaryTrainer(task, optimizer=primary.optimizer, optimizer_kwargs=primary.optimizer_kwargs,
                                      device=device, seed=0 if seed is None else seed, per_group=primary.per_group,
                                      validation_size=validation_size, data_root=data_root, download=download)
        self.reward_mode, self.reward_transform = reward.reward, reward.reward_transform
        self.reward_scale = self.reward_fn.scale
        self.validation_batch_size = int(reward.validation_batch_size)
        self.probe_batch_size = (self.validation_batch_size if reward.probe_batch_size is None
                                 else int(reward.probe_batch_size))
        self.rotating_validation = bool(reward.rotating_validation)
        self.divergence_factor, self.divergence_penalty = self.reward_fn.divergence_factor, self.reward_fn.divergence_penalty
        self.fresh_w0, self.eval_every = bool(primary.fresh_w0), int(primary.eval_every)
        self.default_seed = None if seed is None else int(seed)

        self.n_groups = self.trainer.n_groups
        # the controller's interface (observation, action -> rate, running state): one owner,
        # shared with agents.scheduler.ControllerScheduler
        self.control = ControlState(self.n_groups, **dataclasses.asdict(config.control))
        self.features = self.control.features
        self.action_space = self.control.action_space
        self.observation_space = self.control.observation_space
        # validation/probe rewards compare a held batch (of this size) before and after the update
        self.held_batch_size = (self.validation_batch_size if reward.reward == "validation"
                                else self.probe_batch_size if reward.reward == "probe" else 0)
        # reset and step: the step core of N runs, here with N = 1 (shared with the vector env)
        self.core = StepCore(TrainerList([self.trainer]), [self.control], StepPlan(
            self.reward_plan, self.reward_fn, self.held_batch_size, self.validation_batch_size,
            self.rotating_validation, self.eval_every, self.fresh_w0))
        self._seeded = False
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

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        check_seed("reset(seed=...)", seed)
        if seed is None and not self._seeded:
            # the first reset without a seed: the constructor's seed, or a fresh random one
            # (Gymnasium's convention; the envs of a vector env must differ), recorded in info
            seed = self.default_seed if self.default_seed is not None else \
                int(np.random.SeedSequence().generate_state(1)[0])
        super().reset(seed=seed)
        self._seeded = True
        (obs,), (info,) = self.core.reset([0], [seed])
        if self.render_mode is not None:
            self._history = {"step": [0], "batch_loss": [info["batch_loss"]], "lr": [info["lr"]]}
            self._last_info = info
            if self.render_mode == "human":
                print(self._render_text())
        return obs, info

    @property
    def current_batch(self) -> torch.Tensor:
        """Indices of the batch ``x_i`` whose gradient at ``w_t`` is in ``.grad`` (the next update's)."""
        return self.core.idx[0]

    def step(self, action):
        if not self._seeded:
            raise RuntimeError("call reset() before step()")
        result = self.core.step(self.core.decide([action]))
        obs, info = result.obs[0], result.infos[0]
        reward, diverged, truncated = float(result.rewards[0]), bool(result.terminated[0]), bool(result.truncated[0])
        if self.render_mode is not None:
            self._record_for_render(info, reward, diverged, truncated)
        return obs, reward, diverged, truncated, info

    # ------------------------------------------------------------------ rendering
    def _record_for_render(self, info: dict, reward: float, terminated: bool, truncated: bool) -> None:
        self._history["step"].append(info["step"])
        self._history["batch_loss"].append(self.core.loss[0])  # f(w_{t+1}; x_j), the observed loss
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
