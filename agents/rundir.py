"""Run and result directories you can trust: checked paths, an exclusive lock, no silent
overwrite, and one clear line for every file-system failure.

Used by ``train_controller.py`` (a run directory) and ``evaluate.py`` (a results directory):

- :func:`prepare_directory`: ``--out`` must be a directory we can create and write in; an existing
  regular file, a path below a file, a read-only file system or a full disk is a
  :class:`RunDirError` with one line that says so.
- :class:`DirectoryLock`: an exclusive lock on the directory (``.lock``, holding the owner's PID),
  so two trainings or two sweeps into one directory cannot mix their files. The lock is an
  ``flock`` on that file, so the kernel drops it when its process dies; a lock file left by a dead
  process is taken over with a note.
- :func:`existing_run_files` / :func:`clear_run_files`: what a fresh run would replace
  (``train_controller.py`` refuses unless ``--overwrite``).
- :func:`check_entries`: the files and subdirectories we write in a directory must not be symlinks
  (a planted ``tb -> /elsewhere`` or ``summary.json -> ~/file`` is refused, never followed); the
  lock file likewise. Writes themselves go through :mod:`agents.io`'s atomic writes, which refuse
  the same.
- :func:`describe_os_error`: ``OSError`` -> one line (``no space left on DIR``, read-only file
  system, permission denied, ...); :func:`remove_temp_files` deletes ``*.tmp`` files that a failed
  atomic write left behind.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import sys
from pathlib import Path
from typing import Callable, Iterable

from agents.io import UnsafePathError, check_writable_target

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: PID-file locking only
    fcntl = None

LOCK_NAME = ".lock"
#: the files of a run directory that a fresh run writes (and so would replace)
RUN_FILES = ("controller.pt", "controller.zip", "settings.json", "summary.json", "tb")


class RunDirError(RuntimeError):
    """A run/results directory cannot be used; the message is one line for the user."""


# --------------------------------------------------------------------------- errors
def describe_os_error(exc: OSError, directory: str | os.PathLike) -> str:
    """One line for an ``OSError`` met while writing in ``directory``."""
    if isinstance(exc, UnsafePathError):
        return exc.strerror
    directory = str(directory)
    target = exc.filename if getattr(exc, "filename", None) else directory
    code = exc.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return f"no space left on {directory} (the device or quota is full); free some space and retry"
    if code == errno.EROFS:
        return f"{directory} is on a read-only file system; choose a writable --out"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied writing {target}; choose a directory you can write in"
    if code == errno.ENOTDIR:
        return f"{directory} lies below a file, not a directory; choose another --out"
    if code == errno.EEXIST:
        return f"{target} exists and is not a directory; choose another --out"
    if code == errno.ENAMETOOLONG:
        return f"the path {target} is too long"
    return f"file-system error on {target}: {exc.strerror or exc}"


def remove_temp_files(directory: str | os.PathLike, recursive_into: Iterable[str] = ()) -> list[Path]:
    """Delete the ``.*.tmp`` files of atomic writes in ``directory`` (and in its subdirectories
    ``recursive_into``), e.g. after a failed write. Returns the paths removed."""
    removed = []
    directory = Path(directory)
    for folder in [directory, *(directory / sub for sub in recursive_into)]:
        if not folder.is_dir() or (folder != directory and folder.is_symlink()):
            continue  # (a symlinked subdirectory points outside: nothing of ours is there)
        for stale in folder.glob(".*.tmp"):
            try:
                stale.unlink()
                removed.append(stale)
            except OSError:
                pass
    return removed


# --------------------------------------------------------------------------- paths
def check_path(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a ``Path`` if every component fits the file system's name limit (255 bytes on
    most), else a :class:`RunDirError` saying which component is too long (instead of an
    ``OSError`` from the first ``exists()``)."""
    path = Path(path)
    try:
        limit = os.pathconf(next((p for p in [path, *path.parents] if p.exists()), Path(".")), "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    long = next((part for part in path.parts if len(os.fsencode(part)) > limit), None)
    if long is not None:
        raise RunDirError(f"{flag} {str(path)[:80]}...: the name {long[:40]}... is {len(os.fsencode(long))} "
                          f"bytes long, more than the file system allows ({limit}); choose a shorter {flag}")
    return path


def prepare_directory(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create ``path`` (with parents) and check that files can be written in it. Returns the
    directory's real path (a symlink the user named as ``path`` is resolved once, here; every link
    met below it afterwards is refused, see :func:`check_entries`).

    Raises:
        RunDirError: ``path`` is an existing non-directory, lies below a file, is on a read-only
            file system, is not writable, or the disk is full.
    """
    path = check_path(path, flag)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{flag} {path}: is an existing file, not a directory; choose another {flag}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"{flag} {path}: lies below {parent}, which is a file, not a directory")
            break
    probe = None
    try:
        path.mkdir(parents=True, exist_ok=True)
        real = path.resolve()
        probe = real / f".write-test.{os.getpid()}.tmp"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise RunDirError(f"{flag} {path}: {describe_os_error(exc, path)}") from None
    finally:
        if probe is not None:  # also when the write failed (a full disk): no probe is left behind
            try:
                os.unlink(probe)
            except OSError:
                pass
    return real


def check_entries(directory: str | os.PathLike, files: Iterable[str] = (), dirs: Iterable[str] = ()) -> None:
    """Refuse (:class:`RunDirError`) if one of ``files`` in ``directory`` is a symlink or not a
    regular file, or one of ``dirs`` is a symlink or not a directory (absent ones are fine): what
    we write there (checkpoints, TensorBoard logs, run records) must stay inside ``directory``."""
    directory = Path(directory)
    try:
        for name in files:
            check_writable_target(directory / name)
        for name in dirs:
            check_writable_target(directory / name / "x")
    except UnsafePathError as exc:
        raise RunDirError(exc.strerror) from None


def existing_run_files(directory: str | os.PathLike) -> list[str]:
    """The files of a previous run in ``directory`` that a fresh run would replace."""
    directory = Path(directory)
    return [name for name in RUN_FILES if (directory / name).exists()]


def clear_run_files(directory: str | os.PathLike) -> list[str]:
    """Remove a previous run's files (``--overwrite``) so nothing of it mixes with the new run
    (TensorBoard logs included). Other files in the directory are left alone."""
    directory = Path(directory)
    removed = []
    for name in RUN_FILES:
        target = directory / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        else:
            continue
        removed.append(name)
    return removed


# --------------------------------------------------------------------------- lock
def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _read_owner(path: Path) -> dict:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    owner = {}
    for line in lines:
        key, _, value = line.partition("=")
        owner[key.strip()] = value.strip()
    return owner


class DirectoryLock:
    """An exclusive lock on a directory for one process: ``with DirectoryLock(dir, "training"):``.

    The lock file ``dir/.lock`` holds ``pid=...``, ``host=...`` and ``purpose=...``. A second
    process (or a second lock in the same process) gets a :class:`RunDirError` naming the owner.
    A lock file whose process is gone (killed) is taken over, and ``note`` (default: a line on
    stderr) says so.
    """

    def __init__(self, directory: str | os.PathLike, purpose: str = "run",
                 note: Callable[[str], None] | None = None) -> None:
        self.directory, self.purpose = Path(directory), purpose
        self.path = self.directory / LOCK_NAME
        self.note = note or (lambda text: print(text, file=sys.stderr))
        self._fd: int | None = None
        self.took_over: dict | None = None

    def _busy(self, owner: dict) -> RunDirError:
        who = f"process {owner.get('pid', '?')}" + (f" on {owner['host']}" if owner.get("host") else "")
        what = owner.get("purpose") or "run"
        return RunDirError(f"{self.directory} is in use by another {what} ({who}, lock file {self.path}); "
                           f"wait for it to finish or choose another --out")

    def acquire(self) -> "DirectoryLock":
        if self._fd is not None:
            raise RunDirError(f"{self.path} is already held by this object")
        for _ in range(5):
            try:
                # never through a symlink (a planted .lock -> ~/file would be truncated), and only
                # a regular file: a FIFO or device in its place is refused too
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                             | getattr(os, "O_NONBLOCK", 0), 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP or self.path.is_symlink():
                    raise RunDirError(f"refusing to use the lock file {self.path}: it is a symbolic link, "
                                      f"which could point outside the directory; remove it and retry") from None
                raise RunDirError(describe_os_error(exc, self.directory)) from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise RunDirError(f"refusing to use the lock file {self.path}: it is not a regular file; "
                                  f"remove it and retry")
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    raise self._busy(_read_owner(self.path)) from None
                try:  # the file may have been unlinked by its releasing owner meanwhile: retry
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
            owner = _read_owner(self.path)
            pid = int(owner["pid"]) if owner.get("pid", "").isdigit() else None
            same_host = owner.get("host", socket.gethostname()) == socket.gethostname()
            if pid is not None and pid != os.getpid():
                # with flock, holding it means nobody else does: its owner died without releasing
                if fcntl is None and same_host and _pid_alive(pid):
                    os.close(fd)
                    raise self._busy(owner)
                self.took_over = owner
                self.note(f"note: taking over the stale lock {self.path} of process {pid} "
                          f"({owner.get('purpose') or 'run'}), which is no longer running")
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"pid={os.getpid()}\nhost={socket.gethostname()}\npurpose={self.purpose}\n".encode())
            except OSError as exc:
                os.close(fd)
                raise RunDirError(describe_os_error(exc, self.directory)) from None
            self._fd = fd
            return self
        raise RunDirError(f"could not lock {self.directory} (its lock file {self.path} keeps changing)")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            try:
                os.unlink(self.path)  # still ours: we hold the flock
            except OSError:
                pass
            os.close(self._fd)
        finally:
            self._fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
