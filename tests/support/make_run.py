"""Starting `make run`'s launcher (tools/run_local.py) as a test would: its own embedded
database, free loopback ports, and a wait until its jq-server serves."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from support.processes import free_port, grpc_serving

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunLocal:
    """A running launcher: its process, the server's gRPC port and the combined log."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    dashboard_port: int

    async def wait_serving(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while not grpc_serving(self.port, timeout=0.5):
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "jq-server did not start"
            await asyncio.sleep(0.1)


def start_run_local(directory: Path, drop_env: Iterable[str] = ()) -> RunLocal:
    """Start the launcher with its data and log under `directory`; `drop_env` names variables
    of this process's environment the launcher must not inherit."""
    port, dashboard_port = free_port(), free_port()
    dropped = set(drop_env)
    env = {key: value for key, value in os.environ.items() if key not in dropped}
    env.update(
        {
            "JQ_DB_EMBEDDED_DATA_DIR": str(directory / "pg"),
            "JQ_GRPC_PORT": str(port),
            "JQ_GRPC_HOST": "127.0.0.1",
            "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{port}",
            "JQ_METRICS_PORT": "0",
            "JQ_HEALTH_PORT": "0",
            "JQ_WORKER_METRICS_PORT": "0",
            "JQ_WORKER_HEALTH_PORT": "0",
            "JQ_DASHBOARD_PORT": str(dashboard_port),
        }
    )
    log = directory / "run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "tools" / "run_local.py")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return RunLocal(process, port, log, dashboard_port)
