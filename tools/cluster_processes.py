"""`make cluster`'s child processes: starting each program with its output in a log file,
waiting until it answers, and stopping it (politely, then by force).

Every child runs in a session of its own, so the terminal's Ctrl-C reaches only the launcher,
which then stops them in order (as `make run` does). Each also gets PR_SET_PDEATHSIG: should
the launcher itself be killed (SIGKILL, no chance to clean up), the kernel sends its children
SIGTERM, so a worker still drains and a server still stops rather than running on unowned.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: one system call, libc looked up beforehand.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One program the launcher started, and the file its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def running(self) -> bool:
        return self.process.poll() is None

    def terminate(self) -> None:
        if self.running():
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float, hurry: Callable[[], bool] = lambda: False) -> int:
        """The exit code, waiting up to `timeout` seconds, or until `hurry()`, before SIGKILL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not hurry():
            try:
                return self.process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
        self.process.kill()
        return self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str] | None, log: Path) -> Child:
    """Start `argv` with stdout and stderr appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            list(argv),
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # the launcher is single-threaded
        )
    return Child(name, process, log)


def stop_all(
    children: Sequence[Child],
    timeout: float,
    report: Callable[[str], None],
    hurry: Callable[[], bool] = lambda: False,
) -> None:
    """SIGTERM every child at once, then wait for each (SIGKILL after `timeout`, or as soon
    as `hurry()`); children that had exited already are not reported again."""
    for child in children:
        child.terminate()
    for child in children:
        was_running = child.process.returncode is None
        code = child.wait(timeout, hurry)
        if was_running:
            report(f"stopped {child.name} (exit {code})")


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on `port` or it cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers bind: connections of a cluster just stopped, lingering in TIME_WAIT,
        # must not count as the port being in use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def http_ok(url: str) -> bool:
    """True when GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def redis_answers(port: int, password: str) -> bool:
    """True when redis-server on `port` accepts `password` and answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            reply = b""
            while b"PONG" not in reply and len(reply) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
            return b"+PONG" in reply
    except OSError:
        return False


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(
    name: str,
    ready: Callable[[], bool],
    timeout: float,
    watched: Sequence[Child] = (),
    interrupted: Callable[[], bool] = lambda: False,
) -> str | None:
    """Poll `ready` until it holds (None), or say why not: `timeout` passed, one of
    `watched` exited first, or `interrupted` (a stop was asked for meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in watched:
            if not child.running():
                return f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}"
        if interrupted():
            return "interrupted"
        if ready():
            return None
        time.sleep(0.1)
    return f"{name} was not ready within {timeout:.0f} s"
