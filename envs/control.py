"""``ControlState``: what a learning-rate controller sees and how its action becomes a rate.

The one owner of a controller's interface, shared by :class:`~envs.learning_rate_env.LearningRateEnv`
(training and evaluation) and :class:`agents.scheduler.ControllerScheduler` (any PyTorch loop):

- the **observation**: the mini-batch loss, then the named extra features (``lr``,
  ``step_fraction``, ``loss_ema``, ``loss_var``, ``val_loss``, ``grad_norm``, and the
  scale-free ``grad_ratio``, ``loss_trend``), optionally log10-scaled (``log_observations``),
  clipped to the observation box; with ``relative_loss`` the first entry is
  ``log10(loss / first loss)`` instead, the same on any problem;
- the **action -> learning-rate mapping**: ``absolute`` (log-uniform on ``[lr_min, lr_max]``),
  ``relative`` (multiply the current rate by ``relative_factor ** a`` every ``relative_every``
  decisions), ``raw``, or ``capped`` (a rate and a step-length cap: each update's rate is
  ``min(rate, step_cap / ||g_t||)``, see :meth:`ControlState.update_rate`), or ``trust``
  (the capped action in units of the model itself: a rate relative to ``||w_0|| / ||g_0||`` and a
  step cap relative to ``||w_t||``, a trust ratio as in LARS); one rate per parameter group
  with ``n_groups > 1``;
- the **anneal** (``anneal="linear"``): every rate and step cap multiplied by the fraction of the
  horizon left at the decision's block midpoint, a linear decay to zero that the controller does
  not have to learn (see :meth:`ControlState.anneal_factor`);
- the **safety net** (``safety_net``): a loss that climbs back towards the untrained network's
  (or stops being finite) halves every later rate, see :meth:`ControlState.observe`;
- the **running state** those need: primary updates done ``t``, the current rate(s), the loss
  EMA/variance, the last validation loss and gradient norm.

It holds no model and does no training: its caller measures losses and applies the rates.
Per decision the caller does ``lr = state.decide(action)``, applies ``lr`` for ``n`` updates,
``state.advance(lr, n)``, measures the next loss and calls ``state.observe(loss, ...)``.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from gymnasium import spaces

#: smallest log10 of a loss-like observation entry with ``log_observations=True``
LOG_FLOOR = -8.0
#: bounds of the first entry with ``relative_loss=True``: log10(loss / first loss)
RELATIVE_LOSS_BOUNDS = (LOG_FLOOR, 2.0)
#: named extra state features, and their observation bounds (``None``: a loss-like entry,
#: bounded by ``obs_max`` or its log10)
FEATURES: dict[str, tuple[float, float | None]] = {
    "lr": (-1.0, 1.0),            # current learning rate, log-scaled onto [-1, 1] (one per group)
    "step_fraction": (0.0, 1.0),  # step / episode_length
    "loss_ema": (0.0, None),      # exponential moving average (0.9) of the mini-batch loss
    "loss_var": (0.0, None),      # exponential moving variance (0.9) of the mini-batch loss
    "val_loss": (0.0, None),      # loss on the validation batch
    "grad_norm": (0.0, None),     # L2 norm of the mini-batch gradient
    # scale-free features: the same value for a loss or a gradient multiplied by any constant,
    # so that what a controller learns on one problem means the same on another (with them,
    # relative_loss=True makes the first entry scale-free too)
    "grad_ratio": (-4.0, 4.0),    # log10(||g_t|| / ||g_0||)
    "loss_trend": (-1.0, 1.0),    # log10 of the fast loss average now / at the previous decision
}
ACTIONS = ("absolute", "relative", "raw", "capped", "trust")
#: schedules multiplied onto a controller's rate and step cap (``none``: the action as it is)
ANNEALS = ("none", "linear")
#: features that need the gradient's norm measured at every observation
GRAD_NORM_FEATURES = ("grad_norm", "grad_ratio")
#: the safety net: a fast loss average above ``SAFETY_RISE`` x its best and back above the
#: ``SAFETY_LOST`` point between its best and the first loss (half the progress lost: a network
#: going back to where it started, e.g. dead ReLUs at chance level) halves every later rate, down
#: to ``SAFETY_FLOOR`` x; both conditions, so that mini-batch noise near a tiny loss (far below the
#: half-way point) or near the first loss (less than 1.5x) never fires it
SAFETY_RISE, SAFETY_LOST, SAFETY_FLOOR = 1.5, 0.5, 1e-3


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, integer: bool = False, optional: bool = False) -> None:
    """One check of a numeric argument at the boundary: a finite number (``integer``: a whole
    one, not a bool) in ``[low, high]`` (``low_open``: ``low`` excluded); ``optional``: ``None``
    is accepted too. Raises ``ValueError`` naming ``name``, the accepted range and the value."""
    if value is None and optional:
        return
    if integer:
        ok_type = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        kind = "an integer"
    else:
        ok_type = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        kind = "a finite number"
    ok = ok_type and math.isfinite(float(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"<= {high:g}")
        text = kind + (" " + " and ".join(bounds) if bounds else "") + (" (or None)" if optional else "")
        raise ValueError(f"{name} must be {text}, got {value!r}")


def check_seed(name: str, seed: Any) -> None:
    """A seed is ``None`` or an integer >= 0 (numpy's and torch's seeding refuse negative ones)."""
    check_number(name, seed, low=0, integer=True, optional=True)


def grad_norm(params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """L2 norm of all gradients in ``.grad`` (parameters without one count as zero), a 0-d
    tensor on their device (no synchronisation)."""
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    if not norms:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(norms))


def weight_norm(params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """L2 norm of all parameters, a 0-d tensor on their device (no synchronisation)."""
    norms = [torch.linalg.vector_norm(p.detach()) for p in params]
    if not norms:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(norms))


class ControlState:
    """Observation construction and action -> learning-rate mapping of a controller.

    Args:
        n_groups: number of rates (1, or one per parameter group).
        lr_min / lr_max: learning-rate range (``0 < lr_min < lr_max < inf``).
        action: ``absolute``, ``relative``, ``raw``, ``capped`` or ``trust`` (see the module docstring).
        step_cap_min / step_cap_max: ``action="capped"``: range of the step-length cap, the
            largest Euclidean length ``lr * ||g_t||`` one update may have (log-uniform, like the rate).
            ``action="trust"``: the cap as a fraction of ``||w_t||`` (and ``lr_min`` / ``lr_max``
            the range of the rate as a multiple of ``||w_0|| / ||g_0||``), see :meth:`decide`.
        safety_net: halve every later rate when the loss climbs back towards the untrained
            network's (see :meth:`observe`).
        anneal: ``linear`` multiplies every rate and step cap by the fraction of
            ``episode_length`` left (:meth:`anneal_factor`); ``none`` (default) does not.
        relative_loss: the observation's first entry is ``log10(loss / the episode's first loss)``
            (in ``RELATIVE_LOSS_BOUNDS``) instead of the loss.
        relative_factor / relative_every / initial_lr: the relative action's step factor, its
            decision interval (in decisions) and its starting rate (default ``sqrt(lr_min*lr_max)``).
        features: extra observation entries, in order; ``lr`` is prepended for ``relative``.
        obs_max: cap of loss-like entries. log_observations: give loss-like entries as log10.
        episode_length: primary updates per episode (``step_fraction``'s denominator).
        updates_per_step: primary updates per decision (held rate).

    Attributes: ``observation_space`` and ``action_space`` (``Box``), ``features`` (final
    tuple), ``t`` (primary updates so far), ``lr`` (current rates, shape ``(n_groups,)``).
    """

    def __init__(self, n_groups: int = 1, lr_min: float = 1e-5, lr_max: float = 1.0,
                 action: str = "absolute", relative_factor: float = 2.0, relative_every: int = 1,
                 initial_lr: float | None = None, features: Sequence[str] = (), obs_max: float = 1e3,
                 log_observations: bool = False, episode_length: int = 200,
                 updates_per_step: int = 1, step_cap_min: float = 1e-2,
                 step_cap_max: float = 10.0, safety_net: bool = False, relative_loss: bool = False,
                 anneal: str = "none") -> None:
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        if not 0 < lr_min < lr_max or not math.isfinite(lr_max):
            raise ValueError(f"need 0 < lr_min < lr_max < inf, got {lr_min}, {lr_max}")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        unknown = [f for f in features if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}; choose from {list(FEATURES)}")
        if updates_per_step < 1:
            raise ValueError(f"updates_per_step must be >= 1, got {updates_per_step}")
        if anneal not in ANNEALS:
            raise ValueError(f"anneal must be one of {ANNEALS}, got {anneal!r}")
        if anneal != "none" and action == "relative":
            # the relative action carries its rate from one decision to the next: a factor applied
            # at every decision would compound instead of following the schedule
            raise ValueError(f"anneal={anneal!r} needs an action that sets the rate afresh at every "
                             "decision (absolute, raw, capped or trust), not 'relative'")
        check_number("relative_factor", relative_factor, low=1, low_open=True)
        check_number("relative_every", relative_every, low=1, integer=True)
        check_number("initial_lr", initial_lr, low=0, low_open=True, optional=True)
        check_number("obs_max", obs_max, low=0, low_open=True)
        if n_groups < 1:
            raise ValueError(f"n_groups must be >= 1, got {n_groups}")
        if not 0 < step_cap_min < step_cap_max or not math.isfinite(step_cap_max):
            raise ValueError(f"need 0 < step_cap_min < step_cap_max < inf, got {step_cap_min}, {step_cap_max}")
        if action in ("capped", "trust") and n_groups != 1:
            # the cap bounds the length of the whole update; per-layer caps are not implemented
            raise ValueError(f"action={action!r} sets one rate and one step-length cap for the whole "
                             "model: it cannot be combined with per_group=True")
        features = list(dict.fromkeys(features))
        if action == "relative" and "lr" not in features:
            features.insert(0, "lr")  # a relative action is meaningless without the current rate
        self.n_groups = n = int(n_groups)
        self.lr_min, self.lr_max = float(lr_min), float(lr_max)
        self.action_mode = action
        self.relative_factor, self.relative_every = float(relative_factor), int(relative_every)
        self.initial_lr = float(np.clip(initial_lr if initial_lr is not None
                                        else math.sqrt(lr_min * lr_max), lr_min, lr_max))
        self.features = tuple(features)
        self.obs_max = float(obs_max)
        self.log_observations = bool(log_observations)
        self.episode_length = int(episode_length)
        self.updates_per_step = int(updates_per_step)
        self.step_cap_min, self.step_cap_max = float(step_cap_min), float(step_cap_max)
        self.safety_net = bool(safety_net)
        self.relative_loss = bool(relative_loss)
        self.anneal = anneal
        #: the step-length cap of the current decision (``inf``: none; only ``capped`` sets one)
        self.step_cap = math.inf

        if action == "raw":
            self.action_space = spaces.Box(lr_min, lr_max, (n,), np.float32)
        elif action in ("capped", "trust"):  # (rate, step-length cap), both log-uniform from [-1, 1]
            self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        else:
            self.action_space = spaces.Box(-1.0, 1.0, (n,), np.float32)
        # loss-like entries (bound None above) are in [0, obs_max], or their log10 in
        # [LOG_FLOOR, log10(obs_max)] with log_observations
        loss_bounds = ((LOG_FLOOR, math.log10(self.obs_max)) if self.log_observations
                       else (0.0, self.obs_max))
        loss_like = [not self.relative_loss]
        first = RELATIVE_LOSS_BOUNDS if self.relative_loss else loss_bounds
        low, high = [first[0]], [first[1]]
        for name in self.features:
            lo, hi = FEATURES[name]
            width = n if name == "lr" else 1
            low += [loss_bounds[0] if hi is None else lo] * width
            high += [loss_bounds[1] if hi is None else hi] * width
            loss_like += [hi is None] * width
        self._loss_like = np.array(loss_like)
        self.observation_space = spaces.Box(np.array(low, np.float32), np.array(high, np.float32),
                                            dtype=np.float32)
        self._log_range = math.log(self.lr_max / self.lr_min)
        self.start(0.0)

    # ------------------------------------------------------------------ rates
    def lr_to_unit(self, lr: np.ndarray | float) -> np.ndarray:
        """Learning rate -> its log-scaled position in [-1, 1] (inverse of the absolute action)."""
        return 2.0 * np.log(np.asarray(lr, dtype=np.float64) / self.lr_min) / self._log_range - 1.0

    def unit_to_lr(self, a: np.ndarray | float) -> np.ndarray:
        """Absolute action in [-1, 1] -> learning rate in [lr_min, lr_max], log-uniformly."""
        return self.lr_min * np.exp((np.asarray(a, dtype=np.float64) + 1.0) / 2.0 * self._log_range)

    def validate_action(self, action: Any) -> np.ndarray:
        """``action`` as a float64 array of shape ``(n_groups,)``, clipped to the action box.
        NaN/inf raise ``ValueError``, non-numeric ``TypeError``, wrong shapes ``ValueError``."""
        if isinstance(action, torch.Tensor):  # a torch policy's output (requires_grad or on a GPU): its value
            action = action.detach().cpu().numpy()
        try:
            arr = np.asarray(action)
        except (ValueError, TypeError) as exc:  # ragged nested lists, objects numpy refuses
            raise ValueError(f"action must be an array of shape ({self.n_groups},), "
                             f"got {action!r}: {exc}") from exc
        if arr.dtype.kind not in "biuf":  # complex, timedelta, str, object, ...: not a rate
            raise TypeError(f"action must be numeric, got dtype {arr.dtype} ({action!r})")
        size = self.action_space.shape[0]
        if arr.size != size or arr.ndim > 2:
            raise ValueError(f"action must have shape ({size},), got {arr.shape}")
        with np.errstate(over="ignore"):  # a long double beyond float64 becomes inf, refused below
            arr = arr.astype(np.float64).reshape(size)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"action must be finite, got {arr.tolist()}")
        return np.clip(arr, self.action_space.low, self.action_space.high)

    def decide(self, action: Any) -> np.ndarray:
        """The rates (shape ``(n_groups,)``, float64) for the next block of updates: validates and
        maps ``action``; does not change the state (call :meth:`advance` once they are applied).
        With ``action="capped"`` this is the rate before the cap, and :attr:`step_cap` is set to
        the decision's cap: apply each update's rate through :meth:`update_rate`."""
        a = self.validate_action(action)
        if self.action_mode == "relative":
            return self._relative_rate(a)
        return self._absolute_rate(a) * (self.backoff * self.anneal_factor())

    def _absolute_rate(self, a: np.ndarray) -> np.ndarray:
        if self.action_mode in ("capped", "trust"):
            self.step_cap = (float(self._unit_to_range(a[1], self.step_cap_min, self.step_cap_max))
                             * self.backoff * self.anneal_factor())
            rate = np.clip(self.unit_to_lr(a[:1]), self.lr_min, self.lr_max)
            # trust: the rate is a multiple of the first step's scale ||w_0|| / ||g_0||
            return rate * self.trust_scale if self.action_mode == "trust" else rate
        if self.action_mode == "raw":  # the box's float32 bounds may lie just outside the range
            return np.clip(a, self.lr_min, self.lr_max)
        return np.clip(self.unit_to_lr(a), self.lr_min, self.lr_max)

    def anneal_factor(self) -> float:
        """The factor ``anneal`` puts on the next block's rate and step cap: 1 with ``none``; with
        ``linear`` the fraction of ``episode_length`` left at the middle of the block, ``1 - (t +
        block / 2) / episode_length``, so the updates follow a linear decay to zero (the last block
        gets ``block / 2 / episode_length``; an update past the horizon gets the last update's
        ``0.5 / episode_length``, so a loop that runs on keeps a small rate)."""
        if self.anneal == "none":
            return 1.0
        return max(1.0 - (self.t + 0.5 * self.block_length()) / self.episode_length, 0.5 / self.episode_length)

    def _relative_rate(self, a: np.ndarray) -> np.ndarray:
        # (the safety net scales the running rate itself, in observe)
        if (self.t // self.updates_per_step) % self.relative_every != 0:  # relative: hold between decisions
            return self.lr
        return np.clip(self.lr * self.relative_factor ** a, self.lr_min, self.lr_max)

    @staticmethod
    def _unit_to_range(a: float, low: float, high: float) -> float:
        return float(np.clip(low * (high / low) ** ((float(a) + 1.0) / 2.0), low, high))

    def update_rate(self, lr: np.ndarray, grad_norm: float | None,
                    weight_norm: float | None = None) -> np.ndarray:
        """The rate(s) one update uses: ``lr``, or with ``action="capped"``
        ``min(lr, step_cap / ||g_t||)`` where ``||g_t||`` (``grad_norm``) is the norm of the
        gradient this update applies, so that the step ``lr * g_t`` is at most ``step_cap`` long
        (for plain SGD exactly SGD with its gradient clipped at ``step_cap / lr``); with
        ``action="trust"`` the cap is ``step_cap * ||w_t||`` (``weight_norm``, the norm of the
        weights before the update): no step is longer than that fraction of the weights.
        A zero or non-finite norm leaves ``lr`` unchanged (a NaN gradient diverges either way)."""
        if self.step_cap == math.inf or grad_norm is None or not grad_norm > 0 or not math.isfinite(grad_norm):
            return lr
        cap = self.step_cap
        if self.action_mode == "trust":
            if weight_norm is None or not weight_norm > 0 or not math.isfinite(weight_norm):
                return lr
            cap *= weight_norm
        return np.minimum(lr, cap / grad_norm)

    @property
    def needs_grad_norm(self) -> bool:
        """Whether each update's rate depends on its gradient's norm (``capped``, ``trust``)."""
        return self.action_mode in ("capped", "trust")

    @property
    def needs_weight_norm(self) -> bool:
        """Whether each update's rate, and :meth:`start`, need the weights' norm (``trust``)."""
        return self.action_mode == "trust"

    @property
    def observes_grad_norm(self) -> bool:
        """Whether the observation needs the gradient's norm (``grad_norm``, ``grad_ratio``)."""
        return any(f in GRAD_NORM_FEATURES for f in self.features)

    def block_length(self) -> int:
        """Primary updates the next decision's rate is held for: ``updates_per_step``, shortened
        at the episode's end (at least one)."""
        return max(1, min(self.updates_per_step, self.episode_length - self.t))

    def advance(self, lr: np.ndarray, n_updates: int) -> None:
        """Record that ``lr`` was applied for ``n_updates`` primary updates."""
        self.lr = np.asarray(lr, dtype=np.float64).reshape(self.n_groups)
        self.t += int(n_updates)

    # ------------------------------------------------------------------ observations
    def start(self, loss: float, val_loss: float = 0.0, grad_norm: float = 0.0,
              weight_norm: float | None = None) -> np.ndarray:
        """Start an episode at the loss of ``w0``: ``t = 0``, rates at ``initial_lr``, loss
        statistics reset, the first loss and gradient norm kept (the scale-free features and the
        trust action are relative to them; ``weight_norm``: ``||w_0||``, which ``trust`` needs).
        Returns the first observation."""
        self.t = 0
        self.lr = np.full(self.n_groups, self.initial_lr)
        self.step_cap = math.inf
        self.ema, self.var = float(loss), 0.0
        self.val_loss, self.grad_norm = float(val_loss), float(grad_norm)
        self.first_loss, self.first_grad_norm = float(loss), float(grad_norm)
        self.fast = self.best = self.previous_fast = float(loss)
        self.backoff = 1.0
        self.trust_scale = 1.0
        if weight_norm is not None and grad_norm > 0 and math.isfinite(grad_norm) and math.isfinite(weight_norm):
            self.trust_scale = float(weight_norm) / float(grad_norm)
        return self.observation(loss)

    def observe(self, loss: float, val_loss: float | None = None,
                grad_norm: float | None = None) -> np.ndarray:
        """The observation after an update: track ``loss`` (EMA/variance; non-finite losses are
        skipped), remember ``val_loss``/``grad_norm`` if given, and return the observation."""
        if val_loss is not None:
            self.val_loss = float(val_loss)
        if grad_norm is not None:
            self.grad_norm = float(grad_norm)
        if math.isfinite(loss):
            delta = loss - self.ema
            self.ema += 0.1 * delta
            self.var = 0.9 * (self.var + 0.1 * delta * delta)
        self._track(loss)
        return self.observation(loss)

    def _track(self, loss: float) -> None:
        """The fast loss average (weight 0.5: ``loss_trend``) and the safety net: a fast average
        above ``SAFETY_RISE`` x its best so far and above ``best + SAFETY_LOST x (first - best)``
        (half the progress lost: the network is going back to where it started, it collapsed or
        is blowing up), or a loss that is not finite, halves every later rate (down to
        ``SAFETY_FLOOR`` x), once per decision."""
        self.previous_fast = self.fast
        self.fast = 0.5 * self.fast + 0.5 * loss if math.isfinite(loss) else math.inf
        if not self.safety_net:
            return
        if self.fast > max(SAFETY_RISE * self.best, self.best + SAFETY_LOST * (self.first_loss - self.best)):
            self.backoff = max(self.backoff * 0.5, SAFETY_FLOOR)
            if self.action_mode == "relative":  # the rate carries over between decisions
                self.lr = np.maximum(self.lr * 0.5, self.lr_min)
        if math.isfinite(self.fast):
            self.best = min(self.best, self.fast)
        else:  # restart the average from the first loss, so that it can recover
            self.fast = self.first_loss

    def squash_loss(self, loss: float) -> float:
        """A loss as the observation shows it: NaN and +inf -> ``obs_max``, clipped to ``[0, obs_max]``,
        then log10 with ``log_observations``
        (plain float math: numpy's nan_to_num/clip cost more than the digits task's forward pass)."""
        if loss != loss or loss > self.obs_max:  # NaN, +inf or above the cap
            loss = self.obs_max
        elif loss < 0.0:
            loss = 0.0
        if self.log_observations:
            return math.log10(max(loss, 10.0**LOG_FLOOR))
        return loss

    def observation(self, loss: float) -> np.ndarray:
        """The observation vector (float32, in ``observation_space``) for mini-batch ``loss`` and
        the current state, without tracking ``loss``."""
        if self.relative_loss:
            first = float(np.clip(_log_ratio(loss, self.first_loss), *RELATIVE_LOSS_BOUNDS))
        if not self.features:  # the default loss-only state: no numpy passes needed
            return np.array([first if self.relative_loss else self.squash_loss(loss)], dtype=np.float32)
        values = [first if self.relative_loss else loss]
        for name in self.features:
            if name == "lr":
                values.extend(self.lr_to_unit(self.lr).tolist())
            elif name == "step_fraction":
                values.append(self.t / self.episode_length)
            elif name == "loss_ema":
                values.append(self.ema)
            elif name == "loss_var":
                values.append(self.var)
            elif name == "val_loss":
                values.append(self.val_loss)
            elif name == "grad_norm":
                values.append(self.grad_norm)
            elif name == "grad_ratio":
                values.append(_log_ratio(self.grad_norm, self.first_grad_norm))
            elif name == "loss_trend":
                values.append(_log_ratio(self.fast, self.previous_fast))
        obs = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=self.obs_max,
                            posinf=self.obs_max, neginf=0.0)
        if self.log_observations:
            obs[self._loss_like] = np.log10(np.clip(obs[self._loss_like], 10.0**LOG_FLOOR, self.obs_max))
        return np.clip(obs, self.observation_space.low, self.observation_space.high).astype(np.float32)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The running state as plain Python numbers and lists."""
        return {"t": self.t, "lr": self.lr.tolist(), "ema": self.ema, "var": self.var,
                "val_loss": self.val_loss, "grad_norm": self.grad_norm,
                "step_cap": None if self.step_cap == math.inf else self.step_cap,
                "first_loss": self.first_loss, "first_grad_norm": self.first_grad_norm,
                "fast": _json_float(self.fast), "best": self.best, "previous_fast": _json_float(self.previous_fast),
                "backoff": self.backoff, "trust_scale": self.trust_scale}

    def load_state_dict(self, state: dict) -> None:
        lr = np.asarray(state["lr"], dtype=np.float64)
        if lr.shape != (self.n_groups,):
            raise ValueError(f"state has {lr.size} rates, this controller {self.n_groups}")
        self.t, self.lr = int(state["t"]), lr
        self.ema, self.var = float(state["ema"]), float(state["var"])
        self.val_loss, self.grad_norm = float(state["val_loss"]), float(state["grad_norm"])
        cap = state.get("step_cap")  # (absent in states saved before the capped action existed)
        self.step_cap = math.inf if cap is None else float(cap)
        # (absent in states saved before the scale-free features and the safety net existed)
        self.first_loss = float(state.get("first_loss", self.ema))
        self.first_grad_norm = float(state.get("first_grad_norm", self.grad_norm))
        fast, previous = state.get("fast", self.ema), state.get("previous_fast", self.ema)
        self.fast = math.inf if fast is None else float(fast)
        self.previous_fast = math.inf if previous is None else float(previous)
        self.best = float(state.get("best", self.ema))
        self.backoff = float(state.get("backoff", 1.0))
        self.trust_scale = float(state.get("trust_scale", 1.0))


def _log_ratio(value: float, reference: float) -> float:
    """``log10(value / reference)`` for the scale-free features; a non-finite value reads as a
    huge ratio, a zero as a tiny one (the observation box clips both)."""
    if not value < math.inf:  # NaN or +inf
        return 8.0
    if not reference > 0 or not math.isfinite(reference):
        return 0.0
    return math.log10(max(value, 1e-30) / reference)


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None
