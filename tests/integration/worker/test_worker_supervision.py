"""The real WorkerRuntime against a stand-in server, with crashes injected into its loops: a
loop that fails once is restarted and nothing is lost; one that keeps failing stops the worker
with an ERROR and exit status 1 (after handing its jobs back and deregistering) instead of
leaving it half-alive, taking jobs whose results nobody sends. Covered: the reporter, the
session (receive and heartbeats), the heartbeats kept through a drain, the loop watchdog's
thread and any background loop; while one is down, the worker is not ready."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import structlog
from support.fake_worker_service import FakeWorkerService, start_fake_server

from jobq.config import WorkerSettings
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.executor import JobExecutor
from jobq.worker.heartbeats import Heartbeats
from jobq.worker.job_user import AS_WORKER
from jobq.worker.loop_watchdog import LoopWatchdog
from jobq.worker.reporter import PendingResult, Reporter
from jobq.worker.runtime import WorkerRuntime
from jobq.worker.task_supervisor import RestartPolicy

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent

FAST = RestartPolicy(max_restarts=2, window_s=60.0, delay_s=0.05)
REFUSED_JOB = json.dumps({"handler": "os:system", "args": ["true"]}).encode()
"""A job this worker refuses at once: its result is the one report to deliver."""
LONG_JOB = json.dumps({"handler": "support.sample_tasks:async_sleep", "args": [60]}).encode()
"""A job that runs through a drain's whole grace period."""


@pytest.fixture
async def service() -> AsyncIterator[tuple[FakeWorkerService, int]]:
    fake = FakeWorkerService()
    server, port = await start_fake_server(fake)
    yield fake, port
    await server.stop(None)


def runtime_for(
    port: int,
    *,
    background: dict[str, Callable[[], Awaitable[None]]] | None = None,
    supervision: RestartPolicy = FAST,
    grace_s: float = 5,
) -> WorkerRuntime:
    settings = WorkerSettings(
        server_addr=f"127.0.0.1:{port}",
        heartbeat_interval_s=0.1,
        shutdown_grace_period_s=grace_s,
        imports=["support.sample_tasks"],
    )
    executor = JobExecutor(
        imports=settings.imports, allowed_commands=(), max_output_bytes=1024, job_user=AS_WORKER
    )
    runtime = WorkerRuntime(settings, executor, WorkerMetrics(), supervision=supervision)
    for name, loop in (background or {}).items():
        runtime.supervise(name, loop)
    return runtime


