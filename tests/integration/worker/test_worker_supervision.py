"""The real WorkerRuntime against a stand-in server, with crashes injected into its loops: a
loop that fails once is restarted and nothing is lost; one that keeps failing stops the worker
with an ERROR and exit status 1 (after handing its jobs back and deregistering) instead of
leaving it half-alive, taking jobs whose results nobody sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import structlog
from support.fake_worker_service import FakeWorkerService, start_fake_server

from jobq.config import WorkerSettings
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.executor import JobExecutor
from jobq.worker.job_user import AS_WORKER
from jobq.worker.reporter import PendingResult, Reporter
from jobq.worker.runtime import WorkerRuntime
from jobq.worker.task_supervisor import RestartPolicy

FAST = RestartPolicy(max_restarts=2, window_s=60.0, delay_s=0.05)
REFUSED_JOB = json.dumps({"handler": "os:system", "args": ["true"]}).encode()
"""A job this worker refuses at once: its result is the one report to deliver."""


@pytest.fixture
async def service() -> AsyncIterator[tuple[FakeWorkerService, int]]:
    fake = FakeWorkerService()
    server, port = await start_fake_server(fake)
    yield fake, port
    await server.stop(None)


def runtime_for(port: int) -> WorkerRuntime:
    settings = WorkerSettings(
        server_addr=f"127.0.0.1:{port}", heartbeat_interval_s=0.1, shutdown_grace_period_s=5
    )
    executor = JobExecutor(
        imports=(), allowed_commands=(), max_output_bytes=1024, job_user=AS_WORKER
    )
    return WorkerRuntime(settings, executor, WorkerMetrics(), supervision=FAST)


def crash_reports(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """Make the reporter's ReportResults path raise a bug's exception `times` times."""
    crashes: list[int] = []
    send = Reporter._send_results

    async def crashing(self: Reporter, batch: list[PendingResult]) -> bool:
        if batch and len(crashes) < times:
            crashes.append(len(batch))
            raise RuntimeError("injected reporter bug")
        return await send(self, batch)

    monkeypatch.setattr(Reporter, "_send_results", crashing)
    return crashes


async def test_a_reporter_that_crashes_once_is_restarted_and_delivers(
    service: tuple[FakeWorkerService, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, port = service
    crashes = crash_reports(monkeypatch, times=1)
    runtime = runtime_for(port)
    job_id = fake.assign(REFUSED_JOB)
    with structlog.testing.capture_logs() as logs:
        running = asyncio.create_task(runtime.run())
        try:
            result = await fake.result_for(job_id, within=10)
        finally:
            runtime.request_stop()
            code = await asyncio.wait_for(running, 30)
    assert code == 0
    assert crashes == [1]
    assert result.outcome == pb.JOB_OUTCOME_REFUSED
    [restart] = [e for e in logs if e.get("action") == "worker.task_restarted"]
    assert (restart["task"], restart["log_level"]) == ("reporter", "error")


async def test_a_reporter_that_keeps_crashing_stops_the_worker_with_status_1(
    service: tuple[FakeWorkerService, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, port = service
    crashes = crash_reports(monkeypatch, times=1000)
    runtime = runtime_for(port)
    fake.assign(REFUSED_JOB)
    with structlog.testing.capture_logs() as logs:
        # Nobody asks it to stop: it must stop on its own.
        code = await asyncio.wait_for(runtime.run(), 30)
    assert code == 1
    assert len(crashes) == FAST.max_restarts + 1
    actions = [e.get("action") for e in logs]
    assert "worker.task_failed" in actions
    assert "worker.results_lost" in actions  # said, not silently dropped
    [failed] = [e for e in logs if e.get("action") == "worker.failed"]
    assert failed["log_level"] == "error"
    assert "reporter" in failed["reason"]
    assert "Deregister" in fake.methods_called()  # its jobs go back to the queue at once


async def test_a_session_loop_that_keeps_crashing_stops_the_worker_with_status_1(
    service: tuple[FakeWorkerService, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, port = service

    def broken(self: WorkerRuntime, commands: object) -> None:
        raise RuntimeError("injected heartbeat bug")

    monkeypatch.setattr(WorkerRuntime, "_handle_commands", broken)
    runtime = runtime_for(port)
    with structlog.testing.capture_logs() as logs:
        code = await asyncio.wait_for(runtime.run(), 30)
    assert code == 1
    registrations = [c for c in fake.calls if c.method == "RegisterWorker"]
    assert len(registrations) == FAST.max_restarts + 1  # reconnected twice, then gave up
    restarts = [e for e in logs if e.get("action") == "worker.task_restarted"]
    assert {e["task"] for e in restarts} == {"session"}
    assert any(e.get("action") == "worker.failed" for e in logs)
