"""Baseline learning-rate policies, all run through :class:`~envs.LearningRateEnv`.

No baseline has a training loop of its own: every method drives the environment (and so
:class:`~envs.primary.PrimaryTrainer`), built with ``action="raw"`` so that the action *is*
the learning rate. A policy is called once per step, before the update, as
``policy(obs, info, env) -> action``, where ``env`` is the unwrapped :class:`LearningRateEnv`:
``env.trainer`` holds the model and the gradient ``g_t = grad f(w_t; x_i)`` in ``.grad``, and
``env.current_batch`` the indices of ``x_i``. :func:`run_episode` runs one seeded episode and
returns the full train/test curves; :func:`run_episodes` runs many side by side in a
:class:`~envs.vector_env.LearningRateVectorEnv` (one batched forward/backward for all), each
policy seeing a :class:`SubEnvView` of its sub-env: the settings, and the pending batch gradient
through :func:`current_grad_norm` / :func:`pending_gradient`. A policy class says whether that
is enough with ``batchable`` (all but :class:`VSGD`, whose curvature needs extra gradients).

Policies (learning rates in the optimizer's units, ``t`` counts updates from 0):

- :class:`ConstantLR`: ``lr_t = lr`` (the paper's grid baselines, with any optimizer).
- :class:`CosineLR`: ``lr_t = peak * (1 + cos(pi * t / T)) / 2`` over ``T`` = episode length.
- :class:`VSGD`: vSGD (Schaul, Zhang, LeCun 2013), global-rate variant, curvature by finite
  differences on the same batch (see the class docstring for the exact recursions).
- :class:`HypergradientSGD`: SGD-HD (Baydin et al. 2018), ``lr_t = lr_{t-1} + beta * g_t . g_{t-1}``.
- :class:`FeatureController`: a Daniel et al. (2016)-style controller in a simple form: a
  log-linear rule on hand-designed loss features whose three parameters are fitted by a small
  grid search on *training* seeds (done by ``evaluate.py``).
- :class:`ClippedSGD`: SGD with gradient-norm clipping, ``lr_t = lr * min(1, max_norm / ||g_t||)``.
- :class:`GradNormRule`: ``lr_t = min(geometric ramp, step_cap / ||g_t||)``, fitted on training seeds.
- :class:`RandomRate`: a log-uniformly random rate every step (the random policy of the default env).
- :class:`ControllerPolicy`: a trained controller (anything with SB3's ``predict``); its
  action is the env action of the env it was trained with, not a learning rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from envs.control import grad_norm
from envs.learning_rate_env import LearningRateEnv
from envs.vector_env import unbatch_info


class LRPolicy(Protocol):
    """What :func:`run_episode` needs from a policy."""

    name: str
    #: runs against a :class:`SubEnvView` (reads only settings, obs/info and the pending gradient
    #: through :func:`current_grad_norm` / :func:`pending_gradient`), so :func:`run_episodes` can run it
    batchable: bool

    def reset(self, env: LearningRateEnv) -> None:
        """Start of an episode (called after ``env.reset``)."""

    def __call__(self, obs: np.ndarray, info: dict, env: LearningRateEnv) -> Any:
        """The env action for this step (for baselines: the learning rate)."""


# --------------------------------------------------------------------------- simple schedules
class ConstantLR:
    """``lr_t = lr``: the paper's fixed-rate baselines (SGD, Adam, Adagrad, RMSprop, ...)."""

    batchable = True

    def __init__(self, lr: float) -> None:
        self.lr, self.name = float(lr), f"constant({lr:g})"

    def reset(self, env: LearningRateEnv) -> None:
        pass

    def __call__(self, obs, info, env) -> float:
        return self.lr


class CosineLR:
    """Cosine decay without warm-up: ``lr_t = peak * (1 + cos(pi * t / T)) / 2``, ``T`` the
    episode length, so the last update uses a rate close to 0 (clipped to the env's ``lr_min``)."""

    batchable = True

    def __init__(self, peak: float) -> None:
        self.peak, self.name = float(peak), f"cosine({peak:g})"
        self.t = 0

    def reset(self, env: LearningRateEnv) -> None:
        self.t = 0

    def __call__(self, obs, info, env) -> float:
        lr = self.peak * 0.5 * (1.0 + math.cos(math.pi * self.t / env.episode_length))
        self.t += 1
        return lr


