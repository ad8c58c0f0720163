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
"""
from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv, VecMonitor


def _unbatch(infos: dict, i: int) -> dict:
    """Sub-env ``i``'s entries of a gymnasium batched info dict (masks honoured)."""
    out = {}
    for key, value in infos.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        mask = infos.get("_" + key)
        if mask is not None and not mask[i]:
            continue
        if isinstance(value, dict):
            out[key] = _unbatch(value, i)
        else:
            item = value[i]
            out[key] = item.item() if isinstance(item, np.generic) else item
    return out


class SB3VecEnv(VecEnv):
    """A gymnasium ``VectorEnv`` with SAME_STEP autoreset as an SB3 ``VecEnv``.

    Args:
        venv: e.g. ``envs.LearningRateVectorEnv(task, num_envs=N, ...)``.

    Step infos are the sub-env's own info dict (``lr``, ``loss_after``, ``eval``, ...): for a
    finished episode the final step's info (gymnasium's ``final_info``), plus
    ``terminal_observation`` and ``TimeLimit.truncated``; the new episode's reset info is in
    ``reset_info`` (SB3's ``reset_infos`` after ``reset()``).
    """

    def __init__(self, venv: gym.vector.VectorEnv) -> None:
        mode = venv.metadata.get("autoreset_mode")
        if mode not in (AutoresetMode.SAME_STEP, "SameStep"):
            raise ValueError(f"SB3VecEnv needs a vector env with SAME_STEP autoreset "
                             f"(metadata['autoreset_mode']), got {mode!r}")
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None

    @property
    def unwrapped_vector_env(self) -> gym.vector.VectorEnv:
        return self.venv

    def reset(self):
        seeds = None if self._seeds[0] is None else [int(s) for s in self._seeds]
        obs, infos = self.venv.reset(seed=seeds)
        self.reset_infos = [_unbatch(infos, i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, rewards, terminated, truncated, infos = self.venv.step(self._actions)
        dones = np.logical_or(terminated, truncated)
        out = []
        for i in range(self.num_envs):
            if dones[i]:
                info = _unbatch(infos["final_info"], i)
                info["terminal_observation"] = infos["final_obs"][i]
                info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                info["reset_info"] = _unbatch(infos, i)
            else:
                info = _unbatch(infos, i)
            out.append(info)
        return obs, np.asarray(rewards, dtype=np.float32), dones, out

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


def make_sb3_vec_env(task="digits", num_envs: int = 4, **kwargs: Any) -> VecMonitor:
    """``VecMonitor(SB3VecEnv(LearningRateVectorEnv(task, num_envs, **kwargs)))``: ready for SB3."""
    from envs.vector_env import LearningRateVectorEnv

    return VecMonitor(SB3VecEnv(LearningRateVectorEnv(task, num_envs=num_envs, **kwargs)))
