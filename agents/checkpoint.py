"""Trained runs: :func:`load_controller` for any trained controller, and the registry of agent types.

A run directory written by ``train_controller.py --out DIR`` holds ``controller.pt`` (or
``controller.zip``), ``settings.json``, ``summary.json`` and ``tb/``. Checkpoints are untrusted
files (researchers share them), so nothing here unpickles code:

- ``.pt`` files (the paper's actor-critic, the policy search) hold plain state dicts, numbers and a
  JSON string of settings, and are read with ``torch.load(..., weights_only=True)``
  (:func:`agents.io.safe_torch_load`);
- SB3 ``.zip`` files (DDPG/TD3) are read by :func:`agents.sb3.load_sb3_safely`, which replaces
  every cloudpickled entry of the zip by an object rebuilt from ``settings.json``, so SB3 never
  calls ``cloudpickle.loads``; their tensors are loaded by SB3 with ``weights_only=True``.

File I/O (atomic writes, safe loads, :class:`~agents.io.CheckpointError`) lives in :mod:`agents.io`.
:meth:`Controller.env_kwargs` is the one place that rebuilds the env settings a controller was
trained with.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from agents.actor_critic import ActorCritic
from agents.io import CheckpointError
from agents.policy_search import PolicySearch
from agents.sb3 import load_sb3_safely
from agents.settings_schema import MAX_BYTES, parse_settings

#: agent name -> checkpoint file name in a run directory (the registry of agent types)
CHECKPOINT_NAMES = {"actor-critic": "controller.pt", "policy-search": "controller.pt",
                    "ddpg": "controller.zip", "td3": "controller.zip"}
SETTINGS_NAME = "settings.json"


def read_settings(path: str | os.PathLike) -> dict:
    """Read a ``settings.json`` and check it against the one schema
    (:func:`agents.settings_schema.parse_settings`); a missing, malformed or out-of-schema file is
    a :class:`CheckpointError` naming the file and the field. Nothing in it is imported or run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} is missing: a run directory written by "
                              f"train_controller.py has a settings.json beside its checkpoint")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise CheckpointError(f"{str(path)!r}: is {path.stat().st_size} bytes, far larger than a "
                                  f"settings file (limit {MAX_BYTES})")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r} cannot be read ({exc})") from None
    return parse_settings(text, path)


def resolve_run(path: str | os.PathLike) -> tuple[Path, Path, dict]:
    """``path`` is a run directory or the checkpoint file inside it ->
    ``(checkpoint_file, run_directory, settings)``. Nothing is searched for beyond that
    directory's ``settings.json`` and the checkpoint name it implies."""
    path = Path(path)
    if path.is_dir():
        run_dir = path
        settings = read_settings(run_dir / SETTINGS_NAME)
        ckpt = run_dir / CHECKPOINT_NAMES[settings["agent"]]
    elif path.is_file():
        run_dir = path.parent
        settings = read_settings(run_dir / SETTINGS_NAME)
        ckpt = path
    else:
        raise CheckpointError(f"{str(path)!r} does not exist: give a run directory written by "
                              f"train_controller.py or the checkpoint file inside it")
    if not ckpt.is_file():
        raise CheckpointError(f"no checkpoint {ckpt.name!r} in {str(run_dir)!r} "
                              f"(the run may not have saved one yet)")
    return ckpt, run_dir, settings


# --------------------------------------------------------------------------- controllers
#: ``env_kwargs`` entries that shape a controller's observations and actions: what running it in
#: another env (another task, seed or length) must keep from the env it was trained in
CONTROLLER_ENV_KEYS = ("optimizer", "optimizer_kwargs", "lr_min", "lr_max", "action",
                       "relative_factor", "relative_every", "initial_lr", "features", "obs_max",
                       "per_group", "validation_batch_size", "log_observations", "updates_per_step",
                       "step_cap_min", "step_cap_max", "safety_net", "relative_loss")