# --------------------------------------------------------------------------- gradient helpers
def finite_difference_curvature(env: LearningRateEnv, delta: float = 1e-3) -> tuple[torch.Tensor, float]:
    """Curvature of the batch loss along the gradient direction, by finite differences.

    With ``g = grad f(w; x_i)`` (in ``.grad``) and ``u = g / ||g||``, returns ``(g, h)`` where
    ``h = ||grad f(w + delta * u; x_i) - g|| / delta``, i.e. ``||H u||`` for the batch Hessian
    ``H`` (exact for a quadratic loss). The shifted gradient is computed on the *same* batch;
    afterwards the weights and ``.grad`` are restored exactly, so the env's next update uses
    the original gradient. ``g`` is a flat copy (shape ``(n_params,)``).
    """
    trainer = env.trainer
    params = list(trainer.model.parameters())
    saved_grads = [p.grad.detach().clone() if p.grad is not None else None for p in params]
    g = trainer.flat_grad().detach().clone()
    g_norm = torch.linalg.vector_norm(g)
    if not torch.isfinite(g_norm) or g_norm == 0:
        return g, float("nan")
    saved_weights = [p.detach().clone() for p in params]
    u = g / g_norm
    with torch.no_grad():
        offset = 0
        for p in params:
            n = p.numel()
            p.add_(u[offset:offset + n].view_as(p), alpha=delta)
            offset += n
    trainer.loss_and_grad(env.current_batch)
    g_shift = trainer.flat_grad().detach().clone()
    with torch.no_grad():
        for p, w, grad in zip(params, saved_weights, saved_grads):
            p.copy_(w)
            p.grad = grad
    h = float(torch.linalg.vector_norm(g_shift - g)) / delta
    return g, h


# --------------------------------------------------------------------------- vSGD
class VSGD:
    """vSGD, global-rate variant (Schaul, Zhang & LeCun 2013, "No more pesky learning rates").

    Per step, with the mini-batch gradient ``g_t`` and a curvature estimate ``h_t`` (the
    finite-difference curvature along ``g_t`` on the same batch, :func:`finite_difference_curvature`),
    running averages with an adaptive memory ``tau`` are updated::

        gbar = (1 - 1/tau) gbar + g_t / tau         (vector)
        vbar = (1 - 1/tau) vbar + ||g_t||^2 / tau   (scalar)
        hbar = (1 - 1/tau) hbar + h_t / tau         (scalar)
        lr_t = ||gbar||^2 / (hbar * vbar)
        tau  = (1 - ||gbar||^2 / vbar) * tau + 1

    Slow start (the paper initialises with overestimates so that the first steps are careful):
    at ``t = 0`` the averages are set to ``gbar = g_0``, ``vbar = C ||g_0||^2``, ``hbar = C h_0``
    and ``tau = tau0`` (no separate averaging), with ``C = 2`` and ``tau0 = 10`` by default; the
    rate and ``tau`` then follow the formulas above. Our choice of curvature ``||H u||`` (rather
    than the paper's maximum diagonal Hessian entry) is the natural global quantity for a step
    along the gradient and needs one extra forward/backward per step.

    Not batchable (:func:`run_episodes`): the curvature needs a gradient at shifted weights.
    """

    batchable = False

    def __init__(self, c: float = 2.0, tau0: float = 10.0, delta: float = 1e-3, eps: float = 1e-12) -> None:
        self.c, self.tau0, self.delta, self.eps = float(c), float(tau0), float(delta), float(eps)
        self.name = "vsgd"
        self.reset(None)

    def reset(self, env) -> None:
        self.gbar: torch.Tensor | None = None
        self.vbar = self.hbar = 0.0
        self.tau = self.tau0
        self.lr = None

    def __call__(self, obs, info, env) -> float:
        g, h = finite_difference_curvature(env, self.delta)
        g = g.double()
        if not math.isfinite(h):  # zero or non-finite gradient: keep the last rate
            return self.lr if self.lr is not None else env.lr_min
        h = max(h, self.eps)
        self.last_h = h
        sq = float(g @ g)
        if self.gbar is None:
            self.gbar, self.vbar, self.hbar = g, self.c * sq, self.c * h
        else:
            k = 1.0 / self.tau
            self.gbar = (1 - k) * self.gbar + k * g
            self.vbar = (1 - k) * self.vbar + k * sq
            self.hbar = (1 - k) * self.hbar + k * h
        gbar_sq = float(self.gbar @ self.gbar)
        self.lr = gbar_sq / max(self.hbar * self.vbar, self.eps)
        self.tau = (1.0 - gbar_sq / max(self.vbar, self.eps)) * self.tau + 1.0
        return self.lr


