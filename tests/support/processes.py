"""Helpers to run the real programs as child processes: paths, ports, readiness."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

BIN = Path(sys.executable).parent


def program(name: str) -> str:
    """The path of an installed console script of this virtualenv."""
    return str(BIN / name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
