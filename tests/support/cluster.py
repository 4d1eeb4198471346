"""Running `make cluster`'s launcher (tools/cluster.py) as a test would: its own state
directory, a block of free loopback ports, and what it printed read back."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from support.processes import _PORT_COUNTER, PORT_RANGE, _bindable

REPO = Path(__file__).resolve().parents[2]
PORT_SPAN = 42
"""Ports the launcher uses from its --base-port (tools/cluster_layout.py)."""

_ENDPOINT = re.compile(r"^  (?P<label>[^:]+):\s+(?P<where>.+)$")


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free loopback ports, taken from the same counter as
    `support.processes.free_port`, so that no concurrent test is handed one of them."""
    with open(_PORT_COUNTER, "a+") as counter:
        fcntl.flock(counter.fileno(), fcntl.LOCK_EX)
        counter.seek(0)
        text = counter.read().strip()
        start = int(text) + 1 if text.isdigit() else PORT_RANGE.start
        for _ in range(len(PORT_RANGE) // size):
            if start + size > PORT_RANGE.stop:
                start = PORT_RANGE.start
            block = range(start, start + size)
            if all(_bindable(port) for port in block):
                counter.seek(0)
                counter.truncate()
                counter.write(str(block[-1]))
                return start
            start += size
    raise RuntimeError(f"no {size} consecutive free ports in {PORT_RANGE}")


@dataclass
class Launcher:
    """A running tools/cluster.py and the file its output goes to."""

    process: subprocess.Popen[bytes]
    output: Path
    base_port: int

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_ready(self, within: float) -> dict[str, str]:
        """The endpoints it printed after `cluster: ready`, by label (first word of each)."""
        deadline = time.monotonic() + within
        while "cluster: Ctrl-C stops" not in self.text():
            assert self.process.poll() is None, f"the launcher exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"no 'ready' within {within} s:\n{self.text()}"
            time.sleep(0.2)
        printed = self.text().split("cluster: ready\n", 1)[1]
        endpoints = {}
        for line in printed.splitlines():
            match = _ENDPOINT.match(line)
            if match:
                endpoints[match["label"]] = match["where"]
        return endpoints

    def wait_exit(self, within: float) -> tuple[int, set[int]]:
        """Its exit code, and every process seen below it in the process tree meanwhile (a
        program dying at start would otherwise go unseen)."""
        seen: set[int] = set()
        deadline = time.monotonic() + within
        while self.process.poll() is None:
            seen |= descendants(self.process.pid)
            assert time.monotonic() < deadline, f"still running after {within} s:\n{self.text()}"
            time.sleep(0.05)
        return self.process.returncode, seen

    def stop(self) -> None:
        """After a failed test: Ctrl-C, then force; and the database, which pg_ctl started
        detached from the launcher, whatever became of the launcher."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # By signal rather than pg_ctl: the system user PostgreSQL runs as (when the tests run
        # as root) may no longer reach the data directory once pytest re-locks its tmp root.
        for pid_file in self.state.glob("postgres-*/postmaster.pid"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGINT)

    @property
    def state(self) -> Path:
        return self.output.parent / "state"


PORTS_TAKEN = "cluster: did not start: ports in use"
_START_ATTEMPTS = 3


def start_launcher(
    directory: Path, *args: str, env: dict[str, str] | None = None, run: int = 1
) -> Launcher:
    """Start tools/cluster.py as `make cluster` does, its state under `directory` (shared by
    every `run` there), on a fresh block of ports.

    Its first act is to check that the block is free; should a program that does not take
    its ports from our counter have bound one meanwhile, it says so and exits, and this
    tries again on another block (as the broker and Redis fixtures do)."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        launcher = _spawn(directory, args, env, run, free_port_block(PORT_SPAN))
        while "cluster: starting PostgreSQL" not in launcher.text():
            if launcher.process.poll() is not None:
                if PORTS_TAKEN in launcher.text() and attempt < _START_ATTEMPTS:
                    break
                return launcher
            time.sleep(0.05)
        else:
            return launcher
    raise AssertionError("unreachable")


def _spawn(
    directory: Path, args: tuple[str, ...], env: dict[str, str] | None, run: int, base: int
) -> Launcher:
    output = directory / f"launcher-{run}.out"
    with open(output, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "tools" / "cluster.py"),
                "--dir",
                str(directory / "state"),
                "--base-port",
                str(base),
                *args,
            ],
            env=env or dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Launcher(process, output, base)


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` in the process tree (children, theirs, ...)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the parent pid comes after.
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