# --------------------------------------------------------------------------- SGD-HD
class HypergradientSGD:
    """Hypergradient descent for SGD (SGD-HD, Baydin et al. 2018).

    ``lr_0 = lr0``; then ``lr_t = lr_{t-1} + beta * g_t . g_{t-1}`` with the mini-batch
    gradients ``g`` of consecutive steps (flattened), and ``w_{t+1} = w_t - lr_t g_t``. The rate
    is clipped to the env's ``[lr_min, lr_max]`` (the clipped value is the one remembered).
    """

    batchable = True  # reads only the pending gradient (pending_gradient)

    def __init__(self, beta: float, lr0: float = 0.01) -> None:
        self.beta, self.lr0 = float(beta), float(lr0)
        self.name = f"sgd-hd(beta={beta:g})"
        self.reset(None)

    def reset(self, env) -> None:
        self.prev_grad: torch.Tensor | None = None
        self.lr = self.lr0

    def __call__(self, obs, info, env) -> float:
        g = pending_gradient(env).detach().double().clone()
        if self.prev_grad is not None:
            lr = self.lr + self.beta * float(g @ self.prev_grad)
            self.lr = float(np.clip(lr, env.lr_min, env.lr_max)) if math.isfinite(lr) else env.lr_max
        self.prev_grad = g
        return self.lr


# --------------------------------------------------------------------------- Daniel et al.-style
class FeatureController:
    """A Daniel, Taylor & Nowozin (2016)-style learning-rate controller in a simple form.

    Daniel et al. learn (with REPS) a log-linear policy on hand-designed features of the loss.
    Our simple form keeps the log-linear rule and two of their feature kinds, computed from the
    mini-batch losses the env observes anyway (no extra forward passes):

    - ``trend = log(ema_then / ema_now)``: relative decrease of the loss EMA (factor 0.9) over the
      last ``every`` steps (positive while training improves);
    - ``noise = sqrt(var) / ema``: coefficient of variation of the mini-batch losses (their
      exponential moving variance), a proxy for the disagreement of function values.

    Every ``every`` steps: ``log lr += clip(theta0 + theta1 * trend + theta2 * noise, -log 2, log 2)``,
    starting from ``lr0``. ``theta`` is fitted by :data:`FEATURE_CONTROLLER_GRID` search on
    training seeds (never the evaluation seeds) in ``evaluate.py``; REPS itself is not used.
    """

    batchable = True

    def __init__(self, theta: tuple[float, float, float], lr0: float = 0.01, every: int = 20) -> None:
        self.theta = tuple(float(t) for t in theta)
        self.lr0, self.every = float(lr0), int(every)
        self.name = "feature-controller(" + ",".join(f"{t:g}" for t in self.theta) + ")"
        self.reset(None)

    def reset(self, env) -> None:
        self.t, self.log_lr = 0, math.log(self.lr0)
        self.ema = self.var = None
        self.ema_then = None

    def features(self) -> tuple[float, float]:
        trend = math.log(max(self.ema_then, 1e-12) / max(self.ema, 1e-12))
        noise = math.sqrt(max(self.var, 0.0)) / max(self.ema, 1e-12)
        return trend, noise

    def __call__(self, obs, info, env) -> float:
        loss = float(obs[0])
        if self.ema is None:
            self.ema, self.var, self.ema_then = loss, 0.0, loss
        else:
            delta = loss - self.ema
            self.ema += 0.1 * delta
            self.var = 0.9 * (self.var + 0.1 * delta * delta)
        if self.t > 0 and self.t % self.every == 0:
            trend, noise = self.features()
            z = self.theta[0] + self.theta[1] * trend + self.theta[2] * noise
            self.log_lr += float(np.clip(z, -math.log(2), math.log(2)))
            self.log_lr = float(np.clip(self.log_lr, math.log(env.lr_min), math.log(env.lr_max)))
            self.ema_then = self.ema
        self.t += 1
        return math.exp(self.log_lr)


