"""The paper's controller: an on-policy deterministic actor-critic (Xu et al. 2017, Algorithm 1).

Read top to bottom: the networks, then :class:`ActorCritic` (``learn`` is Algorithm 1,
``train_step`` is its lines 13-26), then ``predict``/``save``/``load`` in stable-baselines3's shape.

Per env step ``t`` (the env does lines 3-12 and 20-21, see ``envs/learning_rate_env.py``):

- the actor, a 2-layer LSTM (20 units each) over the episode's observations, maps ``s_t`` to an
  action ``a_t``: with ``actor_output="linear"`` (the ``paper`` preset) the head's output is the
  learning rate itself, as in the paper (``a = pi(s)``, ``a`` in R), clipped to the env's
  ``[lr_min, lr_max]`` when it is applied; with ``"tanh"`` (the class default) it is in
  ``[-1, 1]^n`` and the env maps it to a rate (e.g. log-uniformly, ``action="absolute"``);
  the env trains the primary model with it;
- TD error (Eq. 7): ``delta = r_t + gamma * Q(s_i^{t+1}, pi(s_i^{t+1})) - Q(s_t, a_t)``, where
  ``s_i^{t+1} = info["critic_next_obs"]`` is the next state measured on the SAME batch ``x_i``;
- critic gradient (Eq. 8): ``delta * grad_phi Q(s_t, a_t)``, averaged over ``m_phi`` steps, then
  one Adam step (we minimise ``delta**2 / 2`` with the target held fixed: same gradient, opposite sign);
- actor gradient (Eq. 9): ``grad_theta pi(s_j^{t+1}) grad_a Q(s_j^{t+1}, a)|_{a=pi(s_j^{t+1})}``,
  averaged over ``m_theta`` steps, then one Adam step (ascent on Q); ``s_j^{t+1}`` is the env's
  next observation, measured on a DIFFERENT batch ``x_j`` (the paper's separate-sample update).
  With ``separate_sample=False`` the actor uses ``s_i^{t+1}`` instead, as the critic does.

Choices the paper leaves open, made here (and overridable):

- ``gamma=0.9``, ``m_phi=m_theta=1``: not given in the paper.
- Critic: ``Linear(obs+act, 10) - tanh - Linear(10, 1)``. A smooth activation keeps
  ``grad_a Q`` continuous in ``a``, so the actor can settle inside the range instead of being
  pushed to a bound by a piecewise-linear (ReLU) Q.
- Exploration: Gaussian noise ``N(0, noise_std^2)`` added to the actor's action (in ``[-1, 1]``
  units with tanh, in learning-rate units with linear), then clipped (default ``noise_std=0.1``).
  The paper does not mention exploration; without any,
  ``Q`` is only ever fitted at ``a = pi(s)`` and ``grad_a Q`` is not learned. ``0`` turns it off.
- Truncated back-propagation through time of ONE step: the LSTM's incoming hidden state is
  detached, so the actor's gradient flows through the current LSTM step only (its weights act
  on the current input and on the carried-over, constant hidden state).
- TD targets do not bootstrap on ``terminated`` (divergence ends the episode for real) but do
  bootstrap on ``truncated`` (the episode length ``e`` is the paper's model-reset frequency, not
  an end of the task).
- Adam with torch defaults (lr 1e-3) for both networks, as in the paper.

Robustness levers beyond the paper, all off by default (= the paper's behaviour):

- ``target_tau``: target actor and critic for the TD target, Polyak-averaged with rate ``tau``
  after every critic update (DDPG-style). ``None`` = no target networks.
- ``normalize_obs``: running mean/std of the observations (updated during ``learn``, frozen in
  ``predict``, saved in the checkpoint) applied to both networks' inputs.
- ``reward_scale``: the reward is multiplied by this before the TD error.
- ``twin_critics``: two critics trained on the same TD target, which uses the smaller of their
  (target) values at the next state (TD3's clipped double Q, Fujimoto et al. 2018): it curbs the
  over-estimation that walks the actor into the lr region where training collapses. The actor
  ascends the first critic.
- ``learning_starts``: the first ``N`` env steps take uniformly random actions in the actor's range
  and train the critic only (SB3's ``learning_starts``): the critic sees the whole lr range
  before the actor follows its ``dQ/da``; otherwise an untrained critic's random slope can
  drive the tanh actor into a bound in a few episodes, where its gradient vanishes for good.
- Checkpoint selection: ``learn(callback=SelectBestCallback(eval_env, N, seeds))``
  (:class:`agents.callbacks.SelectBestCallback`, the same for every agent) runs a deterministic
  episode on fixed validation seed(s) every ``N`` training episodes (and at the end) and leaves
  the actor with the best validation return in place when ``learn`` returns.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common import utils as sb3_utils
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv
from torch import Tensor, nn

from agents.io import (CheckpointError, atomic_torch_save, box_from_json, box_to_json, checkpoint_json,
                       safe_torch_load)
from agents.sb3_shape import SB3Shaped

FORMAT = "lrrl-actor-critic/1"

LSTMState = tuple[Tensor, Tensor]  # (h, c), each (num_layers, batch, hidden)


# --------------------------------------------------------------------------- networks
#: how the actor's head output becomes the action (see :class:`Actor`)
ACTOR_OUTPUTS = ("tanh", "linear")


class Actor(nn.Module):
    """pi_theta: a ``num_layers``-layer LSTM over the observation sequence and a linear head,
    followed by tanh (``output="tanh"``: an action in ``[-1, 1]``) or by nothing
    (``output="linear"``: the head's output is the action itself, the paper's ``a = pi(s)``).

    ``forward(obs (B, obs_dim), state) -> (action (B, act_dim), new_state)``; one call is one
    time step of ``B`` independent sequences.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_size: int = 20, num_layers: int = 2,
                 output: str = "tanh") -> None:
        super().__init__()
        if output not in ACTOR_OUTPUTS:
            raise ValueError(f"actor output must be one of {ACTOR_OUTPUTS}, got {output!r}")
        self.hidden_size, self.num_layers, self.output = hidden_size, num_layers, output
        self.lstm = nn.LSTM(obs_dim, hidden_size, num_layers=num_layers)
        self.head = nn.Linear(hidden_size, act_dim)

    def initial_state(self, batch: int = 1) -> LSTMState:
        zeros = torch.zeros(self.num_layers, batch, self.hidden_size, device=self.head.weight.device)
        return zeros, zeros.clone()

    def forward(self, obs: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        out, new_state = self.lstm(obs.unsqueeze(0), state)  # sequence length 1
        action = self.head(out[0])
        return (torch.tanh(action) if self.output == "tanh" else action), new_state


class Critic(nn.Module):
    """Q_phi(s, a): one hidden layer of ``hidden_size`` tanh units. ``forward -> (B,)``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_size: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim + act_dim, hidden_size), nn.Tanh(),
                                 nn.Linear(hidden_size, 1))

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


class RunningMeanStd(nn.Module):
    """Running mean and variance of observations (parallel Welford); buffers, so they are saved."""

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.clip, self.eps = clip, eps
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        x = x.reshape(-1, self.mean.numel()).double()
        b_mean, b_var, b = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, total = b_mean - self.mean, self.count + b
        m2 = self.var * self.count + b_var * b + delta ** 2 * self.count * b / total
        self.mean += delta * b / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: Tensor) -> Tensor:
        z = (x - self.mean.float()) / torch.sqrt(self.var.float() + self.eps)
        return z.clamp(-self.clip, self.clip)


# --------------------------------------------------------------------------- the agent
class ActorCritic(SB3Shaped):
    """The paper's learning-rate controller, trained on a ``LearningRateEnv`` (or any env with a
    ``Box`` observation and action space that puts ``critic_next_obs`` in ``info``; without it,
    the next observation is used for the critic too).

    Args:
        env: a gymnasium env (wrapped in SB3's ``Monitor`` if it is not), or an SB3 ``VecEnv`` of
            N parallel episodes (e.g. :func:`agents.vec_env.make_sb3_vec_env`; see ``learn``).
            ``None`` is allowed when ``observation_space``/``action_space`` are given (e.g. to
            predict only).
        gamma: discount factor. m_phi / m_theta: steps over which critic / actor gradients are
            averaged before one optimizer step.
        actor_lr / critic_lr: Adam learning rates (torch default 1e-3).
        noise_std: std of the Gaussian exploration noise, in the actor's output units (``[-1, 1]``
            with ``actor_output="tanh"``, the env's action, e.g. the learning rate, with
            ``"linear"``; 0: none).
        separate_sample: the actor update uses the next observation (batch ``x_j``, the paper's
            choice) rather than the critic's same-batch next state ``s_i^{t+1}``.
        target_tau: ``None`` (the paper: no target networks) or the Polyak rate of target nets.
        normalize_obs: normalise observations with running statistics.
        reward_scale: multiplies rewards before the TD error.
        twin_critics: two critics, TD target from their minimum (TD3-style clipped double Q).
        learning_starts: env steps of uniformly random actions (critic-only training) first.
        hidden_size / num_layers / critic_hidden: network sizes (paper: 20, 2, 10).
        actor_output: ``"tanh"`` (the actor's output in ``[-1, 1]`` is mapped affinely onto the
            env's action box) or ``"linear"`` (the paper's ``a = pi(s)``, ``a`` in R: the head's
            output IS the env's action, e.g. the learning rate of ``action="raw"``; the action
            taken is clipped to the env's box, the smallest change that keeps a rate positive and
            finite; the actor's update evaluates ``Q`` at the unclipped output).
        seed: seeds network initialisation, exploration noise and the env's first reset.
        device: ``auto``, ``cpu`` or ``cuda``. tensorboard_log / verbose: as in SB3.
    """

    def __init__(
        self,
        env: gym.Env | None = None,
        gamma: float = 0.9,
        m_phi: int = 1,
        m_theta: int = 1,
        actor_lr: float = 1e-3,
        critic_lr: float = 1e-3,
        noise_std: float = 0.1,
        separate_sample: bool = True,
        target_tau: float | None = None,
        normalize_obs: bool = False,
        reward_scale: float = 1.0,
        twin_critics: bool = False,
        learning_starts: int = 0,
        hidden_size: int = 20,
        num_layers: int = 2,
        critic_hidden: int = 10,
        actor_output: str = "tanh",
        seed: int | None = 0,
        device: str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        observation_space: spaces.Box | None = None,
        action_space: spaces.Box | None = None,
    ) -> None:
        if not 0 <= gamma <= 1:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        if learning_starts < 0:
            raise ValueError(f"learning_starts must be >= 0, got {learning_starts}")
        if m_phi < 1 or m_theta < 1:
            raise ValueError(f"m_phi and m_theta must be >= 1, got {m_phi}, {m_theta}")
        if noise_std < 0 or not math.isfinite(noise_std):
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        if target_tau is not None and not 0 < target_tau <= 1:
            raise ValueError(f"target_tau must be in (0, 1] or None, got {target_tau}")
        if actor_output not in ACTOR_OUTPUTS:
            raise ValueError(f"actor_output must be one of {ACTOR_OUTPUTS}, got {actor_output!r}")
        self.env = env = self._wrapped(env)
        if env is None and (observation_space is None or action_space is None):
            raise ValueError("give an env, or both observation_space and action_space")
        self.observation_space = env.observation_space if observation_space is None else observation_space
        self.action_space = env.action_space if action_space is None else action_space
        if not isinstance(self.observation_space, spaces.Box) or not isinstance(self.action_space, spaces.Box):
            raise TypeError("ActorCritic needs Box observation and action spaces")
        self.hyper = dict(gamma=float(gamma), m_phi=int(m_phi), m_theta=int(m_theta),
                          actor_lr=float(actor_lr), critic_lr=float(critic_lr), noise_std=float(noise_std),
                          separate_sample=bool(separate_sample),
                          target_tau=None if target_tau is None else float(target_tau),
                          normalize_obs=bool(normalize_obs), reward_scale=float(reward_scale),
                          twin_critics=bool(twin_critics), learning_starts=int(learning_starts),
                          hidden_size=int(hidden_size), num_layers=int(num_layers),
                          critic_hidden=int(critic_hidden), actor_output=str(actor_output))
        for key, value in self.hyper.items():
            setattr(self, key, value)
        self.seed, self.tensorboard_log, self.verbose = seed, tensorboard_log, verbose
        self.device = sb3_utils.get_device(device)

        obs_dim = int(np.prod(self.observation_space.shape))
        self.act_dim = int(np.prod(self.action_space.shape))
        # the range of the actor's actions: [-1, 1] (tanh, mapped onto the env's box), or the env's
        # box itself (linear: the actor's output is the env's action)
        if actor_output == "tanh":
            low, high = -np.ones(self.act_dim), np.ones(self.act_dim)
        else:
            low, high = self.action_space.low.reshape(-1), self.action_space.high.reshape(-1)
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ValueError("actor_output='linear' needs an action box with finite bounds "
                                 "(the action taken is clipped to it)")
        self._action_low = torch.as_tensor(low, dtype=torch.float32)
        self._action_high = torch.as_tensor(high, dtype=torch.float32)
        # network initialisation from `seed`, without touching the caller's global RNG
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            self.actor = Actor(obs_dim, self.act_dim, hidden_size, num_layers, actor_output).to(self.device)
            self.critic = Critic(obs_dim, self.act_dim, critic_hidden).to(self.device)
            self.critic2 = Critic(obs_dim, self.act_dim, critic_hidden).to(self.device) if twin_critics else None
        self.obs_rms = RunningMeanStd(obs_dim).to(self.device)
        self.actor_target = self.critic_target = None
        if target_tau is not None:
            self.actor_target = Actor(obs_dim, self.act_dim, hidden_size, num_layers,
                                      actor_output).to(self.device)
            self.critic_target = Critic(obs_dim, self.act_dim, critic_hidden).to(self.device)
            self.actor_target.load_state_dict(self.actor.state_dict())
            self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic2_target = None
        if twin_critics and target_tau is not None:
            self.critic2_target = Critic(obs_dim, self.act_dim, critic_hidden).to(self.device)
            self.critic2_target.load_state_dict(self.critic2.state_dict())
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=actor_lr)
        self.critic_optimizer = torch.optim.Adam(self._critic_parameters(), lr=critic_lr)
        self.noise_generator = torch.Generator().manual_seed(0 if seed is None else seed)

        self.num_timesteps = 0
        self._episode_num = 0
        self._critic_steps = self._actor_steps = 0  # gradients accumulated in the current window
        self._n_updates = 0
        self._needs_first_reset = True
        self.ep_info_buffer: deque = deque(maxlen=100)
        self._logger: Logger | None = None
        self._custom_logger = False

    # ------------------------------------------------------------------ SB3-style plumbing
    def set_env(self, env: gym.Env) -> None:
        if env.observation_space.shape != self.observation_space.shape or \
                env.action_space.shape != self.action_space.shape:
            raise ValueError("the env's spaces differ from the ones the agent was built for")
        self.env = self._wrapped(env)
        self._needs_first_reset = True

    @staticmethod
    def _wrapped(env):
        """A single env in SB3's ``Monitor`` (episode returns in ``info["episode"]``, as SB3 does
        it); an SB3 ``VecEnv`` (N parallel episodes, e.g. :func:`agents.vec_env.make_sb3_vec_env`,
        whose ``VecMonitor`` does the same) as it is."""
        if env is None or isinstance(env, VecEnv) or is_wrapped(env, Monitor):
            return env
        return Monitor(env)

    def _clip_action(self, action: Tensor) -> Tensor:
        """An actor action (CPU tensor, ``(..., act_dim)``) clipped to the actor's range."""
        return torch.clamp(action, self._action_low, self._action_high)

    def _random_actions(self, shape: tuple[int, ...]) -> np.ndarray:
        """Uniformly random actor actions (the ``learning_starts`` warm-up)."""
        u = torch.rand(shape, generator=self.noise_generator)
        return (self._action_low + (self._action_high - self._action_low) * u).numpy()

    def _from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Actor action -> env action: the affine map of [-1, 1] onto the env's box (tanh; the
        identity for the default [-1, 1] box), or the action itself (linear)."""
        if self.actor_output == "linear":
            return np.asarray(unit).astype(self.action_space.dtype)
        low, high = self.action_space.low, self.action_space.high
        return (low + (unit + 1.0) * 0.5 * (high - low)).astype(self.action_space.dtype)

    def _obs_tensor(self, obs: Any) -> Tensor:
        """Observation(s) -> normalised float tensor of shape ``(B, obs_dim)``."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device).reshape(
            -1, self.obs_rms.mean.numel())
        return self.obs_rms(x) if self.normalize_obs else x

    def _critic_parameters(self) -> list[nn.Parameter]:
        twin = [] if self.critic2 is None else list(self.critic2.parameters())
        return list(self.critic.parameters()) + twin

    # ------------------------------------------------------------------ Algorithm 1, lines 13-26
    def _td_target(self, reward: float, critic_next_obs: Tensor, terminated: bool, state: LSTMState) -> Tensor:
        """``r + gamma * Q(s_i^{t+1}, pi(s_i^{t+1}))`` (target nets if ``target_tau``; the
        minimum of the two critics with ``twin_critics``), no gradient."""
        actor = self.actor if self.actor_target is None else self.actor_target
        critic = self.critic if self.critic_target is None else self.critic_target
        with torch.no_grad():
            next_action, _ = actor(critic_next_obs, state)
            q_next = critic(critic_next_obs, next_action)
            if self.critic2 is not None:
                critic2 = self.critic2 if self.critic2_target is None else self.critic2_target
                q_next = torch.minimum(q_next, critic2(critic_next_obs, next_action))
        return self.reward_scale * reward + self.gamma * (1.0 - float(terminated)) * q_next

    def train_step(self, obs: Any, action_unit: Any, reward: float, critic_next_obs: Any,
                   actor_next_obs: Any, terminated: bool, state: LSTMState) -> dict[str, float]:
        """One step of Algorithm 1's learning (lines 13-26) for one transition.

        Args:
            obs: ``s_t``, shape ``(obs_dim,)``. action_unit: ``a_t`` as taken, in the actor's
                range (``[-1, 1]``, or the env's box with ``actor_output="linear"``).
            reward: ``r_t``. critic_next_obs: ``s_i^{t+1}`` (same batch ``x_i``).
            actor_next_obs: ``s_j^{t+1}`` (next batch ``x_j``); ignored unless ``separate_sample``.
            terminated: no bootstrap if true.
            state: the actor's LSTM state after consuming ``s_t`` (the state it will carry into
                step ``t+1``); detached here: one-step truncated BPTT.

        Gradients are accumulated in ``.grad`` (already divided by ``m_phi`` / ``m_theta``) and
        an optimizer steps every ``m_phi`` / ``m_theta`` calls. Returns ``delta``, ``q`` and
        the actor's ``q_actor`` (floats) for logging.
        """
        state = (state[0].detach(), state[1].detach())
        s = self._obs_tensor(obs)
        s_i_next = self._obs_tensor(critic_next_obs)
        a = torch.as_tensor(np.asarray(action_unit, np.float32), device=self.device).reshape(1, -1)

        # --- critic: TD error (Eq. 7) and its gradient (Eq. 8), averaged over m_phi steps
        target = self._td_target(reward, s_i_next, terminated, state)
        q = self.critic(s, a)
        delta = target - q                      # (1,)
        critic_loss = 0.5 * delta.pow(2).sum() / self.m_phi  # d/dphi = -delta * dQ/dphi / m_phi
        if self.critic2 is not None:  # the twin fits the same target
            critic_loss = critic_loss + 0.5 * (target - self.critic2(s, a)).pow(2).sum() / self.m_phi
        critic_loss.backward()
        self._critic_steps += 1
        if self._critic_steps == self.m_phi:
            self.critic_optimizer.step()
            self.critic_optimizer.zero_grad(set_to_none=True)
            self._critic_steps = 0
            self._n_updates += 1
            if self.target_tau is not None:
                sb3_utils.polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.target_tau)
                if self.critic2_target is not None:
                    sb3_utils.polyak_update(self.critic2.parameters(), self.critic2_target.parameters(),
                                            self.target_tau)
                sb3_utils.polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.target_tau)

        if 0 < self.num_timesteps <= self.learning_starts:  # warm-up (learn counts from 1): critic only
            d, qv = torch.cat([delta.detach(), q.detach()]).tolist()  # one host sync for logging
            return {"delta": d, "q": qv, "q_actor": float("nan")}
        # --- actor (Eq. 9) on s_j^{t+1} (separate sample) or s_i^{t+1}, averaged over m_theta steps
        s_actor = self._obs_tensor(actor_next_obs) if self.separate_sample else s_i_next
        a_actor, _ = self.actor(s_actor, state)
        q_actor = self.critic(s_actor, a_actor).sum()
        # only the actor's parameters: grad_theta pi * grad_a Q by the chain rule (Q's own
        # parameters get no gradient from this term)
        grads = torch.autograd.grad(-q_actor / self.m_theta, list(self.actor.parameters()))
        for p, g in zip(self.actor.parameters(), grads):
            p.grad = g if p.grad is None else p.grad + g
        self._actor_steps += 1
        if self._actor_steps == self.m_theta:
            self.actor_optimizer.step()
            self.actor_optimizer.zero_grad(set_to_none=True)
            self._actor_steps = 0
        d, qv, qa = torch.cat([delta.detach(), q.detach(), q_actor.detach().reshape(1)]).tolist()
        return {"delta": d, "q": qv, "q_actor": qa}  # one host sync per step, for logging

    # ------------------------------------------------------------------ acting
    def _unit_actions(self, a: Tensor, explore: bool) -> np.ndarray:
        """Actor outputs ``(n, act_dim)`` -> actions in the actor's range: plus exploration noise
        (``explore``), clipped. The one place the agent acts with noise (training and ``predict``)."""
        a = a.cpu()
        if explore and self.noise_std > 0:
            a = a + self.noise_std * torch.randn(a.shape, generator=self.noise_generator)
        return self._clip_action(a).numpy()

    def _act(self, obs: np.ndarray, state: LSTMState, explore: bool) -> tuple[np.ndarray, LSTMState]:
        """One batched actor step on ``obs`` ``(n, obs_dim)`` -> (actions ``(n, act_dim)``, new state)."""
        with torch.no_grad():
            a, state = self.actor(self._obs_tensor(obs), state)
        return self._unit_actions(a, explore), state

    # ------------------------------------------------------------------ Algorithm 1
    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 1,
              tb_log_name: str = "ActorCritic", reset_num_timesteps: bool = True,
              progress_bar: bool = False) -> "ActorCritic":
        """Train for ``total_timesteps`` env steps (Algorithm 1's ``T``), SB3-style.

        ``callback``: an SB3 ``BaseCallback``, a list of them, or a function
        ``f(locals, globals) -> bool``; its ``on_step`` sees ``self.locals["infos"]`` etc.
        Episode statistics are logged (``rollout/ep_rew_mean``, ...) every ``log_interval``
        episodes. With ``reset_num_timesteps=False`` training continues the step count (resume);
        a resumed run starts a fresh episode (the primary model's weights are not checkpointed).

        With an SB3 ``VecEnv`` of N envs, N episodes run side by side: the actor acts on the N
        observations in one batched LSTM step (N recurrent states, each restarted when its
        episode ends), and each of the N transitions then gets exactly the single-env update
        (:meth:`train_step`, the separate-sample actor update included), so the agent's updates
        per transition are those of one env; every transition counts as one timestep. A single
        env is the same loop with N = 1.

        Checkpoint selection is a callback: :class:`agents.callbacks.SelectBestCallback` (it sees
        each finished episode in ``on_step`` and keeps :meth:`get_parameters`: the actor and the
        observation normaliser).
        """
        if self.env is None:
            raise ValueError("learn() needs an env: pass one to the constructor, load() or set_env()")
        if reset_num_timesteps:
            self.num_timesteps, self._episode_num = 0, 0
        total = self.num_timesteps + int(total_timesteps)
        if not self._custom_logger:
            self._logger = sb3_utils.configure_logger(self.verbose, self.tensorboard_log, tb_log_name,
                                                      reset_num_timesteps)
        callback = self._init_callback(callback, progress_bar)
        episodes = _Episodes(self.env)
        # seed the env on a fresh start only; a resumed run restarts from the env's own seed
        # (a seeded reset would also re-draw the primary model's w0)
        fresh = self._needs_first_reset and self.num_timesteps == 0
        obs = episodes.reset(self.seed if fresh else None)
        self._needs_first_reset = False
        self._collect(episodes, obs, total, callback, log_interval)
        return self

    def _collect(self, episodes: "_Episodes", obs: np.ndarray, total: int, callback: Any, log_interval: int) -> None:
        """Algorithm 1's loop over the ``n`` episodes of ``episodes`` from observations ``obs``."""
        n, start_time, start_steps = episodes.num_envs, time.time_ns(), self.num_timesteps
        total_timesteps = total - start_steps  # (SB3's name, for the callbacks' locals)
        state = self.actor.initial_state(n)
        self._observe(obs)
        stats = {"delta": [], "q": [], "q_actor": []}
        callback.on_training_start(locals(), globals())
        while self.num_timesteps < total:
            # lines 3-6: the actor picks a_t = pi(s_t) (plus exploration noise)
            action_unit, next_state = self._act(obs, state, explore=True)
            if self.num_timesteps < self.learning_starts:  # warm-up: uniform random actions
                action_unit = self._random_actions((n, self.act_dim))
            # lines 8-12 and 20-21: the env trains the primary model and measures s_i^{t+1}, s_j^{t+1}
            new_obs, rewards, dones, infos, last_obs, terminated = episodes.step(self._from_unit(action_unit))
            self._observe(np.stack(last_obs))
            for i in range(n):  # lines 13-26: critic and actor updates, one transition at a time
                self.num_timesteps += 1
                out = self.train_step(obs[i], action_unit[i], float(rewards[i]),
                                      infos[i].get("critic_next_obs", last_obs[i]), last_obs[i], terminated[i],
                                      (next_state[0][:, i:i + 1], next_state[1][:, i:i + 1]))
                for key in stats:
                    stats[key].append(out[key])
            callback.update_locals(locals())  # infos, rewards, dones: SB3's names
            if not callback.on_step():
                break
            for i in np.flatnonzero(dones):
                self._episode_num += 1
                if "episode" in infos[i]:
                    self.ep_info_buffer.append(infos[i]["episode"])
                if log_interval and self._episode_num % log_interval == 0:
                    self._dump_logs(stats, start_time, start_steps)
                    stats = {k: [] for k in stats}
                next_state[0][:, i].zero_()  # line 27: w <- w0, and that episode's LSTM restarts
                next_state[1][:, i].zero_()
            obs, state = episodes.next_obs(new_obs, dones), next_state
            if dones.any():
                self._observe(obs[dones])  # the new episodes' first observations
        callback.on_training_end()

    def _observe(self, obs: np.ndarray) -> None:
        """Update the observation normaliser with rows ``obs`` (when it is on)."""
        if self.normalize_obs and len(obs):
            self.obs_rms.update(torch.as_tensor(obs, device=self.device))

    def _dump_logs(self, stats: dict, start_time: int, start_steps: int) -> None:
        elapsed = max((time.time_ns() - start_time) / 1e9, 1e-9)
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", float(np.mean([e["r"] for e in self.ep_info_buffer])))
            self.logger.record("rollout/ep_len_mean", float(np.mean([e["l"] for e in self.ep_info_buffer])))
        self.logger.record("time/episodes", self._episode_num, exclude="tensorboard")
        self.logger.record("time/fps", int((self.num_timesteps - start_steps) / elapsed))
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        if stats["delta"]:
            self.logger.record("train/critic_loss", float(np.mean(np.square(stats["delta"])) / 2))
            self.logger.record("train/q", float(np.mean(stats["q"])))
            self.logger.record("train/actor_q", float(np.mean(stats["q_actor"])))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)

    # ------------------------------------------------------------------ inference
    def predict(self, observation: Any, state: tuple[np.ndarray, np.ndarray] | None = None,
                episode_start: Any = None, deterministic: bool = True
                ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """SB3-shaped inference (like ``RecurrentPPO.predict``).

        Args:
            observation: shape ``(obs_dim,)`` or ``(n_envs, obs_dim)``.
            state: ``(h, c)`` numpy arrays of shape ``(num_layers, n_envs, hidden_size)`` returned
                by the previous call; ``None`` starts fresh sequences.
            episode_start: shape ``(n_envs,)``, true where a new episode starts (state reset).
            deterministic: no exploration noise if true (the noise is drawn otherwise).
        Returns:
            ``(action, state)``: action of shape ``(act_dim,)`` or ``(n_envs, act_dim)`` in the
            env's action space, and the new recurrent state.
        """
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == len(self.observation_space.shape)
        x = self._obs_tensor(obs)
        n = x.shape[0]
        if state is None:
            h, c = self.actor.initial_state(n)
        else:
            h = torch.as_tensor(np.asarray(state[0]), dtype=torch.float32, device=self.device).clone()
            c = torch.as_tensor(np.asarray(state[1]), dtype=torch.float32, device=self.device).clone()
            if h.shape != (self.num_layers, n, self.hidden_size):
                raise ValueError(f"state has shape {tuple(h.shape)}, expected "
                                 f"{(self.num_layers, n, self.hidden_size)}")
        if episode_start is not None:
            keep = 1.0 - torch.as_tensor(np.asarray(episode_start, dtype=np.float32),
                                         device=self.device).reshape(1, n, 1)
            h, c = h * keep, c * keep
        with torch.no_grad():
            a, (h, c) = self.actor(x, (h, c))
        action = self._from_unit(self._unit_actions(a, explore=not deterministic))
        return (action[0] if single else action), (h.cpu().numpy(), c.cpu().numpy())

    def _parameter_objects(self) -> dict[str, Any]:
        """What ``predict`` uses: the actor and the observation normaliser
        (:meth:`get_parameters` / :meth:`set_parameters`, checkpoint selection)."""
        return {"actor": self.actor, "obs_rms": self.obs_rms}

    # ------------------------------------------------------------------ checkpoints
    def settings(self) -> dict:
        """Everything needed to rebuild the agent (JSON-serialisable)."""
        return {"hyperparameters": dict(self.hyper), "seed": self.seed,
                "observation_space": box_to_json(self.observation_space),
                "action_space": box_to_json(self.action_space)}

    def save(self, path: str | os.PathLike, resume: dict | None = None) -> None:
        """Atomic checkpoint: plain state dicts (networks, normaliser, optimizers, noise RNG),
        counters and a JSON string of settings. Gradients accumulated in an unfinished
        ``m_phi``/``m_theta`` window are not saved (that window restarts on load) unless
        ``resume`` holds them: the state an exact resume needs (:mod:`agents.snapshot`)."""
        payload = {
            "format": FORMAT,
            "settings_json": json.dumps(self.settings()),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "obs_rms": self.obs_rms.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "noise_rng": self.noise_generator.get_state(),
            "num_timesteps": self.num_timesteps,
            "episode_num": self._episode_num,
            "interrupted_episode_steps": int(getattr(self, "interrupted_episode_steps", 0)),
            "n_updates": self._n_updates,
        }
        if resume is not None:
            payload["resume"] = resume
        if self.target_tau is not None:
            payload["actor_target"] = self.actor_target.state_dict()
            payload["critic_target"] = self.critic_target.state_dict()
        if self.critic2 is not None:
            payload["critic2"] = self.critic2.state_dict()
            if self.critic2_target is not None:
                payload["critic2_target"] = self.critic2_target.state_dict()
        atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike, env: gym.Env | None = None, device: str = "auto",
             **overrides: Any) -> "ActorCritic":
        """Rebuild an agent saved by :meth:`save` (``weights_only=True``; bad files raise
        :class:`~agents.io.CheckpointError`). ``env`` is needed only to keep training."""
        payload = safe_torch_load(path, map_location="cpu")
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError(f"{str(path)!r} is not an actor-critic checkpoint (format {FORMAT!r})")
        try:
            settings = checkpoint_json(payload, "settings_json", path)
            agent = cls(env=env, **{**settings["hyperparameters"], **overrides}, seed=settings["seed"],
                        device=device, observation_space=box_from_json(settings["observation_space"]),
                        action_space=box_from_json(settings["action_space"]))
            agent.actor.load_state_dict(payload["actor"])
            agent.critic.load_state_dict(payload["critic"])
            agent.obs_rms.load_state_dict(payload["obs_rms"])
            agent.actor_optimizer.load_state_dict(payload["actor_optimizer"])
            agent.critic_optimizer.load_state_dict(payload["critic_optimizer"])
            agent.noise_generator.set_state(payload["noise_rng"])
            if agent.target_tau is not None:
                agent.actor_target.load_state_dict(payload.get("actor_target", payload["actor"]))
                agent.critic_target.load_state_dict(payload.get("critic_target", payload["critic"]))
            if agent.critic2 is not None:
                agent.critic2.load_state_dict(payload["critic2"])
                if agent.critic2_target is not None:
                    agent.critic2_target.load_state_dict(payload.get("critic2_target", payload["critic2"]))
            agent.num_timesteps = int(payload["num_timesteps"])
            agent._episode_num = int(payload["episode_num"])
            agent.interrupted_episode_steps = int(payload.get("interrupted_episode_steps", 0))
            agent._n_updates = int(payload["n_updates"])
        except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{str(path)!r} is an inconsistent actor-critic checkpoint "
                                  f"({type(exc).__name__}: {str(exc)[:200]})") from None
        if env is not None and env.observation_space.shape != agent.observation_space.shape:
            raise ValueError(f"the env's observation shape {env.observation_space.shape} differs from "
                             f"the checkpoint's {agent.observation_space.shape}")
        return agent


