"""The job guardian: kills a dead worker's command jobs. Runs as `python -I -S <this file>`.

A command job runs in a session and process group of its own (`command_executor.py`), so
nothing the kernel does when jq-worker dies reaches it: a SIGKILLed worker left `sleep 120`
running while the server retried the job elsewhere, and the same command ran twice at once.

jq-worker starts one guardian when it starts (`job_guardian.py`): in a session of its own, so a
kill of the worker's process group spares it; as the worker's user, so it may kill every job
(on a root worker, also those run as `worker.run_as_user`); reading a pipe whose only write end
the worker holds. The worker's first line is its marker, random per worker process, which
every command job carries in its environment as `JQ_JOB_GUARD=<marker>` (`command_executor.py`);
then, for each command job, `+PGID` when its process starts and `-PGID` once it has killed the
job's group; and `end` when it stops in order. When the pipe reaches end of file the worker is
gone, however it ended (SIGKILL, the OOM killer, a crash: the kernel closes its descriptors),
and the guardian SIGKILLs every group still registered, then every process still in those
groups' sessions, then every process whose environment holds the worker's marker, and exits.

Two nets, because each catches what the other misses. A job's first process leads its own
session (pgid == sid), so a process that moved to another group (`setpgid`, as shells with job
control do) is still found by its session in /proc, even if it cleared its environment. The
marker finds what no registration names: a job whose process started in the few event loop
steps before the worker wrote `+PGID`, and processes that left the job's session (`setsid`).
Its /proc scan runs twice, RESCAN_AFTER_S apart, for a child that was still between fork and
exec at the first (its environment then still the worker's): such a child holds a copy of the
worker's pipe end until just before its exec, so the second scan finds it marked. The /proc
scans run only when a worker died, never per job, nor when it stops in order (`end`): then
processes that detached themselves from a finished job are left alone, as at the job's end.

Limits, documented rather than hidden:
- a process that left the job's session and dropped the marker from its environment (`exec`
  with `env -i`, or one that overwrites its environment block in memory, as `setproctitle`
  does) is no longer found;
- the marker is read from /proc/PID/environ, which needs ptrace-read access: when jobs run as
  another user, a guardian without CAP_SYS_PTRACE (containers often drop it, even for root)
  cannot read theirs and finds such processes only by their registered group and session;
- a worker killed in the instant between reaping a job's first process and writing `-PGID`
  could, if the PID were reused as a new group's id in that instant, have that group killed;
- a process forked by a Python handler without exec keeps the pipe's write end open (it is
  close-on-exec, so `subprocess` children do not): until it exits, no end of file is seen.

The standard library only, so it starts in a few milliseconds without the worker's
dependencies and stays small (`-S`: not even `site`); messages go to the worker's stderr as
one JSON line, like the worker's own log lines.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

READY = b"ready\n"
"""Written once to stdout when the guardian knows the worker's marker, so the worker knows it
runs."""
MARKER_VARIABLE = "JQ_JOB_GUARD"
"""The environment variable holding the worker's marker in each of its command jobs."""
IN_ORDER = b"end"
"""The worker's last line when it stops in order: kill what is registered, scan for nothing."""
BATCH_S = 0.02
"""Pause between reads: many jobs' lines are read in one wake-up instead of one each, and a
worker's death is still seen within this much."""
SCAN_ROUNDS = 20
"""At most this many rounds of a /proc scan: a process forked between one listing and the
kill of its parent is found by the next round, which ends the scan when it finds none."""
RESCAN_AFTER_S = 0.2
"""Pause before the second marker scan: long enough for a child between fork and exec to exec."""


class Orders:
    """What the worker said: its marker (first line), the groups to kill if it dies, and
    whether it stops in order. Lines may arrive cut anywhere; an unfinished one waits."""

    def __init__(self) -> None:
        self.marker = b""
        self.groups: set[int] = set()
        self.in_order = False
        self._rest = b""

    def feed(self, data: bytes) -> None:
        """Apply every complete line of `data`. Malformed lines are skipped, and so are 0 and
        1: killpg of 0 is our own group, and no job leads group 1.

        Raises:
            ValueError: the first line is not a marker (a few letters and digits).
        """
        *lines, self._rest = (self._rest + data).split(b"\n")
        for line in lines:
            if not self.marker:
                if not (line.isascii() and line.isalnum()):
                    raise ValueError(f"not a marker: {line[:40]!r}")
                self.marker = line
            elif line == IN_ORDER:
                self.in_order = True
            else:
                self._apply(line)

    def _apply(self, line: bytes) -> None:
        try:
            pgid = int(line[1:])
        except ValueError:
            return
        if pgid <= 1:
            return
        if line[:1] == b"+":
            self.groups.add(pgid)
        elif line[:1] == b"-":
            self.groups.discard(pgid)