#: the parameter grid searched for :class:`FeatureController` (theta0, theta1, theta2)
FEATURE_CONTROLLER_GRID: list[tuple[float, float, float]] = [
    (t0, t1, t2) for t0 in (-0.1, 0.1, 0.3) for t1 in (0.0, 5.0) for t2 in (0.0, -1.0)]


# --------------------------------------------------------------------------- gradient-norm rules
def current_grad_norm(env: LearningRateEnv) -> float:
    """``||g_t||``: the norm of the gradient the env's next update applies (one host sync; for a
    :class:`SubEnvView`, one per step for all sub-envs)."""
    if isinstance(env, SubEnvView):
        return env.pending_grad_norm()
    return float(grad_norm(env.trainer.parameters()))


def pending_gradient(env: LearningRateEnv) -> torch.Tensor:
    """``g_t`` as one flat vector: the batch gradient the env's next update applies."""
    if isinstance(env, SubEnvView):
        return env.pending_gradient()
    return env.trainer.flat_grad()


class ClippedSGD:
    """SGD with gradient-norm clipping, as practitioners run it (``clip_grad_norm_`` then a step):
    ``w_{t+1} = w_t - lr * g_t * min(1, max_norm / ||g_t||)``, i.e. the rate
    ``lr_t = min(lr, lr * max_norm / ||g_t||)``: a step never longer than ``lr * max_norm``.
    ``lr`` and ``max_norm`` are tuned on a grid in ``evaluate.py`` like the constant rates."""

    batchable = True

    def __init__(self, lr: float, max_norm: float) -> None:
        self.lr, self.max_norm = float(lr), float(max_norm)
        self.name = f"clipped-sgd({lr:g}, {max_norm:g})"

    def reset(self, env: LearningRateEnv) -> None:
        pass

    def __call__(self, obs, info, env) -> float:
        norm = current_grad_norm(env)
        if not math.isfinite(norm) or norm <= self.max_norm:
            return self.lr
        return self.lr * self.max_norm / norm


class GradNormRule:
    """A hand-made gradient-norm rule (issue 16): a geometric ramp of the rate from ``lr_start``
    to ``lr_end`` over the episode, each step capped to length ``step_cap``:
    ``lr_t = min(lr_start * (lr_end / lr_start) ** (t / T), step_cap / ||g_t||)``.
    Its three constants are fitted on *training* seeds (:data:`GRAD_NORM_RULE_GRID`, as for the
    Daniel-style controller), then evaluated on held-out seeds."""

    batchable = True

    def __init__(self, lr_start: float, lr_end: float, step_cap: float) -> None:
        self.lr_start, self.lr_end, self.step_cap = float(lr_start), float(lr_end), float(step_cap)
        self.name = f"grad-norm-rule({lr_start:g}->{lr_end:g}, cap {step_cap:g})"
        self.t = 0

    def reset(self, env: LearningRateEnv) -> None:
        self.t = 0

    def __call__(self, obs, info, env) -> float:
        frac = min(self.t / max(env.episode_length - 1, 1), 1.0)
        self.t += 1
        rate = self.lr_start * (self.lr_end / self.lr_start) ** frac
        norm = current_grad_norm(env)
        if not math.isfinite(norm) or norm <= 0:
            return rate
        return min(rate, self.step_cap / norm)


#: the constants searched for :class:`GradNormRule` (lr_start, lr_end, step_cap)
#: (ramps up to 1000: once the step length is capped, large rates are safe and fast on digits)
GRAD_NORM_RULE_GRID: list[tuple[float, float, float]] = [
    (a, b, c) for a in (1.0, 10.0, 100.0) for b in (1.0, 10.0, 100.0, 1000.0) for c in (0.25, 0.5, 1.0)
    if b >= a]


