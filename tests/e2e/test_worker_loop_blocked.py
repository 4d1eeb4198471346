"""A worker whose event loop is blocked past the server's heartbeat timeout exits, and its
command jobs die with it (real processes throughout).

The defect this pins down: an `async def` handler calling `time.sleep` blocked the loop, so no
heartbeat left; the server declared the worker lost and re-ran its jobs elsewhere while this
worker's command job (a process of its own) ran on: the same job twice at once, and nothing on
the blocked loop could stop it. Now the worker's loop watchdog (`loop_watchdog.py`) exits with
EXIT_LOOP_BLOCKED once the loop has been blocked past the runtime's `loop_stall_limit_s`, which
closes the job guardian's pipe, and the guardian kills the command job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault.sink_tasks import handler_payload
from support.job_waits import submit
from support.proc_scan import kill_all_with, processes_with, unique_sleep
from support.processes import ServerFactory, WorkerFactory
from support.server_harness import client_for

from jobq.worker.loop_watchdog import EXIT_LOOP_BLOCKED

HEARTBEAT_TIMEOUT_S = 3.0
BLOCK_S = 60.0
"""How long the handler would block the loop: far past the heartbeat timeout."""
GONE_WITHIN_S = 2.0


@pytest.fixture
def marker() -> Iterator[str]:
    value = unique_sleep()
    yield value
    kill_all_with(value)


async def test_a_worker_whose_loop_is_blocked_exits_and_takes_its_command_jobs_along(
    start_server: ServerFactory,
    start_worker: WorkerFactory,
    db_dsn: str,
    marker: str,
    tmp_path: Path,
) -> None:
    server = start_server(
        {"JQ_DB_DSN": db_dsn, "JQ_SCHEDULER_WORKER_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S)}
    )
    worker = start_worker(server, "--concurrency", "4", "--import", "fault.sink_tasks")
    client = client_for(server.grpc_port)
    sink = tmp_path / "sink"
    try:
        await submit(client, {"command": ["sleep", marker]})
        async with asyncio.timeout(30):
            while not processes_with(marker):
                assert worker.process.poll() is None, worker.log()
                await asyncio.sleep(0.05)
        await submit(client, handler_payload(sink, "blocker", BLOCK_S, blocking=True))
        async with asyncio.timeout(30):
            while worker.process.poll() is None:
                await asyncio.sleep(0.02)
        exited_at = time.monotonic()
        assert worker.process.returncode == EXIT_LOOP_BLOCKED, worker.log()
        assert " start " in sink.read_text()  # the blocking handler is what it ran
        while processes_with(marker) and time.monotonic() - exited_at < GONE_WITHIN_S:
            await asyncio.sleep(0.02)
        survivors = processes_with(marker)
        assert not survivors, f"job processes outlived their worker: {survivors}"
        assert "worker.loop_blocked" in worker.log()
    finally:
        await client.channel.close()
