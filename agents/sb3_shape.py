"""``SB3Shaped``: the plumbing an agent that is not an SB3 algorithm needs to run SB3's callbacks
and loggers (the paper's :class:`~agents.actor_critic.ActorCritic` and the
:class:`~agents.policy_search.PolicySearch`): one copy, shared."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
from stable_baselines3.common import utils as sb3_utils
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.logger import Logger

from agents.callbacks import TqdmCallback


class SB3Shaped:
    """``logger`` / ``set_logger`` / ``get_env`` and callback set-up as SB3 algorithms have them.
    The subclass sets ``env``, ``verbose``, ``_logger = None`` and ``_custom_logger = False``."""

    env: gym.Env | None
    verbose: int
    _logger: Logger | None
    _custom_logger: bool

    @property
    def logger(self) -> Logger:
        if self._logger is None:
            self._logger = sb3_utils.configure_logger(self.verbose, None, "", True)
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        """Use ``logger`` (e.g. from ``stable_baselines3.common.logger.configure``) in ``learn``."""
        self._logger, self._custom_logger = logger, True

    def get_env(self) -> gym.Env | None:
        return self.env

    def _parameter_objects(self) -> dict[str, Any]:
        """Name -> object with ``state_dict``/``load_state_dict``: what :meth:`get_parameters`
        returns and :meth:`set_parameters` restores (the policy ``predict`` uses)."""
        raise NotImplementedError

    def get_parameters(self) -> dict[str, dict]:
        """SB3's ``get_parameters``: ``{name: state_dict}`` of the policy ``predict`` uses (no
        optimizer state). The tensors are the live ones: copy them to keep a snapshot."""
        return {name: obj.state_dict() for name, obj in self._parameter_objects().items()}

    def set_parameters(self, load_path_or_dict: dict, exact_match: bool = True, device: str = "auto") -> None:
        """SB3's ``set_parameters`` from a dict of :meth:`get_parameters` (a file path is not
        supported: use ``load``). ``exact_match``: every name must be given."""
        if not isinstance(load_path_or_dict, dict):
            raise TypeError("set_parameters takes a dict of get_parameters() (use load() for a file)")
        objects = self._parameter_objects()
        unknown = sorted(set(load_path_or_dict) - set(objects))
        missing = sorted(set(objects) - set(load_path_or_dict))
        if unknown or (exact_match and missing):
            raise ValueError(f"names of parameters do not match: expected {sorted(objects)}, "
                             f"got {sorted(load_path_or_dict)}")
        for name, state in load_path_or_dict.items():
            objects[name].load_state_dict(state)

    def _init_callback(self, callback: Any, progress_bar: bool = False) -> BaseCallback:
        """An SB3 callback, a list of them, a function ``f(locals, globals)`` or None -> one
        initialised callback (plus a progress bar if asked)."""
        if isinstance(callback, list):
            callback = CallbackList(callback)
        elif callback is None:
            callback = CallbackList([])
        elif not isinstance(callback, BaseCallback):
            callback = ConvertCallback(callback)
        if progress_bar:
            callback = CallbackList([callback, TqdmCallback()])
        callback.init_callback(self)
        return callback
