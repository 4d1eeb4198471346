"""Finding a test's processes in /proc by a unique marker in their argv, and owning up to them.

Tests that kill a worker look for the job processes it may have left behind. Each gives its
jobs a unique argv item (`sleep 120.<n>`: `unique_sleep()`), lists the live processes holding
it, and kills whatever it finds at the end, so a failing test leaves nothing running."""

from __future__ import annotations

import contextlib
import os
import random
import signal
from pathlib import Path


def unique_sleep() -> str:
    """A `sleep` argument, about two minutes, that no other process on the machine has."""
    return f"120.{random.randrange(10**6, 10**7)}"


def processes_with(marker: str) -> dict[int, str]:
    """Live processes whose argv holds `marker`, with their command lines (zombies have no
    argv left: not listed)."""
    found = {}
    needle = marker.encode()
    with os.scandir("/proc") as entries:
        names = [entry.name for entry in entries if entry.name.isdigit()]
    for name in names:
        try:
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                argv = cmdline.read()
        except OSError:  # gone meanwhile
            continue
        if needle in argv:
            found[int(name)] = argv.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def kill_all_with(marker: str) -> None:
    for pid in processes_with(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def owner(pid: int) -> int | None:
    """The real uid a process runs as; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    [uid_line] = [line for line in status.splitlines() if line.startswith("Uid:")]
    return int(uid_line.split()[1])
