"""Keep the worker's secrets out of reach of the jobs it runs.

A command job runs as the worker's user unless the worker is root and `worker.run_as_user` is
set. Any process of the same user may read `/proc/<worker pid>/environ` (where JQ_WORKER_TOKEN,
JQ_DB_PASSWORD ... live), `/proc/<pid>/mem`, or attach a debugger, unless the worker is marked
non-dumpable: the kernel then owns its /proc entries by root and refuses ptrace to anyone
without CAP_SYS_PTRACE. The flag is inherited across fork (so a child holds it between fork and
exec, while it still has a copy of the worker's memory) and reset by exec (so jobs themselves
are ordinary processes).

It also turns off core dumps of the worker, which would hold the same secrets.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Final

from jobq.observability.logging_setup import get_logger

__all__ = ["PR_GET_DUMPABLE", "PR_SET_DUMPABLE", "is_dumpable", "make_non_dumpable"]

log = get_logger("jobq.worker.hardening")

PR_SET_DUMPABLE: Final = 4
PR_GET_DUMPABLE: Final = 3
"""prctl(2) options, from <linux/prctl.h>."""


def make_non_dumpable() -> bool:
    """Mark this process non-dumpable (Linux). True when done; False, with a warning, where
    the platform has no such flag or refuses it: the worker still runs, less protected."""
    libc = _libc()
    if libc is None:
        log.warning(
            "cannot mark the worker non-dumpable on this platform: jobs running as the "
            "worker's user may read its environment",
            action="worker.hardening_unavailable",
            platform=sys.platform,
        )
        return False
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        log.warning(
            "prctl(PR_SET_DUMPABLE, 0) failed: jobs running as the worker's user may read "
            "its environment",
            action="worker.hardening_failed",
            errno=errno,
        )
        return False
    return True


def is_dumpable() -> bool | None:
    """This process's dumpable flag; None where it cannot be read."""
    libc = _libc()
    if libc is None:
        return None
    value = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    return None if value < 0 else bool(value)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    # dlopen(NULL): the symbols of this process, libc's among them, without searching for the
    # library file (ctypes.util.find_library would run ldconfig in a subprocess).
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = getattr(libc, "prctl", None)
    if prctl is None:
        return None
    prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
    prctl.restype = ctypes.c_int
    return libc
