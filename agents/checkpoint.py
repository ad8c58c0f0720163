"""Checkpoints: atomic writes, safe loads, and :func:`load_controller` for any trained controller.

Checkpoints are untrusted files (researchers share them), so nothing here unpickles code:

- ``.pt`` files (the paper's actor-critic, the policy search) hold plain state dicts, numbers and a JSON string of
  settings, and are read with ``torch.load(..., weights_only=True)``;
- SB3 ``.zip`` files (DDPG/TD3) are read by :func:`agents.sb3.load_sb3_safely`, which replaces
  every cloudpickled entry of the zip by an object rebuilt from ``settings.json``, so SB3 never
  calls ``cloudpickle.loads``; their tensors are loaded by SB3 with ``weights_only=True``.

Writes go to a temporary file in the target's directory, are flushed to disk, then renamed
over the target with :func:`os.replace`, so a crash (even SIGKILL) leaves either the old
checkpoint or the new one, never half a file.

A run directory written by ``train_controller.py --out DIR`` holds ``controller.pt`` (or
``controller.zip``), ``settings.json``, ``summary.json`` and ``tb/``.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

CHECKPOINT_NAMES = {"actor-critic": "controller.pt", "policy-search": "controller.pt",
                    "ddpg": "controller.zip", "td3": "controller.zip"}
SETTINGS_NAME = "settings.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt, or would run code when loaded."""


# --------------------------------------------------------------------------- atomic writes
def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync it, rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    return path


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)``, atomically (temp file in the same directory + ``os.replace``).
    The checkpoint is serialised in memory first, so a failing disk (``ENOSPC``) surfaces as the
    ``OSError`` it is, not as a torch ``RuntimeError``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return _atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (numpy scalars/arrays become lists)."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write_bytes(path, text.encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (np.ndarray, torch.Tensor)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def remove_stale_temp_files(directory: str | os.PathLike, names: tuple[str, ...]) -> list[Path]:
    """Delete temp files that an atomic write of one of ``names`` left behind when the process
    was killed mid-write (``.<name>.<random>.tmp``). Returns the paths removed."""
    removed = []
    directory = Path(directory)
    if directory.is_dir():
        for name in names:
            for stale in directory.glob(f".{name}.*.tmp"):
                with _suppress():
                    stale.unlink()
                    removed.append(stale)
    return removed


# --------------------------------------------------------------------------- safe loads
def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with one clear error for every bad file.

    Raises:
        CheckpointError: the file does not exist, is truncated or corrupt, or contains a
            pickled object other than tensors / plain containers (such a file could run
            code, so it is refused, not loaded).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    try:
        with warnings.catch_warnings():  # a plain pickle's protocol warning: the error below says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise unpickling_refusal(exc, path) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError,
            UnicodeDecodeError, AttributeError, IndexError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupt "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None


def unpickling_refusal(exc: BaseException, path: str | os.PathLike) -> CheckpointError:
    """Our error for torch's ``weights_only=True`` refusal (or any unpickling failure) of ``path``.

    torch's own message advises re-running with ``weights_only=False``, which would run the code
    the file carries: that advice is never repeated. Only its reason is kept."""
    text = str(exc)
    boilerplate = ("Weights only load failed", "Please file", "Check the documentation", "In PyTorch",
                   "(1)", "(2)", "Re-running", "WeightsUnpickler error:")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next((line for line in lines if "global" in line.lower()), None) or next(
        (line for line in lines if not line.startswith(boilerplate) and "weights_only" not in line),
        type(exc).__name__)
    reason = reason.replace("WeightsUnpickler error:", "").strip()
    reason = reason.split(" To allowlist")[0].split(" Please ")[0].strip()[:200]
    # a class or function reference is what runs code; torch names every refusal "weights_only",
    # so only the reason tells a crafted file from a corrupt one
    if "global" in reason.lower():
        return CheckpointError(
            f"refusing to load {str(path)!r}: it contains objects other than tensors and plain "
            f"data, which could run code when unpickled ({reason}); only load checkpoints written "
            f"by train_controller.py")
    return CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupt "
                           f"(not a readable torch checkpoint: {reason})")


def read_settings(path: str | os.PathLike) -> dict:
    """Read a ``settings.json`` and check it against the one schema
    (:func:`agents.settings_schema.parse_settings`); a missing, malformed or out-of-schema file is
    a :class:`CheckpointError` naming the file and the field. Nothing in it is imported or run."""
    from agents.settings_schema import MAX_BYTES, parse_settings

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
class Controller:
    """A trained controller, whatever agent trained it, with SB3's ``predict`` signature.

    Attributes:
        name: a display name (the run directory's name).
        agent: ``"actor-critic"``, ``"policy-search"``, ``"ddpg"`` or ``"td3"``.
        env_kwargs: the :class:`~envs.learning_rate_env.LearningRateEnv` keyword arguments the
            controller was trained with (without ``task``/``seed``/``device``).
        settings: the whole ``settings.json`` dict.
        model: the underlying :class:`~agents.actor_critic.ActorCritic`,
            :class:`~agents.policy_search.PolicySearch` or SB3 model.
    """

    def __init__(self, name: str, agent: str, model: Any, settings: dict) -> None:
        self.name, self.agent, self.model, self.settings = name, agent, model, settings
        self.env_kwargs: dict = dict(settings.get("env_kwargs", {}))

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
    """Load a controller from a run directory of ``train_controller.py`` or its checkpoint file.

    Raises:
        CheckpointError: missing/corrupt/unsafe checkpoint or settings.
    """
    ckpt, run_dir, settings = resolve_run(path)
    agent = settings["agent"]
    if agent == "actor-critic":
        from agents.actor_critic import ActorCritic

        model = ActorCritic.load(ckpt, device=device)
    elif agent == "policy-search":
        from agents.policy_search import PolicySearch

        model = PolicySearch.load(ckpt, device=device)
    else:
        from agents.sb3 import load_sb3_safely

        model = load_sb3_safely(ckpt, settings, device=device)
    return Controller(name=run_dir.resolve().name, agent=agent, model=model, settings=settings)
