"""The real WorkerRuntime against a stand-in server that stops answering (as across a network
partition or while the server is paused): the worker stops its jobs before the server's
heartbeat timeout can have passed, hands them back once the server answers again, never
starts an assignment it reads after that point, and exits when a sync handler's thread, which
Python cannot stop, runs on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from support import sample_tasks
from support.fake_worker_service import FakeWorkerService, start_fake_server

from jobq.config import WorkerSettings
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.contact_watch import EXIT_CONTACT_LOST
from jobq.worker.executor import JobExecutor
from jobq.worker.job_user import AS_WORKER
from jobq.worker.runtime import WorkerRuntime

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent

TIMEOUT_S = 2.0
"""The stand-in server's heartbeat timeout: the worker must act 0.5 s (its margin) before."""


def _handler(name: str, *args: object) -> bytes:
    return json.dumps({"handler": f"support.sample_tasks:{name}", "args": list(args)}).encode()


@pytest.fixture
async def service() -> AsyncIterator[tuple[FakeWorkerService, int]]:
    fake = FakeWorkerService(heartbeat_timeout_s=TIMEOUT_S)
    server, port = await start_fake_server(fake)
    yield fake, port
    fake.deaf = False
    await server.stop(None)


def _runtime(port: int) -> tuple[WorkerRuntime, list[int]]:
    settings = WorkerSettings(
        server_addr=f"127.0.0.1:{port}",
        heartbeat_interval_s=0.1,
        shutdown_grace_period_s=1,
        imports=["support.sample_tasks"],
    )
    executor = JobExecutor(
        imports=settings.imports, allowed_commands=(), max_output_bytes=1024, job_user=AS_WORKER
    )
    runtime = WorkerRuntime(settings, executor, WorkerMetrics())
    exits: list[int] = []
    runtime.exit_process = exits.append
    return runtime, exits


async def _until(condition: object, within: float) -> None:
    async with asyncio.timeout(within):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_jobs_stop_before_the_servers_timeout_and_are_handed_back(
    service: tuple[FakeWorkerService, int],
) -> None:
    fake, port = service
    runtime, exits = _runtime(port)
    running = asyncio.create_task(runtime.run())
    try:
        job_id = fake.assign(_handler("async_sleep", 60))
        await _until(lambda: fake.acks, within=10)
        fake.deaf = True
        deaf_at = time.monotonic()
        await _until(lambda: not runtime.jobs.running, within=10)
        stopped_after = time.monotonic() - deaf_at
        # Stopped before the server could declare the worker lost (its last answered
        # heartbeat went out at most one interval, 0.1 s, before the server went deaf).
        assert stopped_after < TIMEOUT_S
        assert stopped_after > TIMEOUT_S - runtime.contact.margin_s - 0.3
        fake.deaf = False
        result = await fake.result_for(job_id, within=15)
    finally:
        runtime.request_stop()
        await asyncio.wait_for(running, 30)
    assert result.outcome == pb.JOB_OUTCOME_SHUTDOWN
    assert "no contact with jq-server" in result.error_message
    assert exits == []  # an async handler is stopped; nothing forces an exit


async def test_an_assignment_read_after_contact_was_lost_is_handed_back_unstarted(
    service: tuple[FakeWorkerService, int],
) -> None:
    fake, port = service
    runtime, _ = _runtime(port)
    running = asyncio.create_task(runtime.run())
    try:
        await _until(lambda: "StreamJobBatches" in fake.methods_called(), within=10)
        fake.deaf = True
        await _until(lambda: time.monotonic() > runtime.contact.deadline, within=10)
        # The stream is still open (heartbeats are failing, not yet given up on): an
        # assignment arrives, as one buffered while a paused worker slept would.
        job_id = fake.assign(_handler("async_sleep", 60))
        await asyncio.sleep(0.5)
        assert [a.job_id for a in fake.acks] == []
        fake.deaf = False
        result = await fake.result_for(job_id, within=15)
    finally:
        runtime.request_stop()
        await asyncio.wait_for(running, 30)
    assert result.outcome == pb.JOB_OUTCOME_SHUTDOWN
    assert result.error_message.startswith("not started: no contact with jq-server")
    assert job_id not in {a.job_id for a in fake.acks}


async def test_a_sync_handler_that_cannot_be_stopped_makes_the_worker_exit(
    service: tuple[FakeWorkerService, int],
) -> None:
    fake, port = service
    runtime, exits = _runtime(port)
    sample_tasks.RELEASE.clear()
    running = asyncio.create_task(runtime.run())
    try:
        fake.assign(_handler("block_until_released", 20))
        await _until(lambda: fake.acks, within=10)
        fake.deaf = True
        await _until(lambda: exits, within=10)
    finally:
        sample_tasks.RELEASE.set()
        fake.deaf = False
        runtime.request_stop()
        await asyncio.wait_for(running, 30)
    assert exits == [EXIT_CONTACT_LOST]