class RandomRate:
    """A uniformly random policy of the default env: ``lr_t`` log-uniform on ``[lr_min, lr_max]``
    (what a uniformly random action of ``action="absolute"`` gives, default range 1e-5 .. 1),
    drawn anew every step from a generator seeded by ``seed`` at every ``reset``."""

    batchable = True

    def __init__(self, seed: int, lr_min: float = 1e-5, lr_max: float = 1.0) -> None:
        self.seed, self.lr_min, self.lr_max = int(seed), float(lr_min), float(lr_max)
        self.name = f"random({lr_min:g}..{lr_max:g})"
        self.reset(None)

    def reset(self, env) -> None:
        self.rng = np.random.default_rng(self.seed)

    def __call__(self, obs, info, env) -> float:
        return float(np.exp(self.rng.uniform(math.log(self.lr_min), math.log(self.lr_max))))


# --------------------------------------------------------------------------- trained controllers
class ControllerPolicy:
    """Adapter: any object with SB3's ``predict(obs, state, episode_start, deterministic)``
    (a trained controller) as a policy. Carries the recurrent state across steps (one
    ``ControllerPolicy`` per episode run side by side; they may share the controller)."""

    batchable = True

    def __init__(self, controller: Any, name: str | None = None) -> None:
        self.controller = controller
        self.name = name or getattr(controller, "name", "controller")
        self.state = None
        self.episode_start = np.ones((1,), dtype=bool)

    def reset(self, env) -> None:
        self.state, self.episode_start = None, np.ones((1,), dtype=bool)

    def __call__(self, obs, info, env) -> np.ndarray:
        action, self.state = self.controller.predict(obs, state=self.state,
                                                     episode_start=self.episode_start,
                                                     deterministic=True)
        self.episode_start = np.zeros((1,), dtype=bool)
        return np.asarray(action, dtype=np.float32).reshape(env.action_space.shape)


# --------------------------------------------------------------------------- running one episode
@dataclass
class EpisodeResult:
    """Curves of one episode. ``eval_steps`` are the update counts at which the full train/test
    losses were measured (0 = at ``w0``); ``lr``/``effective_lr``/``batch_loss`` have one entry
    per update (with ``updates_per_step=k`` a decision's rate, and the batch loss it was chosen
    from, are repeated over its ``k`` updates). ``weights``/``disagreement`` (only with
    ``trace=True``): the flat weights ``w_t`` and ``||g_batch(w_t) - g_full(w_t)||`` before each
    env step, measured at the update counts ``trace_steps``."""

    eval_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    effective_lr: list[float] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    weights: list[list[float]] = field(default_factory=list)
    disagreement: list[float] = field(default_factory=list)
    trace_steps: list[int] = field(default_factory=list)
    episode_return: float = 0.0
    diverged: bool = False
    steps: int = 0

    def record_eval(self, step: int, ev: dict) -> None:
        self.eval_steps.append(step)
        for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
            if key in ev:
                getattr(self, key).append(float(ev[key]))


def full_gradient(env: LearningRateEnv) -> torch.Tensor:
    """Gradient of the full training loss at the current weights, as one flat vector.
    Uses ``torch.autograd.grad`` so ``.grad`` (the env's pending batch gradient) is untouched."""
    trainer = env.trainer
    params = list(trainer.model.parameters())
    loss = trainer.loss_fn(trainer.model(trainer.x_train), trainer.y_train)
    grads = torch.autograd.grad(loss, params)
    return torch.cat([g.reshape(-1) for g in grads]).detach()


def _effective_lr(env: LearningRateEnv, lr: float) -> float:
    """The step size an lr-free optimizer actually uses: ``d * lr`` (Prodigy, D-Adaptation)."""
    trainer = getattr(env, "trainer", None)  # (a batched sub-env has none: no lr-free optimizer is batched)
    d = trainer.optimizer.param_groups[0].get("d") if trainer is not None else None
    return float(d) * lr if isinstance(d, (int, float)) else lr