#: LearningRateEnv arguments that name where and how an env runs, not what it is
_PLACEMENT_KEYS = ("task", "seed", "device", "data_root")


class Controller:
    """A trained controller, whatever agent trained it, with SB3's ``predict`` signature.

    Attributes:
        name: a display name (the run directory's name).
        agent: ``"actor-critic"``, ``"policy-search"``, ``"ddpg"`` or ``"td3"``.
        settings: the whole ``settings.json`` dict (its ``env_kwargs`` are read through
            :meth:`env_kwargs`).
        model: the underlying :class:`~agents.actor_critic.ActorCritic`,
            :class:`~agents.policy_search.PolicySearch` or SB3 model.
    """

    def __init__(self, name: str, agent: str, model: Any, settings: dict) -> None:
        self.name, self.agent, self.model, self.settings = name, agent, model, settings

    def env_kwargs(self, include_reward: bool = False) -> dict:
        """The :class:`~envs.learning_rate_env.LearningRateEnv` keyword arguments of the env this
        controller was trained in (never ``task``/``seed``/``device``/``data_root``): a fresh dict.

        Args:
            include_reward: ``False``: only the settings that shape its observations and actions
                (:data:`CONTROLLER_ENV_KEYS`), what running the controller in an env of one's own
                needs; ``True``: every training setting the env accepts (reward, episode length,
                ... too), to rebuild the training env itself.
        """
        recorded = dict(self.settings.get("env_kwargs") or {})
        if include_reward:
            import inspect

            from envs.learning_rate_env import LearningRateEnv

            allowed = set(inspect.signature(LearningRateEnv).parameters) - set(_PLACEMENT_KEYS)
        else:
            allowed = set(CONTROLLER_ENV_KEYS)
        kw = {k: v for k, v in recorded.items() if k in allowed}
        if "features" in kw:
            kw["features"] = list(kw["features"])
        return kw

    @property
    def trained_task(self) -> str | None:
        """The task (or comma-separated tasks) the controller was trained on, if recorded."""
        task = (self.settings.get("train") or {}).get("task") or self.settings.get("task")
        return task if isinstance(task, str) else None

    @property
    def validation_size(self) -> int:
        """Validation examples the controller's features need (0 if none)."""
        kw = self.settings.get("env_kwargs") or {}
        if "val_loss" not in (kw.get("features") or ()):
            return 0
        return int(kw.get("validation_size") or kw.get("validation_batch_size", 200))

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """Action(s) for ``observation`` of shape ``(obs_dim,)`` or ``(n_envs, obs_dim)``.
        ``state`` is the recurrent state returned by the previous call (``None`` at the start);
        ``episode_start`` (shape ``(n_envs,)``) resets it where true. Returns ``(action, state)``."""
        return self.model.predict(observation, state=state, episode_start=episode_start,
                                  deterministic=deterministic)

    def __repr__(self) -> str:
        return f"Controller(name={self.name!r}, agent={self.agent!r})"


def load_controller(path: str | os.PathLike, device: str = "cpu") -> Controller:
    """Load a controller from a run directory of ``train_controller.py`` or its checkpoint file,
    or a controller shipped with the package named ``"pretrained:NAME"`` (:mod:`agents.pretrained`).

    Raises:
        CheckpointError: missing/corrupt/unsafe checkpoint or settings.
        ValueError: an unknown ``pretrained:`` name (the message lists the shipped ones).
    """
    from agents.pretrained import PREFIX, resolve

    shipped = str(path) if isinstance(path, str) and path.startswith(PREFIX) else None
    ckpt, run_dir, settings = resolve_run(resolve(path))
    agent = settings["agent"]
    if agent == "actor-critic":
        model = ActorCritic.load(ckpt, device=device)
    elif agent == "policy-search":
        model = PolicySearch.load(ckpt, device=device)
    else:
        model = load_sb3_safely(ckpt, settings, device=device)
    return Controller(name=shipped or run_dir.resolve().name, agent=agent, model=model, settings=settings)