class _Episodes:
    """The training env as ``num_envs`` episodes side by side, one interface for the loop: an SB3
    ``VecEnv`` (which restarts an ended episode itself, keeping its last observation in
    ``infos[i]["terminal_observation"]``) or a gymnasium env (N = 1, restarted by :meth:`next_obs`
    once the callbacks have seen the step)."""

    def __init__(self, env) -> None:
        self.env, self.vector = env, isinstance(env, VecEnv)
        self.num_envs = env.num_envs if self.vector else 1

    def reset(self, seed: int | None) -> np.ndarray:
        """First observations ``(n, obs_dim)``; ``seed``: env ``i`` gets ``seed + i``."""
        if not self.vector:
            return self.env.reset(seed=seed)[0][None]
        if seed is not None:
            self.env.seed(seed)  # sub-env i: seed + i (SB3's convention)
        return self.env.reset()

    def step(self, actions: np.ndarray):
        """``(new_obs, rewards, dones, infos, last_obs, terminated)``: SB3's four, each
        transition's own next observation (the terminal one where an episode ended) and whether
        it ended by termination (not truncation)."""
        if not self.vector:
            obs, reward, term, trunc, info = self.env.step(actions[0])
            return obs[None], np.array([reward]), np.array([term or trunc]), [info], [obs], [bool(term)]
        new_obs, rewards, dones, infos = self.env.step(actions)
        last = [infos[i]["terminal_observation"] if dones[i] else new_obs[i] for i in range(self.num_envs)]
        terminated = [bool(dones[i]) and not infos[i].get("TimeLimit.truncated", False)
                      for i in range(self.num_envs)]
        return new_obs, rewards, dones, infos, last, terminated

    def next_obs(self, new_obs: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """The observations the next step acts on: a single env's episode that ended restarts now."""
        if not self.vector and dones[0]:
            return self.env.reset()[0][None]
        return new_obs
