"""Keep a forked worker process from hanging in torch's OpenMP thread pool.

GNU OpenMP (libgomp, which CPU builds of torch use for intra-op parallelism) is not fork-safe:
once a process has run a parallel region, a child created with ``fork()`` inherits the pool's
bookkeeping but none of its threads, and its first parallel region waits for ever at
``gomp_team_barrier_wait_end``. That is what happens in Gymnasium's ``AsyncVectorEnv`` and
``gym.make_vec(..., vectorization_mode="async")`` with the default ``fork`` context on Linux,
and in SB3's ``SubprocVecEnv(start_method="fork")``, as soon as the parent has used torch (for
example by building a first env to read its spaces, as ``AsyncVectorEnv`` does).

A single-threaded child never enters the pool, so :func:`install` (called when :mod:`envs` is
imported) does two things:

- it registers an ``os.register_at_fork`` hook that sets ``torch.set_num_threads(1)`` in every
  child forked after ``envs`` was imported (``AsyncVectorEnv`` imports it in the parent when it
  builds its first env);
- in a ``multiprocessing`` worker that imports ``envs`` only after it was started (SB3's
  ``SubprocVecEnv`` builds every env in the workers), it sets one thread there and then, before
  the env runs anything in parallel.
Vectorised envs run one env per worker process, so the workers already share the cores between
them; an intra-op pool per worker would only oversubscribe them. A worker started with
``forkserver`` or ``spawn`` (clean processes) may call ``torch.set_num_threads(n)`` after it has
imported ``envs`` to get its threads back; a forked one cannot safely.
"""
from __future__ import annotations

import multiprocessing
import os

import torch

_installed = False


def _single_threaded_after_fork() -> None:
    # runs in the child right after fork(), before any user code: no torch parallel region yet
    if torch.get_num_threads() > 1:
        torch.set_num_threads(1)


def install() -> None:
    """Protect this process if it is a worker, and its future forked children (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    if multiprocessing.parent_process() is not None:
        # a worker (forked, or spawned: there one thread is as right for a worker, and harmless)
        _single_threaded_after_fork()
    if hasattr(os, "register_at_fork"):  # not on Windows, which never forks
        os.register_at_fork(after_in_child=_single_threaded_after_fork)
