"""Episodic policy search: the cross-entropy method over a small deterministic controller.

Read top to bottom: the policy (:class:`LinearPolicy`), then :class:`PolicySearch` (``learn`` is
the whole algorithm), then ``predict``/``save``/``load`` in stable-baselines3's shape.

Why an episodic search beside the paper's actor-critic and TD3 (issue 16): the controller is
judged by one number per episode, the primary model's loss after ``episode_length`` updates,
and the best controllers sit next to a cliff (a step-length cap twice too large kills the
network). Value-based agents learn that cliff from a few dozen noisy episodes and retreat from
it; a search that compares whole episodes of candidate controllers on the SAME primary seed
(common random numbers) ranks them by exactly the criterion, with no critic to fit. This is
the family Daniel, Taylor and Nowozin (2016) used to learn step sizes (REPS, an episodic
policy search); the cross-entropy method (Rubinstein 1999; with the added noise of Szita and
Lorincz 2006) is its simplest member.

Per generation ``g``:

1. draw ``population`` parameter vectors ``theta_i = mu + sigma * eps_i`` (antithetic pairs
   ``+eps``/``-eps`` halve the sampling noise of the ranking);
2. run one episode per candidate, all from ``env.reset(seed=s_g)`` with the same ``s_g`` (the
   same ``w0`` and batch order), and record its return; with ``episodes_per_candidate = K > 1``,
   K episodes per candidate from K seeds shared by all candidates (on a task suite: K problems),
   and the candidate's score is robust to their scales: per episode the candidates are ranked
   (0 worst, 1 best), an episode that ended in divergence or collapse scores -1, and the score is
   the mean over the K episodes (so one collapse costs more than being last everywhere else);
3. ``mu``, ``sigma`` <- mean and std of the ``elite_fraction`` best candidates, plus extra
   exploration noise that decays linearly to ``min_std`` over ``noise_decay`` generations;
4. the callbacks' ``on_rollout_end`` is called: checkpoint selection
   (:class:`agents.callbacks.SelectBestCallback`, the same for every agent) runs the mean policy
   ``mu`` deterministically on fixed validation seeds every ``eval_freq`` generations, and the
   best ``mu`` seen is the one ``learn`` leaves in place.

The policy is ``a = tanh(W x + b)`` with ``x`` the observation scaled from its (finite) box onto
``[-1, 1]``: with the capped action and the features ``step_fraction`` and ``grad_norm`` it can
express a rate and a step-length cap that depend on the time left, the gradient norm and the
loss. ``predict`` uses ``mu``; it keeps no recurrent state.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import time
from collections import deque
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common import utils as sb3_utils
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv

from agents.io import (CheckpointError, atomic_torch_save, box_from_json, box_to_json, checkpoint_json,
                       safe_torch_load)
from agents.sb3_shape import SB3Shaped

FORMAT = "lrrl-policy-search-v1"

# --------------------------------------------------------------------------- worker processes
_WORKER_ENV: gym.Env | None = None


def _init_worker(env_factory: Callable[[], gym.Env]) -> None:
    """A worker builds its env once (one torch thread: the workers are the parallelism)."""
    global _WORKER_ENV
    torch.set_num_threads(1)
    _WORKER_ENV = env_factory()


def _worker_episode(policy: "LinearPolicy", theta: np.ndarray, seed: int) -> list[tuple[float, bool, dict]]:
    return run_candidate(_WORKER_ENV, policy, theta, seed)


def run_candidate(env: gym.Env, policy: "LinearPolicy", theta: np.ndarray, seed: int
                  ) -> list[tuple[float, bool, dict]]:
    """One episode of the deterministic policy ``theta`` from ``env.reset(seed=seed)``:
    ``[(reward, done, info), ...]`` per env step."""
    obs, _ = env.reset(seed=int(seed))
    steps, done = [], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy.action(theta, obs)[0])
        done = terminated or truncated
        steps.append((float(reward), bool(done), info))
    return steps


def run_candidates_vec(env: VecEnv, policy: "LinearPolicy", thetas: np.ndarray, seed: int
                       ) -> list[list[tuple[float, bool, dict]]]:
    """:func:`run_candidate` for several candidates side by side in an SB3 ``VecEnv`` of N
    parallel primary runs (``agents.vec_env.make_sb3_vec_env``; ``len(thetas) <= N``): every
    sub-env is reset with the same primary ``seed``, so each candidate's episode is the one
    :func:`run_candidate` would give (to float rounding: the N networks train in one batched
    call). Sub-envs beyond ``len(thetas)``, and a sub-env whose episode ended before the others
    (it autoresets), run on with the last candidate and are ignored."""
    n, k = env.num_envs, len(thetas)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 to {n} candidates for {n} sub-envs, got {k}")
    rows = np.concatenate([thetas, np.repeat(thetas[-1:], n - k, axis=0)])
    env.set_seeds([int(seed)] * n)
    obs = env.reset()
    episodes: list[list[tuple[float, bool, dict]]] = [[] for _ in range(k)]
    running = np.ones(k, dtype=bool)
    while running.any():
        actions = np.stack([policy.action(theta, o)[0] for theta, o in zip(rows, obs)])
        obs, rewards, dones, infos = env.step(actions)
        for i in np.flatnonzero(running):
            episodes[i].append((float(rewards[i]), bool(dones[i]), infos[i]))
            running[i] = not dones[i]
    return episodes


# --------------------------------------------------------------------------- the policy
class LinearPolicy:
    """``a = tanh(W x + b)`` on the observation ``x`` scaled from its box onto ``[-1, 1]``
    (entries with an infinite bound are used as they are); the action is then mapped from
    ``[-1, 1]`` onto the action box. Parameters are one flat vector ``(W.ravel(), b)``."""

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Box) -> None:
        self.obs_dim = int(np.prod(observation_space.shape))
        self.act_dim = int(np.prod(action_space.shape))
        low = observation_space.low.reshape(-1).astype(np.float64)
        high = observation_space.high.reshape(-1).astype(np.float64)
        finite = np.isfinite(low) & np.isfinite(high) & (high > low)
        self._center = np.where(finite, (low + high) / 2, 0.0)
        self._half = np.where(finite, (high - low) / 2, 1.0)
        self._act_low = action_space.low.reshape(-1).astype(np.float64)
        self._act_high = action_space.high.reshape(-1).astype(np.float64)
        self.action_space = action_space
        self.n_params = self.act_dim * (self.obs_dim + 1)

    def unit_action(self, theta: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Action(s) in ``[-1, 1]`` for observation(s) of shape ``(obs_dim,)`` or ``(n, obs_dim)``."""
        x = (np.asarray(obs, dtype=np.float64).reshape(-1, self.obs_dim) - self._center) / self._half
        w = theta[:-self.act_dim].reshape(self.act_dim, self.obs_dim)
        return np.tanh(x @ w.T + theta[-self.act_dim:])

    def action(self, theta: np.ndarray, obs: np.ndarray) -> np.ndarray:
        unit = self.unit_action(theta, obs)
        a = self._act_low + (unit + 1.0) * 0.5 * (self._act_high - self._act_low)
        return a.astype(self.action_space.dtype)


