"""A user task whose first build in a Ray worker kills that worker (tests/test_ray_backend.py).

Where ``LRRL_TEST_DIE_ONCE`` names a marker file (set only in the Ray workers of that test,
through the runtime environment), the first process to build the task creates the marker and
kills itself with SIGKILL: a worker dying mid-sweep. Every other build (any process, or after
the marker exists) returns the regression2d task.
"""
import os
import signal

from envs.tasks import make_task


def make():
    marker = os.environ.get("LRRL_TEST_DIE_ONCE")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:  # the first build: record which process dies, then die like an OOM-killed worker
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return make_task("regression2d")


def make_again():
    """:func:`make` under another name: user tasks are cached per process by name, so a worker
    that built ``make`` once would not die again."""
    return make()
