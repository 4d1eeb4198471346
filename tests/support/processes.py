"""Helpers to run the real programs as child processes: paths, ports, readiness."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

BIN = Path(sys.executable).parent


TESTS_DIR = Path(__file__).resolve().parents[1]
PERMISSIVE_WORKER = {"JQ_WORKER_ALLOWED_COMMANDS": "*", "JQ_WORKER_ALLOW_ROOT_JOBS": "true"}
"""What end-to-end workers set unless told otherwise: any command, also as root (command jobs
are opt-in, and refused on a root worker without worker.run_as_user; the tests run as root).
`{"JQ_WORKER_ALLOWED_COMMANDS": "", "JQ_WORKER_ALLOW_ROOT_JOBS": "false"}` restores the
worker's own defaults (no command jobs)."""


def worker_environment(
    grpc_port: int, metrics_port: int, health_port: int, extra: Mapping[str, str] = {}
) -> dict[str, str]:
    """The environment the end-to-end tests start jq-worker with: this server, these ports,
    loopback listeners, fast heartbeats, any command allowed (`extra` overrides), and the
    tests directory on PYTHONPATH so `--import support.e2e_tasks` works."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
        "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{grpc_port}",
        "JQ_WORKER_METRICS_PORT": str(metrics_port),
        "JQ_WORKER_HEALTH_PORT": str(health_port),
        "JQ_METRICS_HOST": "127.0.0.1",
        "JQ_HEALTH_HOST": "127.0.0.1",
        "JQ_WORKER_HEARTBEAT_INTERVAL_S": "0.5",
        **PERMISSIVE_WORKER,
        **extra,
    }


def program(name: str) -> str:
    """The path of an installed console script of this virtualenv."""
    return str(BIN / name)


PORT_RANGE = range(20000, 32000)
"""Ports handed to the servers tests start: below the kernel's ephemeral range (32768 and up by
default), so no socket that binds port 0 or connects out can take one between our choosing it
and the server binding it."""
_PORT_COUNTER = Path(tempfile.gettempdir()) / f"jobq-test-ports-{os.getuid()}"


def free_port() -> int:
    """A loopback port no other test of any concurrent test run was given recently.

    Binding port 0 and closing it, the usual trick, hands back a port the kernel may give to the
    next bind(0) or outgoing connection of any process, and with two test runs in parallel (CI
    runs two) servers then failed with "address in use". Here every test process on the
    machine takes the next port of PORT_RANGE from one counter file, under a lock, and skips
    ports something is listening on."""
    with open(_PORT_COUNTER, "a+") as counter:
        fcntl.flock(counter.fileno(), fcntl.LOCK_EX)
        counter.seek(0)
        text = counter.read().strip()
        last = int(text) if text.isdigit() else PORT_RANGE.start + os.getpid() % len(PORT_RANGE)
        for step in range(1, len(PORT_RANGE) + 1):
            port = PORT_RANGE.start + (last - PORT_RANGE.start + step) % len(PORT_RANGE)
            if _bindable(port):
                counter.seek(0)
                counter.truncate()
                counter.write(str(port))
                return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def grpc_serving(port: int, timeout: float = 1.0) -> bool:
    """True when the gRPC health service on `port` answers SERVING."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def accepts_connections(port: int) -> bool:
    """True when something on 127.0.0.1:`port` accepts a TCP connection."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class LoopbackServer:
    """A third-party server a test started (redis-server, a Kafka broker) on 127.0.0.1:`port`,
    its files in `directory`."""

    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    def kill(self) -> None:
        """SIGKILL the server and wait for it: an outage, not a shutdown."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server politely, then by force if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class ServerProcess:
    """A running jq-server and where its output goes."""

    process: subprocess.Popen[bytes]
    grpc_port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"jq-server exited {self.process.returncode}:\n{self.log()}")
            if grpc_serving(self.grpc_port, timeout=0.5):
                return
            time.sleep(0.05)
        raise AssertionError(f"jq-server did not serve within {timeout}s:\n{self.log()}")

    def terminate(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


ServerFactory = Callable[..., ServerProcess]


@dataclass
class WorkerProcess:
    """A running jq-worker and where its output goes."""

    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int
    health_port: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


WorkerFactory = Callable[..., WorkerProcess]
