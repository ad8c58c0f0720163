"""stable-baselines3 ``VecEnv`` adapter for :class:`envs.vector_env.LearningRateVectorEnv`.

SB3 algorithms (DDPG, TD3, SAC, PPO, ...) take a ``VecEnv``; gymnasium's vector envs are not
one. :class:`SB3VecEnv` translates, with no copy of the primary training and no subprocesses:

- ``reset()`` -> observations; SB3's ``seed(s)`` (stored in ``self._seeds``) becomes
  ``reset(seed=[s, s+1, ...])`` at the next reset, as SB3's own ``DummyVecEnv`` does;
- ``step_wait()`` -> ``(obs, rewards, dones, infos)`` with ``infos`` a list of per-env dicts,
  ``dones = terminated | truncated``, and for a finished episode the SB3 keys
  ``terminal_observation`` and ``TimeLimit.truncated``. The wrapped env must autoreset in
  gymnasium's SAME_STEP mode (``LearningRateVectorEnv`` does), which is SB3's own convention.

Wrap it in SB3's ``VecMonitor`` for episode statistics (:func:`make_sb3_vec_env` does).
The training-time wrappers of ``agents.wrappers`` apply here per sub-env, through their rules
(written once, :class:`agents.wrappers.EpisodeRule`): ``collapse=dict(...)`` is
``CollapseTermination(**collapse)`` (a collapsed sub-env's episode ends and only that sub-env
is reset, through gymnasium's ``reset(options={"reset_mask": ...})``), and
``finite_horizon=True`` is ``FiniteHorizon`` (truncation reported as termination).
"""
from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from envs.vector_env import LearningRateVectorEnv, unbatch_info


class SB3VecEnv(VecEnv):
    """A gymnasium ``VectorEnv`` with SAME_STEP autoreset as an SB3 ``VecEnv``.

    Args:
        venv: e.g. ``envs.LearningRateVectorEnv(task, num_envs=N, ...)``.

    Step infos are the sub-env's own info dict (``lr``, ``loss_after``, ``eval``, ...): for a
    finished episode the final step's info (gymnasium's ``final_info``), plus
    ``terminal_observation`` and ``TimeLimit.truncated``; the new episode's reset info is in
    ``reset_info`` (SB3's ``reset_infos`` after ``reset()``).
    """

    def __init__(self, venv: gym.vector.VectorEnv, collapse: dict | None = None,
                 finite_horizon: bool = False) -> None:
        mode = venv.metadata.get("autoreset_mode")
        if mode not in (AutoresetMode.SAME_STEP, "SameStep"):
            raise ValueError(f"SB3VecEnv needs a vector env with SAME_STEP autoreset "
                             f"(metadata['autoreset_mode']), got {mode!r}")
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        from agents.wrappers import CollapseRule, FiniteHorizonRule

        # the training wrappers' rules, one per sub-env (each keeps its own episode's state)
        self.rules = [([CollapseRule(**collapse)] if collapse is not None else [])
                      + ([FiniteHorizonRule()] if finite_horizon else []) for _ in range(self.num_envs)]

    def _start(self, i: int, info: dict) -> None:
        for rule in self.rules[i]:
            rule.start(info)

    def _apply(self, i: int, reward: float, terminated: bool, truncated: bool, info: dict):
        for rule in self.rules[i]:
            reward, terminated, truncated, info = rule.apply(reward, terminated, truncated, info)
        return reward, terminated, truncated, info

    @property
    def unwrapped_vector_env(self) -> gym.vector.VectorEnv:
        return self.venv

    def set_seeds(self, seeds: Sequence[int]) -> None:
        """Per-sub-env seeds for the next ``reset()`` (SB3's ``seed(s)`` gives ``s + i``; the
        policy search runs all its candidates on one primary seed)."""
        if len(seeds) != self.num_envs:
            raise ValueError(f"need {self.num_envs} seeds, got {len(seeds)}")
        self._seeds = [int(s) for s in seeds]

    def reset(self):
        seeds = None if self._seeds[0] is None else [int(s) for s in self._seeds]
        obs, infos = self.venv.reset(seed=seeds)
        self.reset_infos = [unbatch_info(infos, i) for i in range(self.num_envs)]
        for i, info in enumerate(self.reset_infos):
            self._start(i, info)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        rewards = np.asarray(rewards, dtype=np.float64).copy()
        terminated, truncated = terminated.copy(), truncated.copy()
        out, to_reset = [], []
        for i in range(self.num_envs):
            ended = terminated[i] or truncated[i]
            info = unbatch_info(infos["final_info"], i) if ended else unbatch_info(infos, i)
            rewards[i], terminated[i], truncated[i], info = self._apply(i, rewards[i], terminated[i],
                                                                        truncated[i], info)
            if ended:
                info["terminal_observation"] = infos["final_obs"][i]
                info["reset_info"] = unbatch_info(infos, i)
                self._start(i, info["reset_info"])
            elif terminated[i] or truncated[i]:  # a rule ended it; the vector env does not know
                info["terminal_observation"] = obs[i].copy()
                to_reset.append(i)
            out.append(info)
        if to_reset:
            mask = np.zeros(self.num_envs, dtype=bool)
            mask[to_reset] = True
            new_obs, reset_infos = self.venv.reset(options={"reset_mask": mask})
            for i in to_reset:
                obs[i] = new_obs[i]
                out[i]["reset_info"] = unbatch_info(reset_infos, i)
                self._start(i, out[i]["reset_info"])
        dones = terminated | truncated
        for i in np.flatnonzero(dones):
            out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, rewards.astype(np.float32), dones, out

    def close(self) -> None:
        self.venv.close()

    # the sub-envs share one batched object: attributes are the vector env's, for every index
    def _indices(self, indices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self.venv, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._indices(indices)]


def make_sb3_vec_env(task="digits", num_envs: int = 4, collapse: dict | None = None,
                     finite_horizon: bool = False, **kwargs: Any) -> VecMonitor:
    """``VecMonitor(SB3VecEnv(LearningRateVectorEnv(task, num_envs, **kwargs), collapse,
    finite_horizon))``: ready for SB3."""
    return VecMonitor(SB3VecEnv(LearningRateVectorEnv(task, num_envs=num_envs, **kwargs),
                                collapse=collapse, finite_horizon=finite_horizon))