def run_episode(env: LearningRateEnv, policy: LRPolicy, seed: int, trace: bool = False) -> EpisodeResult:
    """One episode of ``env.episode_length`` updates from ``reset(seed=seed)`` (same ``w0`` and
    batch order for every policy with the same seed). The env should have ``eval_every > 0`` for
    loss curves. Divergence ends the episode early with ``diverged=True``; it never raises."""
    env = getattr(env, "unwrapped", env)
    res = EpisodeResult()
    obs, info = env.reset(seed=seed)
    policy.reset(env)
    if "eval" in info:
        res.record_eval(0, info["eval"])
    step = 0
    for _ in range(env.episode_length):
        if trace:
            res.trace_steps.append(step)
            g_batch = env.trainer.flat_grad().detach()
            res.weights.append(torch.cat([p.detach().reshape(-1) for p in env.trainer.parameters()]).tolist())
            res.disagreement.append(float(torch.linalg.vector_norm(g_batch - full_gradient(env))))
        action = policy(obs, info, env)
        obs, reward, terminated, truncated, info = env.step(action)
        res.episode_return += reward
        lr = info["lr"]
        lr = float(np.exp(np.mean(np.log(lr)))) if np.ndim(lr) else float(lr)  # per-group: geometric mean
        n_updates, step = info["step"] - step, info["step"]  # k > 1: the rate held over k updates
        res.lr.extend([lr] * n_updates)
        res.effective_lr.extend([_effective_lr(env, lr)] * n_updates)
        res.batch_loss.extend([float(info["batch_loss"])] * n_updates)
        res.steps = step
        if "eval" in info:
            res.record_eval(info["step"], info["eval"])
        if terminated or info.get("diverged"):
            res.diverged = True
            break
        if truncated:
            break
    return res


# --------------------------------------------------------------------------- many episodes at once
class _StepCache:
    """Per-step values of all sub-envs of a vector env, read at most once per step (one batched
    call and one synchronisation for all sub-envs); :meth:`clear` after each ``step``."""

    def __init__(self, vec_env) -> None:
        self.vec_env = vec_env
        self.clear()

    def clear(self) -> None:
        self._norms = self._grads = None

    def grad_norms(self) -> np.ndarray:
        if self._norms is None:
            self._norms = self.vec_env.pending_grad_norms()
        return self._norms

    def grads(self) -> torch.Tensor:
        if self._grads is None:
            self._grads = self.vec_env.pending_grads()
        return self._grads


class SubEnvView:
    """Sub-env ``index`` of a batched :class:`~envs.vector_env.LearningRateVectorEnv` as the
    policies of this module see an env: its settings (``episode_length``, ``lr_min``, ``lr_max``,
    ``action_space``, ...) and, through :func:`current_grad_norm` / :func:`pending_gradient`, the
    batch gradient its next update applies. A policy that needs more (weights, extra
    forward/backward passes) is not batchable (``batchable = False``). Only a sub-env of single
    trainers (an unbatchable model or optimizer) has a ``trainer``, read for the step size of an
    lr-free optimizer."""

    def __init__(self, vec_env, index: int, cache: _StepCache | None = None) -> None:
        self.vec_env, self.index = vec_env, int(index)
        self._cache = cache if cache is not None else _StepCache(vec_env)
        single = vec_env.single_env  # every sub-env has the template's settings
        self.control = single.control
        if not vec_env.batched:  # single trainers (an unbatchable model or optimizer): its own
            self.trainer = vec_env.trainer.trainers[self.index]
        self.action_space, self.observation_space = vec_env.single_action_space, vec_env.single_observation_space
        self.n_groups = single.n_groups

    episode_length = property(lambda self: self.control.episode_length)
    updates_per_step = property(lambda self: self.control.updates_per_step)
    lr_min = property(lambda self: self.control.lr_min)
    lr_max = property(lambda self: self.control.lr_max)
    action_mode = property(lambda self: self.control.action_mode)

    def lr_to_unit(self, lr):
        return self.control.lr_to_unit(lr)

    def unit_to_lr(self, a):
        return self.control.unit_to_lr(a)

    def pending_grad_norm(self) -> float:
        """``||g_t||`` of this sub-env's pending batch gradient."""
        return float(self._cache.grad_norms()[self.index])

    def pending_gradient(self) -> torch.Tensor:
        """This sub-env's pending batch gradient, flat (as ``PrimaryTrainer.flat_grad``)."""
        return self._cache.grads()[self.index]

    @property
    def unwrapped(self) -> "SubEnvView":
        return self