# --------------------------------------------------------------------------- the search
class PolicySearch(SB3Shaped):
    """Cross-entropy-method policy search for a learning-rate controller (see the module docstring).

    Args:
        env: a single gymnasium env (wrapped in SB3's ``Monitor`` if it is not), or an SB3
            ``VecEnv`` of N parallel primary runs (:func:`agents.vec_env.make_sb3_vec_env`): a
            generation's candidates then run N at a time in one batched env
            (:func:`run_candidates_vec`; a population that is a multiple of N wastes no run);
            ``None`` with both spaces given, to predict only.
        population: candidates per generation (even: antithetic pairs).
        elite_fraction: fraction of the population the new mean and std are fitted to.
        init_std: initial std of every parameter (the mean starts at 0: the action box's centre).
        min_std: floor of the extra exploration noise added to the elite std.
        noise_decay: generations over which the extra noise decays from ``init_std`` to ``min_std``.
        episodes_per_candidate: episodes per candidate and generation (K, on K shared seeds),
            scored by rank (module docstring); 1: the return itself.
        seed: seeds the sampling and the primary seeds of the generations (``seed * 10007 + g``,
            times K plus ``k`` for the K episodes).
        workers: processes that run a generation's episodes side by side (1: in this process);
            each builds its own env with ``env_factory`` (a picklable function), since the
            candidates of a generation are independent episodes. The callbacks still see every
            step, in order, as each episode comes back.
        env_factory: builds the env a worker runs (needed with ``workers > 1``).
        device: kept for the SB3-shaped interface (the policy is a few numpy numbers).
        tensorboard_log / verbose: as in SB3.
    """

    #: checkpoint selection (:class:`agents.callbacks.SelectBestCallback`) counts generations
    #: (signalled by ``on_rollout_end``), not episodes
    selection_unit = "generation"

    def __init__(self, env: gym.Env | None = None, population: int = 12, elite_fraction: float = 0.25,
                 init_std: float = 0.5, min_std: float = 0.02, noise_decay: int = 10,
                 episodes_per_candidate: int = 1, seed: int | None = 0, workers: int = 1, env_factory: Callable[[], gym.Env] | None = None,
                 device: str = "cpu", tensorboard_log: str | None = None,
                 verbose: int = 0, observation_space: spaces.Box | None = None,
                 action_space: spaces.Box | None = None) -> None:
        if population < 2 or population % 2:
            raise ValueError(f"population must be an even number >= 2 (antithetic pairs), got {population}")
        if not 0 < elite_fraction <= 1 or int(population * elite_fraction) < 1:
            raise ValueError(f"elite_fraction must keep at least one candidate, got {elite_fraction}")
        if not init_std > 0 or not min_std >= 0 or noise_decay < 1:
            raise ValueError("need init_std > 0, min_std >= 0 and noise_decay >= 1")
        if isinstance(episodes_per_candidate, bool) or not isinstance(episodes_per_candidate, int) \
                or episodes_per_candidate < 1:
            raise ValueError(f"episodes_per_candidate must be an integer >= 1, got {episodes_per_candidate!r}")
        if workers < 1 or (workers > 1 and env_factory is None):
            raise ValueError("workers must be >= 1, and workers > 1 needs an env_factory")
        if workers > 1 and isinstance(env, VecEnv):
            raise ValueError("give either workers > 1 (processes) or a vector env (one batched "
                             "process), not both")
        self.workers, self.env_factory = int(workers), env_factory
        if env is not None and not isinstance(env, VecEnv) and not is_wrapped(env, Monitor):
            env = Monitor(env)
        self.env = env
        if env is None and (observation_space is None or action_space is None):
            raise ValueError("give an env, or both observation_space and action_space")
        self.observation_space = env.observation_space if observation_space is None else observation_space
        self.action_space = env.action_space if action_space is None else action_space
        if not isinstance(self.observation_space, spaces.Box) or not isinstance(self.action_space, spaces.Box):
            raise TypeError("PolicySearch needs Box observation and action spaces")
        self.hyper = dict(population=int(population), elite_fraction=float(elite_fraction),
                          init_std=float(init_std), min_std=float(min_std), noise_decay=int(noise_decay))
        if episodes_per_candidate != 1:  # (absent from the settings of searches saved before it existed)
            self.hyper["episodes_per_candidate"] = int(episodes_per_candidate)
        self.episodes_per_candidate = int(episodes_per_candidate)
        for key, value in self.hyper.items():
            setattr(self, key, value)
        self.seed, self.tensorboard_log, self.verbose = seed, tensorboard_log, verbose
        self.policy = LinearPolicy(self.observation_space, self.action_space)
        self.mean = np.zeros(self.policy.n_params)
        self.std = np.full(self.policy.n_params, self.init_std)
        self.rng = np.random.default_rng(0 if seed is None else seed)
        self.num_timesteps = 0
        self.generation = 0
        self._episode_num = 0
        #: the counters and sampling state at the start of the generation under way (``None``
        #: between generations): what :meth:`save` writes mid-generation, so a checkpoint is
        #: always a generation boundary and a resumed search repeats that generation exactly
        self._generation_start: dict | None = None
        #: checkpoint selection's best so far (:class:`agents.callbacks.SelectBestCallback` keeps
        #: it here, so that it is saved and a resumed run selects as an uninterrupted one would)
        self.selection_state: dict | None = None
        self.ep_info_buffer: deque = deque(maxlen=100)
        self._logger: Logger | None = None
        self._custom_logger = False

    # ------------------------------------------------------------------ the algorithm
    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 1,
              tb_log_name: str = "PolicySearch", reset_num_timesteps: bool = True,
              progress_bar: bool = False) -> "PolicySearch":
        """Search for ``total_timesteps`` env steps (generations of whole episodes; a generation
        the budget cannot finish is not started). The callbacks see every step (``on_step``) and,
        once a generation's update is done and counted in ``generation``, ``on_rollout_end``:
        checkpoint selection (:class:`agents.callbacks.SelectBestCallback`) counts generations
        there, since ``selection_unit`` is ``"generation"``."""
        if self.env is None:
            raise ValueError("learn() needs an env")
        if reset_num_timesteps:
            self.num_timesteps, self._episode_num, self.generation = 0, 0, 0
        total = self.num_timesteps + int(total_timesteps)
        if not self._custom_logger:
            self._logger = sb3_utils.configure_logger(self.verbose, self.tensorboard_log, tb_log_name,
                                                      reset_num_timesteps)
        callback = self._init_callback(callback, progress_bar)
        callback.on_training_start(locals(), globals())
        start_time, start_steps = time.time_ns(), self.num_timesteps
        pool = None
        if self.workers > 1 and self.num_timesteps + self._generation_cost(self._episode_steps() or 1) <= total:
            pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_init_worker, initargs=(self.env_factory,))
        try:
            self._generations(total, callback, pool, log_interval, start_time, start_steps)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        callback.on_training_end()
        return self

    def _generations(self, total: int, callback: BaseCallback, pool, log_interval: int, start_time: int,
                     start_steps: int) -> None:
        episode_steps, keep_going = self._episode_steps(), True
        while keep_going:
            # a generation costs population x episode length; stop before one that cannot finish
            if episode_steps is not None and self.num_timesteps + self._generation_cost(episode_steps) > total:
                break
            if episode_steps is None and self.num_timesteps >= total:
                break
            self._generation_start = {"num_timesteps": self.num_timesteps, "episode_num": self._episode_num,
                                      "rng": json.dumps(self.rng.bit_generator.state)}
            callback.on_rollout_start()
            half = self.rng.standard_normal((self.population // 2, self.mean.size))
            candidates = self.mean + self.std * np.concatenate([half, -half])
            returns, collapsed = [], []
            for primary_seed in self._generation_seeds():
                for steps in self._episodes(candidates, primary_seed, pool):
                    keep_going = self._replay(steps, callback)
                    episode_steps = max(episode_steps or 0, len(steps))
                    returns.append(sum(r for r, _, _ in steps))
                    collapsed.append(bool(steps and steps[-1][2].get("diverged")))
                    if not keep_going:
                        break
                if not keep_going:
                    break
            if not keep_going:
                break
            shape = (self.episodes_per_candidate, len(candidates))
            self._update(candidates, self._scores(np.reshape(returns, shape), np.reshape(collapsed, shape)))
            self.generation += 1
            self._generation_start = None
            callback.on_rollout_end()  # a generation is done: checkpoint selection looks here
            if log_interval and self.generation % log_interval == 0:
                self._dump_logs(returns, start_time, start_steps)

    def _generation_cost(self, episode_steps: int) -> int:
        return self.population * self.episodes_per_candidate * episode_steps

    def _generation_seeds(self) -> list[int]:
        """The primary seeds every candidate of this generation runs on (shared: common random
        numbers, so that candidates are compared on the same problems, ``w0`` and batches)."""
        base = (0 if self.seed is None else self.seed) * 10007 + self.generation
        if self.episodes_per_candidate == 1:
            return [base]
        return [base * self.episodes_per_candidate + k for k in range(self.episodes_per_candidate)]

    def _episodes(self, candidates: np.ndarray, primary_seed: int, pool):
        """Each candidate's episode from ``reset(seed=primary_seed)``, in order, run here, in the
        worker processes or side by side in the vector env."""
        if isinstance(self.env, VecEnv):
            n = self.env.num_envs
            return (steps for start in range(0, len(candidates), n)
                    for steps in run_candidates_vec(self.env, self.policy, candidates[start:start + n], primary_seed))
        if pool is None:
            return (run_candidate(self.env, self.policy, theta, primary_seed) for theta in candidates)
        return pool.map(_worker_episode, [self.policy] * len(candidates), candidates, [primary_seed] * len(candidates))

    def _scores(self, returns: np.ndarray, collapsed: np.ndarray) -> np.ndarray:
        """Candidate scores from returns of shape ``(K, population)``: the return itself with one
        episode each; with several, the mean over episodes of the candidate's rank in that
        episode (0 worst to 1 best; a NaN return ranks last), -1 for a diverged or collapsed one."""
        if self.episodes_per_candidate == 1:
            return returns[0]
        safe = np.where(np.isfinite(returns), returns, -np.inf)
        ranks = np.argsort(np.argsort(safe, axis=1, kind="stable"), axis=1, kind="stable")
        utility = ranks / max(returns.shape[1] - 1, 1)
        return np.where(collapsed, -1.0, utility).mean(axis=0)

    def _episode_steps(self) -> int | None:
        """Env steps of a full episode, if the env says (a LearningRateEnv does); else ``None``
        and the first generation tells."""
        env = self.env.get_attr("single_env")[0] if isinstance(self.env, VecEnv) else self.env
        control = getattr(getattr(env, "unwrapped", None), "control", None)
        if control is not None:
            return math.ceil(control.episode_length / control.updates_per_step)
        spec = getattr(self.env, "spec", None)
        return getattr(spec, "max_episode_steps", None)

    def _replay(self, steps: list[tuple[float, bool, dict]], callback: BaseCallback) -> bool:
        """Count an episode's steps and show each to the callbacks, in order (SB3's protocol:
        locals named as in its ``collect_rollouts``). Returns whether training may go on."""
        for reward, done, info in steps:
            self.num_timesteps += 1
            infos, rewards, dones = [info], np.array([reward]), np.array([done])  # noqa: F841
            callback.update_locals(locals())
            if not callback.on_step():
                return False
        self._episode_num += 1
        # the Monitor wrapper's episode summary (what SB3's ep_info_buffer holds)
        self.ep_info_buffer.append({"r": sum(r for r, _, _ in steps), "l": len(steps)})
        return True

    def _update(self, candidates: np.ndarray, returns: np.ndarray) -> None:
        """Fit mean and std to the elite candidates; add the decaying exploration noise.
        A NaN return (it cannot happen with this env, which never raises) ranks last."""
        returns = np.where(np.isfinite(returns), returns, -np.inf)
        n_elite = max(1, int(self.population * self.elite_fraction))
        elite = candidates[np.argsort(-returns, kind="stable")[:n_elite]]
        progress = min(self.generation / self.noise_decay, 1.0)
        extra = self.init_std + (self.min_std - self.init_std) * progress
        self.mean = elite.mean(axis=0)
        self.std = np.sqrt(elite.var(axis=0) + extra ** 2)

    def _dump_logs(self, returns: list[float], start_time: int, start_steps: int) -> None:
        elapsed = max((time.time_ns() - start_time) / 1e9, 1e-9)
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", float(np.mean([e["r"] for e in self.ep_info_buffer])))
            self.logger.record("rollout/ep_len_mean", float(np.mean([e["l"] for e in self.ep_info_buffer])))
        finite = [r for r in returns if math.isfinite(r)]
        if finite:
            self.logger.record("train/generation_best_return", float(max(finite)))
            self.logger.record("train/generation_mean_return", float(np.mean(finite)))
        self.logger.record("train/std_mean", float(self.std.mean()))
        self.logger.record("train/generation", self.generation)
        self.logger.record("time/episodes", self._episode_num, exclude="tensorboard")
        self.logger.record("time/fps", int((self.num_timesteps - start_steps) / elapsed))
        self.logger.dump(step=self.num_timesteps)

    # ------------------------------------------------------------------ inference
    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """SB3-shaped inference with the mean policy: ``observation`` of shape ``(obs_dim,)`` or
        ``(n_envs, obs_dim)`` -> ``(action, None)``. ``deterministic=False`` samples one
        parameter vector from the search distribution per call."""
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == len(self.observation_space.shape)
        theta = self.mean if deterministic else self.mean + self.std * self.rng.standard_normal(self.mean.size)
        action = self.policy.action(theta, obs)
        return (action[0] if single else action), None

    def _parameter_objects(self) -> dict[str, Any]:
        """What ``predict`` uses: the search mean (``get_parameters() == {"search": {"mean":
        float64 tensor}}``, exact)."""
        agent = self

        class _Mean:
            def state_dict(self) -> dict:
                return {"mean": torch.as_tensor(agent.mean)}

            def load_state_dict(self, state: dict) -> None:
                mean = torch.as_tensor(state["mean"]).double().numpy().copy()
                if mean.shape != agent.mean.shape:
                    raise ValueError(f"mean of shape {mean.shape}, expected {agent.mean.shape}")
                agent.mean = mean

        return {"search": _Mean()}

    # ------------------------------------------------------------------ checkpoints
    def settings(self) -> dict:
        return {"hyperparameters": dict(self.hyper), "seed": self.seed,
                "observation_space": box_to_json(self.observation_space),
                "action_space": box_to_json(self.action_space)}

    @property
    def checkpoint_timesteps(self) -> int:
        """The env steps a checkpoint written now records: those of the last generation boundary."""
        start = self._generation_start
        return int(start["num_timesteps"]) if start else int(self.num_timesteps)

    def save(self, path: str | os.PathLike) -> None:
        """Atomic checkpoint of tensors and plain numbers (loaded with ``weights_only=True``).

        A checkpoint is always a generation boundary: saved mid-generation (a periodic checkpoint,
        Ctrl-C), it holds the state at the start of the generation under way (its steps are not
        counted, its candidates not yet drawn), so a search resumed from it runs that generation
        again, exactly, and ends where an uninterrupted search ends."""
        start = self._generation_start
        payload = {"format": FORMAT, "settings_json": json.dumps(self.settings()),
                   "mean": torch.as_tensor(self.mean), "std": torch.as_tensor(self.std),
                   "rng_json": start["rng"] if start else json.dumps(self.rng.bit_generator.state),
                   "num_timesteps": start["num_timesteps"] if start else self.num_timesteps,
                   "generation": self.generation,
                   "episode_num": start["episode_num"] if start else self._episode_num}
        if self.selection_state is not None:
            payload["selection_json"] = json.dumps({k: self.selection_state[k]
                                                    for k in ("best_return", "best_timestep")})
            payload["selection_mean"] = torch.as_tensor(self.selection_state["best_mean"])
        atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike, env: gym.Env | None = None, device: str = "cpu",
             **overrides: Any) -> "PolicySearch":
        """Rebuild a search saved by :meth:`save`; bad files raise :class:`CheckpointError`."""
        payload = safe_torch_load(path, map_location="cpu")
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError(f"{str(path)!r} is not a policy-search checkpoint (format {FORMAT!r})")
        try:
            settings = checkpoint_json(payload, "settings_json", path)
            agent = cls(env=env, **{**settings["hyperparameters"], **overrides}, seed=settings["seed"],
                        device=device, observation_space=box_from_json(settings["observation_space"]),
                        action_space=box_from_json(settings["action_space"]))
            mean = payload["mean"].double().numpy()
            std = payload["std"].double().numpy()
            if mean.shape != agent.mean.shape or std.shape != agent.std.shape:
                raise ValueError(f"parameters of shape {mean.shape}, expected {agent.mean.shape}")
            agent.mean, agent.std = mean, std
            agent.rng.bit_generator.state = checkpoint_json(payload, "rng_json", path)
            agent.num_timesteps = int(payload["num_timesteps"])
            agent.generation = int(payload["generation"])
            agent._episode_num = int(payload["episode_num"])
            if "selection_json" in payload:
                selection = checkpoint_json(payload, "selection_json", path)
                best_mean = payload["selection_mean"].double().numpy().copy()
                if best_mean.shape != agent.mean.shape:
                    raise ValueError(f"selected mean of shape {best_mean.shape}, expected {agent.mean.shape}")
                agent.selection_state = {"best_return": float(selection["best_return"]),
                                         "best_timestep": int(selection["best_timestep"]),
                                         "best_mean": best_mean}
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError, json.JSONDecodeError) as exc:
            if isinstance(exc, CheckpointError):
                raise
            raise CheckpointError(f"{str(path)!r} is an inconsistent policy-search checkpoint "
                                  f"({type(exc).__name__}: {str(exc)[:200]})") from None
        if env is not None and env.observation_space.shape != agent.observation_space.shape:
            raise ValueError(f"the env's observation shape {env.observation_space.shape} differs from "
                             f"the checkpoint's {agent.observation_space.shape}")
        return agent
