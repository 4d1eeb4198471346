"""A real, throw-away redis-server for tests (SPEC §13): loopback only, no persistence.

The binary comes from PATH (Debian package `redis-server`). Where it is missing the test is
skipped with a reason; CI installs it, so there the tests always run.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.processes import LoopbackServer, free_port

START_TIMEOUT_S = 10.0
_START_ATTEMPTS = 3  # a free port can be taken by someone else before redis binds it


def redis_server_binary() -> str | None:
    """The path of redis-server, or None when it is not installed."""
    return shutil.which("redis-server")


@dataclass
class RedisServer(LoopbackServer):
    """A running redis-server on 127.0.0.1:`port`, its files in `directory`."""

    password: str | None = None

    @property
    def url(self) -> str:
        """A redis:// URL without credentials (pass `password` separately)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def log(self) -> str:
        try:
            return (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return "(no redis.log)"


def _answers_ping(port: int, password: str | None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            if password:
                sock.sendall(f"AUTH {password}\r\n".encode())
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis_server(
    directory: Path, password: str | None = None, port: int | None = None
) -> RedisServer:
    """Start redis-server with its files in `directory` and wait until it answers PING.

    `port` restarts a server where a killed one listened; by default a free port is picked.
    Skips the calling test when the binary is missing.
    """
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not on PATH (install the Debian package redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    log = "(not started)"
    for _ in range(_START_ATTEMPTS):
        listen_port = port or free_port()
        argv = [
            binary,
            "--port",
            str(listen_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--logfile",
            str(directory / "redis.log"),
            "--daemonize",
            "no",
        ]
        if password:
            argv += ["--requirepass", password]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        server = RedisServer(process, listen_port, directory, password)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            if _answers_ping(listen_port, password):
                return server
            time.sleep(0.02)
        server.kill()
        log = server.log()
    raise RuntimeError(f"redis-server did not start:\n{log}")


@contextmanager
def running_redis_server(directory: Path, password: str | None = None) -> Iterator[RedisServer]:
    """`start_redis_server`, stopped again when the block ends."""
    server = start_redis_server(directory, password)
    try:
        yield server
    finally:
        server.stop()
