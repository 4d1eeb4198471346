"""The server-contact watch with a fake clock: nothing happens before the contact deadline;
past it, every running job is stopped and reported as interrupted with why; the worker exits
only when a sync handler's thread runs on; an assignment read past the deadline is handed back
unstarted. The watch checks every CONTACT_CHECK_S of the injected sleep."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from support.fake_clock import FakeClock

from jobq.config import WorkerSettings
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.contact_watch import CONTACT_CHECK_S, EXIT_CONTACT_LOST, ContactWatch
from jobq.worker.executor import ExecutionResult
from jobq.worker.job_runner import JobRunner
from jobq.worker.registration import Registration
from jobq.worker.reporter import Reporter
from jobq.worker.server_contact import ServerContact


class Executor:
    """Runs every job until cancelled; says how many sync handlers it pretends still run."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.unstoppable = 0

    async def run(
        self, payload: bytes, default_timeout_s: float | None, *, job: object = None
    ) -> ExecutionResult:
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def unstoppable_running(self) -> int:
        return self.unstoppable


class Parts:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.contact = ServerContact(self.clock)
        self.contact.learn_timeout(10.0, 0)  # lost 8 s after the last answered send
        self.registration = Registration(WorkerSettings(), self.contact, self.clock)
        self.reporter = Reporter()
        self.executor = Executor()
        self.jobs = JobRunner(
            self.executor,  # type: ignore[arg-type]
            self.reporter,
            WorkerMetrics(),
            self.contact,
            self.registration,
            concurrency=2,
            clock=self.clock,
        )
        self.watch = ContactWatch(
            self.contact,
            self.jobs,
            self.executor.unstoppable_running,
            self.registration,
            sleep=self.clock.sleep,
        )
        self.exits: list[int] = []
        self.watch.exit_process = self.exits.append

    async def start_job(self, job_id: str = "j1") -> None:
        self.jobs.start(pb.JobAssignment(job_id=job_id, attempt=1, payload=b"{}"))
        await asyncio.wait_for(self.executor.started.wait(), 5)


@pytest.fixture
def parts() -> Parts:
    return Parts()


async def test_nothing_is_stopped_before_the_deadline(parts: Parts) -> None:
    await parts.start_job()
    parts.clock.advance(8.0)  # exactly at the deadline: not past it
    await parts.watch.run_once()
    assert list(parts.jobs.running) == [("j1", 1)]
    assert parts.reporter.unsettled() == []


async def test_past_the_deadline_jobs_are_stopped_and_reported_with_why(parts: Parts) -> None:
    await parts.start_job()
    parts.clock.advance(8.5)
    with structlog.testing.capture_logs() as logs:
        await parts.watch.run_once()
    assert parts.jobs.running == {}
    assert parts.reporter.unsettled() == [("j1", 1)]
    [result] = parts.reporter._results
    assert result.outcome == pb.JOB_OUTCOME_SHUTDOWN
    assert result.error_message == (
        "stopped: no contact with jq-server for 8.5s (its heartbeat timeout is 10s)"
    )
    assert [e["action"] for e in logs if e["log_level"] == "error"] == ["worker.lost"]
    assert parts.exits == []  # an async job stops: nothing forces an exit


async def test_a_sync_handler_that_runs_on_makes_the_worker_exit(parts: Parts) -> None:
    await parts.start_job()
    parts.executor.unstoppable = 1
    parts.clock.advance(9.0)
    await parts.watch.run_once()
    assert parts.exits == [EXIT_CONTACT_LOST]


async def test_no_jobs_no_action(parts: Parts) -> None:
    parts.executor.unstoppable = 1
    parts.clock.advance(60.0)
    await parts.watch.run_once()
    assert parts.exits == []


async def test_the_loop_checks_every_contact_check_interval(parts: Parts) -> None:
    await parts.start_job()
    loop = asyncio.create_task(parts.watch.run())
    try:
        await parts.clock.sleeping()
        parts.clock.advance(7.9)  # the check it wakes for finds the deadline ahead
        await parts.clock.sleeping()
        assert list(parts.jobs.running) == [("j1", 1)]
        parts.clock.advance(0.2)  # 0.1 s past the deadline: the next check stops the job
        await parts.clock.sleeping()
        assert parts.jobs.running == {}
    finally:
        loop.cancel()
    assert set(parts.clock.slept) == {CONTACT_CHECK_S}


async def test_an_assignment_read_past_the_deadline_is_handed_back_unstarted(
    parts: Parts,
) -> None:
    parts.clock.advance(8.5)
    parts.jobs.start(pb.JobAssignment(job_id="late", attempt=3, payload=b"{}", claim_id="c"))
    assert parts.jobs.running == {}
    assert not parts.executor.started.is_set()
    [result] = parts.reporter._results
    assert (result.job_id, result.attempt, result.claim_id) == ("late", 3, "c")
    assert result.outcome == pb.JOB_OUTCOME_SHUTDOWN
    assert result.error_message.startswith("not started: no contact with jq-server for 8.5s")


async def test_an_assignment_still_waiting_to_begin_at_the_deadline_is_handed_back(
    parts: Parts,
) -> None:
    """Read in time, but the process was paused (or the job waited for a slot) until past the
    deadline: its task must not begin the job once it runs."""
    parts.jobs.start(pb.JobAssignment(job_id="paused", attempt=2, payload=b"{}", claim_id="c"))
    assert ("paused", 2) in parts.jobs.running  # its task exists but has not run yet
    parts.clock.advance(8.5)  # what a SIGSTOP past the deadline looks like to the clock
    await asyncio.wait_for(parts.jobs.wait_all(5.0), 5.0)
    assert not parts.executor.started.is_set()
    [result] = parts.reporter._results
    assert (result.job_id, result.attempt, result.claim_id) == ("paused", 2, "c")
    assert result.outcome == pb.JOB_OUTCOME_SHUTDOWN
    assert result.error_message.startswith("not started: no contact with jq-server for 8.5s")
