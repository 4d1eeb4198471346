"""Fixtures that start the real programs as child processes and stop them afterwards."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from support.processes import (
    ServerFactory,
    ServerProcess,
    WorkerFactory,
    WorkerProcess,
    free_port,
    program,
    worker_environment,
)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start jq-server processes with the given environment; all are killed at teardown."""
    started: list[ServerProcess] = []

    def start(
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        wait: bool = True,
        port: int | None = None,
    ) -> ServerProcess:
        port = port or free_port()
        full_env = {
            **os.environ,
            "JQ_METRICS_PORT": "0",
            "JQ_HEALTH_PORT": "0",
            "JQ_GRPC_HOST": "127.0.0.1",
            **(env or {}),
        }
        log_path = tmp_path / f"jq-server-{len(started)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [program("jq-server"), "--grpc-port", str(port), *args],
                env=full_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        server = ServerProcess(process, port, log_path, full_env)
        started.append(server)
        if wait:
            server.wait_serving()
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start jq-worker processes against a server; all are killed at teardown. The tests
    directory is on their PYTHONPATH so `--import support.e2e_tasks` works.

    Command jobs are opt-in and refused on a root worker without worker.run_as_user; the tests
    run as root (here and in CI) and most of them run commands, so workers allow any command
    and root jobs unless `env` says otherwise (see `PERMISSIVE_WORKER`)."""
    started: list[WorkerProcess] = []

    def start(
        server: ServerProcess, *args: str, env: Mapping[str, str] | None = None
    ) -> WorkerProcess:
        metrics_port, health_port = free_port(), free_port()
        full_env = worker_environment(server.grpc_port, metrics_port, health_port, env or {})
        log_path = tmp_path / f"jq-worker-{len(started)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [program("jq-worker"), *args],
                env=full_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        worker = WorkerProcess(process, log_path, metrics_port, health_port)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(timeout=10)