def run_episodes(vec_env, policies: list, seeds: list[int], trace: bool = False) -> list[EpisodeResult]:
    """:func:`run_episode` for ``vec_env.num_envs`` episodes side by side on a
    :class:`~envs.vector_env.LearningRateVectorEnv`: sub-env ``i`` is driven by ``policies[i]``
    from ``reset(seed=seeds[i])``, and result ``i`` is what ``run_episode(LearningRateEnv(same
    kwargs), policies[i], seeds[i], trace)`` returns (to float rounding of the batched primary
    training). Each policy sees a :class:`SubEnvView` of its sub-env (or, when the vector env runs
    single envs, the sub-env itself). A sub-env whose episode ended (divergence, or its end) is
    no longer recorded (the vector env autoresets it; until all episodes have ended it is stepped
    with the low corner of the action box, the lowest rate, so that a restarted run which diverged
    at a high rate does not diverge - and restart, with a full evaluation - at every step).

    Raises:
        ValueError: a policy is not batchable (``batchable = False``: it needs more of the env
            than a :class:`SubEnvView` gives, e.g. :class:`VSGD`), the numbers of policies, seeds
            and sub-envs differ, or a policy object is given twice (policies keep per-episode state).
    """
    vec = getattr(vec_env, "unwrapped", vec_env)
    n = vec.num_envs
    policies, seeds = list(policies), [int(s) for s in seeds]
    if len(policies) != n or len(seeds) != n:
        raise ValueError(f"run_episodes needs one policy and one seed per sub-env ({n}), "
                         f"got {len(policies)} policies and {len(seeds)} seeds")
    unbatchable = sorted({getattr(p, "name", type(p).__name__) for p in policies
                          if not getattr(p, "batchable", False)})
    if unbatchable:
        raise ValueError(f"policies {unbatchable} cannot run side by side in a vector env (they read "
                         f"more of the env than the pending gradient); run them with run_episode")
    if len({id(p) for p in policies}) != n:
        raise ValueError("run_episodes needs a distinct policy object per sub-env (policies keep "
                         "per-episode state)")
    single = vec.single_env
    cache = _StepCache(vec)
    views = [SubEnvView(vec, i, cache) for i in range(n)]

    obs, infos = vec.reset(seed=seeds)
    results = [EpisodeResult() for _ in range(n)]
    info_i = [unbatch_info(infos, i) for i in range(n)]
    for i in range(n):
        policies[i].reset(views[i])
        if "eval" in info_i[i]:
            results[i].record_eval(0, info_i[i]["eval"])
    active = np.ones(n, dtype=bool)
    steps = [0] * n
    actions = np.zeros(vec.action_space.shape, dtype=np.float64)  # (the single env gets floats too)
    idle = np.asarray(vec.single_action_space.low, dtype=np.float64)
    for _ in range(single.episode_length):
        ids = [int(i) for i in np.flatnonzero(active)]
        if trace:
            g_batch, g_full = vec.pending_grads(ids), vec.full_gradients(ids)
            weights = vec.flat_weights(ids).tolist()
            gaps = torch.linalg.vector_norm(g_batch - g_full, dim=1).tolist()
            for j, i in enumerate(ids):
                results[i].trace_steps.append(steps[i])
                results[i].weights.append(weights[j])
                results[i].disagreement.append(float(gaps[j]))
        actions[~active] = idle  # ended episodes: the lowest rate (see the docstring)
        for i in ids:
            actions[i] = np.asarray(policies[i](obs[i], info_i[i], views[i]),
                                    dtype=actions.dtype).reshape(actions.shape[1:])
        obs, rewards, terminated, truncated, infos = vec.step(actions)
        cache.clear()
        for i in ids:
            ended = bool(terminated[i] or truncated[i])
            info = unbatch_info(infos["final_info"], i) if ended else unbatch_info(infos, i)
            info_i[i] = info
            res = results[i]
            res.episode_return += float(rewards[i])
            lr = info["lr"]
            lr = float(np.exp(np.mean(np.log(lr)))) if np.ndim(lr) else float(lr)
            n_updates, steps[i] = int(info["step"]) - steps[i], int(info["step"])
            res.lr.extend([lr] * n_updates)
            # (no lr-free optimizer is batched; a single sub-env reports its own)
            res.effective_lr.extend([_effective_lr(views[i], lr)] * n_updates)
            res.batch_loss.extend([float(info["batch_loss"])] * n_updates)
            res.steps = steps[i]
            if "eval" in info:
                res.record_eval(steps[i], info["eval"])
            if terminated[i] or info.get("diverged"):
                res.diverged = True
                active[i] = False
            elif truncated[i]:
                active[i] = False
        if not active.any():
            break
    return results
