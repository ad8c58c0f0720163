"""File I/O of checkpoints and run files: atomic writes, safe loads, spaces as JSON.

Checkpoints are untrusted files (researchers share them), so nothing here unpickles code:
``.pt`` files are read with ``torch.load(..., weights_only=True)`` (:func:`safe_torch_load`),
and a refusal is reported by :func:`unpickling_refusal` without torch's advice to load the file
with ``weights_only=False``.

Writes go to a temporary file in the target's directory, are flushed to disk, then renamed
over the target with :func:`os.replace`, so a crash (even SIGKILL) leaves either the old
file or the new one, never half a file. A target (or its directory) that is a symbolic link
or another non-regular file is refused (:class:`UnsafePathError`): run directories are shared,
and a planted link must not make us overwrite a file outside them. Written files get mode
``0o666`` less the umask, as a plain ``open`` would give them.

This module imports nothing from ``agents`` or ``envs``: every other module may use it.
"""
from __future__ import annotations

import errno
import io
import json
import os
import pickle
import secrets
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from gymnasium import spaces


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupt, or would run code when loaded."""


# --------------------------------------------------------------------------- atomic writes
class UnsafePathError(OSError):
    """A file we are about to write (or the directory it goes in) is a symbolic link or another
    non-regular file: following it could overwrite a file outside the run directory, so it is
    refused. The message is one line for the user."""


def _is_link_or_special(path: Path, want_dir: bool) -> str | None:
    """``None`` if ``path`` is absent or a real file (``want_dir``: a real directory); else what it is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if want_dir and not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if not want_dir and not stat.S_ISREG(st.st_mode):
        return "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
    return None


def check_writable_target(path: str | os.PathLike) -> None:
    """Refuse to write ``path`` if it, or the directory it goes in, is a symbolic link or not a
    regular file / directory (:class:`UnsafePathError`). A symlink planted in a shared run
    directory would otherwise make us overwrite whatever it points to."""
    path = Path(path)
    what = _is_link_or_special(path.parent, want_dir=True)
    if what is not None:
        raise UnsafePathError(errno.ELOOP, f"refusing to write into {path.parent}: it is {what}, "
                                           f"which could point outside the directory; remove it and retry",
                              str(path.parent))
    what = _is_link_or_special(path, want_dir=False)
    if what is not None:
        raise UnsafePathError(errno.ELOOP, f"refusing to write {path}: it is {what}, which could point "
                                           f"outside the directory; remove it and retry", str(path))


def _open_temp(directory: Path, name: str) -> tuple[int, Path]:
    """A new temp file ``.<name>.<random>.tmp`` in ``directory``, created exclusively and never
    through a symlink (``O_EXCL | O_NOFOLLOW``), with mode ``0o666`` less the umask (what a plain
    ``open`` would give, so colleagues can read a run if the umask allows)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a temporary file", str(directory))


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync it, rename it to ``path``.
    ``path`` and its directory must not be symlinks (:func:`check_writable_target`); the rename
    replaces a directory entry, so even a symlink planted between the check and the rename is
    replaced, never followed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_writable_target(path)
    fd, tmp = _open_temp(path.parent, path.name)
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


def checkpoint_json(payload: dict, key: str, path: str | os.PathLike) -> Any:
    """``json.loads(payload[key])`` for a JSON string stored in a checkpoint, with one
    :class:`CheckpointError` naming ``path`` and ``key`` for anything but a modest JSON string
    (not a string, invalid, larger than 1 MB, or nested so deep that the decoder would recurse
    out of the stack)."""
    text = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(text, str):
        raise CheckpointError(f"checkpoint {str(path)!r}: {key} is missing or not a JSON string")
    if len(text) > 1_000_000:
        raise CheckpointError(f"checkpoint {str(path)!r}: {key} is {len(text)} characters, far larger "
                              f"than a checkpoint's settings")
    try:
        return json.loads(text)
    except RecursionError:
        raise CheckpointError(f"checkpoint {str(path)!r}: {key} is nested too deep to be settings") from None
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: {key} is not valid JSON ({exc})") from None


# --------------------------------------------------------------------------- spaces <-> JSON
def box_to_json(box: spaces.Box) -> dict:
    """A ``Box`` as plain JSON (``low``, ``high``, ``dtype``): how settings.json and the
    checkpoints record the spaces."""
    return {"low": box.low.tolist(), "high": box.high.tolist(), "dtype": str(box.dtype)}


def box_from_json(d: dict) -> spaces.Box:
    """The inverse of :func:`box_to_json`."""
    return spaces.Box(np.array(d["low"], dtype=d["dtype"]), np.array(d["high"], dtype=d["dtype"]),
                      dtype=d["dtype"])