async def until(condition: Callable[[], object], within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


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

    def broken(self: Heartbeats, commands: object) -> None:
        raise RuntimeError("injected heartbeat bug")

    monkeypatch.setattr(Heartbeats, "handle_commands", broken)
    runtime = runtime_for(port)
    with structlog.testing.capture_logs() as logs:
        code = await asyncio.wait_for(runtime.run(), 30)
    assert code == 1
    registrations = [c for c in fake.calls if c.method == "RegisterWorker"]
    assert len(registrations) == FAST.max_restarts + 1  # reconnected twice, then gave up
    restarts = [e for e in logs if e.get("action") == "worker.task_restarted"]
    assert {e["task"] for e in restarts} == {"session"}
    assert any(e.get("action") == "worker.failed" for e in logs)


async def test_a_loop_that_is_down_makes_the_worker_unready_then_stops_it(
    service: tuple[FakeWorkerService, int],
) -> None:
    _, port = service

    async def broken() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("injected loop bug")

    slow = RestartPolicy(max_restarts=2, window_s=60.0, delay_s=0.5)
    runtime = runtime_for(port, background={"flaky": broken}, supervision=slow)
    seen: list[str] = []
    running = asyncio.create_task(runtime.run())
    try:
        await until(lambda: runtime._reporter.is_connected)
        async with asyncio.timeout(10):
            while not seen or "flaky task down" not in seen[-1]:
                ok, why = await runtime.ready()
                seen.append(why)
                await asyncio.sleep(0.01)
        assert not ok
        assert why == "flaky task down (restarting after RuntimeError: injected loop bug)"
        code = await asyncio.wait_for(running, 30)
    finally:
        runtime.request_stop()
        await asyncio.wait_for(running, 30)
    assert code == 1
    assert "ready" in seen  # ready while it ran
    assert await runtime.ready() == (
        False,
        "stopping: the flaky task kept failing (RuntimeError: injected loop bug)",
    )


def flaky_limit(failures: int) -> Callable[[], float]:
    """A stall limit whose first `failures` reads raise, killing the watchdog's thread."""
    calls = [0]

    def limit_s() -> float:
        calls[0] += 1
        if calls[0] <= failures:
            raise RuntimeError("injected watchdog bug")
        return 60.0

    return limit_s


async def test_a_loop_watchdog_thread_that_dies_is_logged_and_started_again(
    service: tuple[FakeWorkerService, int],
) -> None:
    fake, port = service
    watchdog = LoopWatchdog(flaky_limit(1), tick_s=0.02)
    runtime = runtime_for(port, background={"loop watchdog": watchdog.keep_running})
    job_id = fake.assign(REFUSED_JOB)
    with structlog.testing.capture_logs() as logs:
        running = asyncio.create_task(runtime.run())
        try:
            await fake.result_for(job_id, within=10)
            await until(lambda: any(e.get("task") == "loop watchdog" for e in logs))
            await until(lambda: watchdog.watching)
        finally:
            runtime.request_stop()
            code = await asyncio.wait_for(running, 30)
            watchdog.stop()
    assert code == 0
    [restart] = [e for e in logs if e.get("action") == "worker.task_restarted"]
    assert (restart["task"], restart["error"]) == (
        "loop watchdog",
        "RuntimeError: injected watchdog bug",
    )


async def test_a_loop_watchdog_that_keeps_dying_stops_the_worker_with_status_1(
    service: tuple[FakeWorkerService, int],
) -> None:
    fake, port = service
    watchdog = LoopWatchdog(flaky_limit(1000), tick_s=0.02)
    runtime = runtime_for(port, background={"loop watchdog": watchdog.keep_running})
    with structlog.testing.capture_logs() as logs:
        try:
            code = await asyncio.wait_for(runtime.run(), 30)
        finally:
            watchdog.stop()
    assert code == 1
    [failed] = [e for e in logs if e.get("action") == "worker.failed"]
    assert "loop watchdog" in failed["reason"]
    assert "Deregister" in fake.methods_called()


async def test_heartbeats_kept_through_a_drain_are_restarted_after_a_bug(
    service: tuple[FakeWorkerService, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, port = service
    runtime = runtime_for(port, grace_s=1.5)
    crashes: list[float] = []
    handle = Heartbeats.handle_commands

    def broken_once_draining(self: Heartbeats, commands: object) -> None:
        if runtime._shutdown.stop.is_set() and not crashes:
            crashes.append(len(fake.calls))
            raise RuntimeError("injected heartbeat bug")
        handle(self, commands)  # type: ignore[arg-type]

    monkeypatch.setattr(Heartbeats, "handle_commands", broken_once_draining)
    job_id = fake.assign(LONG_JOB)
    with structlog.testing.capture_logs() as logs:
        running = asyncio.create_task(runtime.run())
        try:
            await until(lambda: fake.acks)
            runtime.request_stop()  # the job runs on through the grace period
            await until(lambda: crashes)
        finally:
            runtime.request_stop()
            code = await asyncio.wait_for(running, 30)
    assert code == 0
    [restart] = [e for e in logs if e.get("action") == "worker.task_restarted"]
    assert restart["task"] == "heartbeats"
    after_crash = [c.method for c in fake.calls[crashes[0] :]]
    assert "Heartbeat" in after_crash  # beating again after the restart, before the goodbye
    assert after_crash.index("Heartbeat") < after_crash.index("Deregister")
    result = await fake.result_for(job_id, within=5)
    assert result.outcome == pb.JOB_OUTCOME_SHUTDOWN
