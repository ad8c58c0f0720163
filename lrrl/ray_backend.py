"""The Ray backend of :class:`lrrl.sweep.Sweep` (``--backend ray``; the ``ray`` extra).

Imported only when a command line asks for it (:func:`lrrl.sweep.make_backend`), so
nothing else needs Ray. Every task of a sweep (one run, or one batch of runs side by side in a
vector env) or of a controller-training fan-out is a Ray task that reserves ``cpus_per_run``
CPUs and ``gpus_per_run`` GPUs (fractions let several small runs share one GPU) and sets its
torch threads to its CPUs. A task whose worker dies is rerun up to ``max_retries`` times; a
task that raises is not retried (a sweep's run never raises: it returns an error record).

Tasks carry names, never data: a run's spec and settings (task name, ``data_root``, a
controller's checkpoint path), so each worker loads its dataset from ``data_root`` itself; on a
cluster that path (and controller checkpoints) must be on storage every node sees, and the
project importable on every node. Results come back to the driver, which writes the run
directory (:class:`lrrl.sweep.Sweep`).
"""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import ray

from lrrl.config import BackendError

#: seconds to wait for a cluster address to answer
CONNECT_TIMEOUT = 15.0
#: the project's root: on a local Ray, workers import the project (and the benchmarks' user tasks) from it
ROOT = Path(__file__).resolve().parents[1]


def _call(fn: Callable, threads: int, *args: Any) -> Any:
    """What a Ray worker runs: ``fn(*args)`` with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    return fn(*args)


def _check_reachable(address: str, timeout: float) -> None:
    """A ``host:port`` (or ``ray://host:port``) address must accept a TCP connection within
    ``timeout`` s; Ray itself would retry for minutes."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BackendError(f"--ray-address {address}: expected 'auto' or HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise BackendError(f"--ray-address {address}: no Ray cluster answers there within {timeout:g} s "
                           f"({reason}); start one with 'ray start --head' or check the address") from None


@contextlib.contextmanager
def _stderr_to_devnull():
    """File descriptor 2 (what C++ code writes to) goes to /dev/null inside the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def connect(address: str | None, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` runs on this machine), or
    start a local Ray with this machine's cores (``None``); a no-op if Ray is already initialised
    in this process. Returns whether this call started Ray. :class:`BackendError` within about
    ``timeout`` s if the address does not answer."""
    if address is not None:
        _check_reachable(address, timeout)
    if ray.is_initialized():
        return False
    kwargs = dict(include_dashboard=False, log_to_driver=False, configure_logging=True, logging_level="ERROR")
    if address is not None:
        kwargs["address"] = address
    else:  # a new local Ray (never a cluster found on this machine); its workers import this checkout
        kwargs["address"] = "local"
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
    outcome: dict[str, BaseException | None] = {}

    def init() -> None:
        try:
            ray.init(**kwargs)
            outcome["error"] = None
        except BaseException as exc:  # reported by the caller's thread
            outcome["error"] = exc

    if address is None:  # a local Ray: no network to wait for
        init()
    else:  # an address that accepts connections but is no Ray head would make ray.init wait for minutes
        # Ray's C++ client logs every failed attempt to file descriptor 2 (a line a second, not
        # silenced by its logging settings): keep them out of the terminal while it connects,
        # so that a wrong address is the one line below
        with _stderr_to_devnull():
            thread = threading.Thread(target=init, daemon=True)
            thread.start()
            thread.join(timeout + 30.0)
        if thread.is_alive():
            raise BackendError(f"--ray-address {address}: no Ray cluster answered within {timeout + 30:g} s")
    error = outcome.get("error")
    if error is not None:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BackendError(f"--ray-address {address or '(local)'}: cannot start or join Ray: {first}")
    return True


class RayPool:
    """A backend (:class:`lrrl.sweep.LocalPool`'s interface) whose tasks are Ray tasks.

    ``parallelism`` (how many tasks run at once) is the cluster's CPUs over ``cpus_per_run``
    (or its GPUs over ``gpus_per_run``), read when the pool connects."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
                 max_retries: int = 3, timeout: float = CONNECT_TIMEOUT) -> None:
        # the values were checked by lrrl.sweep.make_backend, which builds this pool
        self.address, self.cpus_per_run, self.gpus_per_run = address, float(cpus_per_run), float(gpus_per_run)
        self.max_retries = int(max_retries)
        self._started = connect(address, timeout)
        try:
            resources = ray.cluster_resources()
            cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
            where = f"the Ray cluster{'' if address is None else ' at ' + address}"
            if self.cpus_per_run > cpus:
                raise BackendError(f"--cpus-per-run {cpus_per_run:g}: {where} has {cpus:g} CPUs")
            if self.gpus_per_run > gpus:
                raise BackendError(f"--gpus-per-run {gpus_per_run:g}: {where} has {gpus:g} GPUs")
            n = int(cpus // self.cpus_per_run)
            if self.gpus_per_run > 0:
                n = min(n, int(gpus // self.gpus_per_run))
            self._parallelism = max(1, n)
            self._cpus = cpus
        except BaseException:
            self.close()
            raise
        self._remote = ray.remote(_call).options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                                                 max_retries=self.max_retries, retry_exceptions=False)

    @property
    def parallelism(self) -> int:
        return self._parallelism

    @property
    def cpus_per_task(self) -> int:
        """CPUs one task reserves (its torch threads; a policy search's default worker processes)."""
        return max(1, int(self.cpus_per_run))

    def describe(self) -> str:
        where = "a local Ray" if self.address is None else f"the Ray cluster at {self.address}"
        gpus = f", {self.gpus_per_run:g} GPU" if self.gpus_per_run else ""
        return f"{where} ({self._cpus:g} CPUs; {self.cpus_per_run:g} CPU{gpus} per task)"

    def imap_unordered(self, fn: Callable, items: Sequence[tuple],
                       started: Callable[[int], None] | None = None) -> Iterator[tuple[int, Any, BaseException | None]]:
        threads = max(1, int(self.cpus_per_run))
        refs = {self._remote.remote(fn, threads, *args): i for i, args in enumerate(items)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # the task raised: not retried
                        cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                        yield refs[ref], None, cause
                    except ray.exceptions.RayError as exc:  # its worker died after every retry, ...
                        yield refs[ref], None, exc
                    else:
                        yield refs[ref], result, None
        finally:  # interrupted (Ctrl-C, an error in the driver): cancel what has not run
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished or gone
                    pass

    def close(self) -> None:
        if self._started and ray.is_initialized():
            ray.shutdown()
        self._started = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
