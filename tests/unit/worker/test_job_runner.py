"""The job runner on a reporter: it hears the starts the server refuses by itself (it
subscribes when built), stops such a job and reports nothing for it; what it holds, for the
heartbeats, is every job running and every result not yet answered."""

from __future__ import annotations

import asyncio

import structlog
from support.fake_clock import FakeClock

from jobq.config import WorkerSettings
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.executor import ExecutionResult
from jobq.worker.job_runner import JobRunner
from jobq.worker.registration import Registration
from jobq.worker.reporter import PendingResult, Reporter
from jobq.worker.server_contact import ServerContact


class Executor:
    """Runs every job until cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def run(
        self, payload: bytes, default_timeout_s: float | None, *, job: object = None
    ) -> ExecutionResult:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.cancelled.set()
        raise AssertionError("unreachable")


class RefusingStartsStub:
    """Refuses every start (the job was re-assigned meanwhile); records every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def AckJobs(self, request: pb.AckJobsRequest, **_: object) -> pb.AckJobsResponse:
        self.calls.append("AckJobs")
        return pb.AckJobsResponse(
            outcomes=[
                pb.AttemptOutcome(
                    job_id=j.job_id, attempt=j.attempt, accepted=False, message="re-assigned"
                )
                for j in request.jobs
            ]
        )

    async def ReportResults(self, request: pb.ReportResultsRequest, **_: object) -> object:
        self.calls.append("ReportResults")
        raise AssertionError("a job whose start was refused reports nothing")


def runner(reporter: Reporter, executor: Executor) -> JobRunner:
    clock = FakeClock()
    contact = ServerContact(clock)
    contact.learn_timeout(10.0, 0)
    registration = Registration(WorkerSettings(), contact, clock)
    return JobRunner(
        executor,  # type: ignore[arg-type]
        reporter,
        WorkerMetrics(),
        contact,
        registration,
        concurrency=2,
        clock=clock,
    )


async def test_a_refused_start_stops_the_job_and_reports_nothing() -> None:
    reporter, executor, stub = Reporter(), Executor(), RefusingStartsStub()
    jobs = runner(reporter, executor)  # subscribes to the reporter's refused starts
    reporter.connected(stub, "w")  # type: ignore[arg-type]
    sending = asyncio.create_task(reporter.run())
    try:
        with structlog.testing.capture_logs() as logs:
            jobs.start(pb.JobAssignment(job_id="j1", attempt=1, payload=b"{}"))
            await asyncio.wait_for(executor.cancelled.wait(), 5)
            await jobs.wait_all(5)
        assert jobs.running == {}
        assert await reporter.flushed(5)
    finally:
        sending.cancel()
    assert stub.calls == ["AckJobs"]
    [refused] = [e for e in logs if e.get("action") == "job.start_rejected"]
    assert (refused["job_id"], refused["reason"]) == ("j1", "re-assigned")


async def test_it_holds_its_running_jobs_and_its_unanswered_results() -> None:
    reporter, executor = Reporter(), Executor()
    jobs = runner(reporter, executor)
    jobs.start(pb.JobAssignment(job_id="running", attempt=2, payload=b"{}"))
    await asyncio.wait_for(executor.started.wait(), 5)
    reporter.result(PendingResult("finished", 1, pb.JOB_OUTCOME_SUCCEEDED, b"", ""))
    assert jobs.held() == {("running", 2), ("finished", 1)}
    jobs.abandon_all()
    await jobs.wait_all(5)