def strays(groups: set[int]) -> set[int]:
    """Live processes (not zombies) in the sessions of `groups` (a job's group id is its
    session id) but no longer in one of those groups; empty without /proc."""
    members: set[int] = set()
    me = os.getpid()
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                text = stat.read()
        except OSError:  # exited meanwhile
            continue
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = text[text.rfind(b")") + 2 :].split()
        if len(fields) < 4 or fields[0] in (b"Z", b"X"):
            continue
        if pid != me and int(fields[3]) in groups and int(fields[2]) not in groups:
            members.add(pid)
    return members


def marked(entry: bytes) -> set[int]:
    """Processes whose environment holds exactly `entry` (`JQ_JOB_GUARD=<marker>`); empty
    without /proc. Zombies have no environment left; unreadable ones (another user's, for a
    guardian that may not read them; gone meanwhile) are skipped."""
    found: set[int] = set()
    me = os.getpid()
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                block = environ.read()
        except OSError:
            continue
        # The substring test first: most processes' environments are never split.
        if entry in block and entry in block.split(b"\0") and pid != me:
            found.add(pid)
    return found


def kill_all(groups: set[int]) -> int:
    """SIGKILL the registered groups, then the processes of their sessions that moved to
    other groups; returns how many of those there were."""
    for pgid in groups:
        _kill(pgid, group=True)
    return len(_sweep(lambda: strays(groups)))


def kill_marked(marker: bytes) -> int:
    """SIGKILL every process marked with `marker`, in two scans RESCAN_AFTER_S apart; returns
    how many there were."""
    entry = MARKER_VARIABLE.encode() + b"=" + marker
    killed = _sweep(lambda: marked(entry))
    time.sleep(RESCAN_AFTER_S)
    return len(_sweep(lambda: marked(entry), killed))


def _sweep(find: Callable[[], set[int]], killed: set[int] | None = None) -> set[int]:
    """SIGKILL what `find` lists, round after round until it lists nothing new (the killed
    may take a moment to become zombies); returns every process killed, `killed` included."""
    killed = set() if killed is None else killed
    for _ in range(SCAN_ROUNDS):
        found = find() - killed
        if not found:
            break
        for pid in found:
            _kill(pid, group=False)
        killed |= found
    return killed


def _pids() -> list[int]:
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    return [int(entry) for entry in entries if entry.isdigit()]


def _kill(target: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(target, signal.SIGKILL)
        else:
            os.kill(target, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # gone already
        pass


def _report(groups: int, moved: int, marked: int) -> None:
    import json  # only here: not worth its start-up cost on every worker start

    line = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
        "level": "warning",
        "service": "jq-worker",
        "logger": "jobq.worker.guardian",
        "message": "the worker is gone; killed its command jobs' processes",
        "action": "worker.jobs_killed_by_guardian",
        "process_groups": groups,
        "processes_outside_their_group": moved,
        "processes_marked": marked,
        "guardian_pid": os.getpid(),
    }
    sys.stderr.write(json.dumps(line) + "\n")
    sys.stderr.flush()


def _read_marker(orders: Orders) -> bool:
    """Read until the worker's first line; False if its pipe closed before."""
    while not orders.marker:
        chunk = os.read(0, 65536)
        if not chunk:
            return False
        orders.feed(chunk)
    return True


def main() -> int:
    # Its life is bound to the worker's pipe, not to signals meant for the worker: a service
    # manager's SIGTERM to the whole unit must not leave a draining worker unguarded.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    os.chdir("/")
    orders = Orders()
    try:
        if not _read_marker(orders):
            return 0  # the worker is gone before it could start a job
    except ValueError as exc:
        sys.stderr.write(f"jobq job guardian: {exc}\n")
        return 2
    os.write(1, READY)
    os.close(1)
    while chunk := os.read(0, 65536):
        orders.feed(chunk)
        time.sleep(BATCH_S)
    groups = len(orders.groups)
    moved = kill_all(orders.groups) if groups else 0
    found = 0 if orders.in_order else kill_marked(orders.marker)
    if groups or found:
        _report(groups, moved, found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
