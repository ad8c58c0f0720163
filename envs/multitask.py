"""``RoundRobinEnv``: multi-task training, one episode per env in turn."""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym


def _task_name(env: gym.Env) -> str:
    return env.unwrapped.trainer.task.name


class RoundRobinEnv(gym.Env):
    """Episodes cycle through several envs with identical spaces (multi-task training).

    ``reset()`` starts the next env's episode (the first ``reset()`` the first env's, then the
    second's, ..., wrapping around); ``step()`` steps the env whose episode is running. Every
    ``info`` of ``reset()`` and ``step()`` gets ``info["task"]``, the name of that env's task
    (``env.unwrapped.trainer.task.name``: the envs are
    :class:`~envs.learning_rate_env.LearningRateEnv` s, possibly wrapped).
    ``reset(seed=..., options=...)`` passes both to the env whose turn it is.

    Args:
        envs: the envs, at least one; their observation and action spaces must be equal, since
            one controller acts in all of them (``ValueError`` otherwise, e.g. ``per_group``
            with tasks of different layer counts).
    """

    metadata = {"render_modes": []}

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        super().__init__()
        envs = list(envs)
        if not envs:
            raise ValueError("RoundRobinEnv needs at least one env")
        first = envs[0]
        for other in envs[1:]:
            if other.observation_space != first.observation_space or \
                    other.action_space != first.action_space:
                raise ValueError(
                    f"tasks {_task_name(first)!r} and {_task_name(other)!r} have different "
                    f"observation/action spaces (e.g. per_group with different layer counts); "
                    f"they cannot share one controller")
        self.envs, self.index = envs, -1
        self.observation_space, self.action_space = first.observation_space, first.action_space

    @property
    def current(self) -> gym.Env:
        """The env whose episode is running (the first before any ``reset()``)."""
        return self.envs[max(self.index, 0)]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.index = (self.index + 1) % len(self.envs)
        obs, info = self.envs[self.index].reset(seed=seed, options=options)
        info["task"] = _task_name(self.envs[self.index])
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.envs[self.index].step(action)
        info["task"] = _task_name(self.envs[self.index])
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        for env in self.envs:
            env.close()
