"""The reporter's batching: acknowledgements ride with results, and order is kept."""

from __future__ import annotations

import asyncio

from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.reporter import PendingResult, Reporter


class RecordingStub:
    """Answers AckJobs and ReportResults like a server that accepts everything."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []

    async def AckJobs(self, request: pb.AckJobsRequest, **_: object) -> pb.AckJobsResponse:
        attempts = [(j.job_id, j.attempt) for j in request.jobs]
        self.calls.append(("ack", attempts))
        return pb.AckJobsResponse(
            outcomes=[pb.AttemptOutcome(job_id=j, attempt=a, accepted=True) for j, a in attempts]
        )

    async def ReportResults(
        self, request: pb.ReportResultsRequest, **_: object
    ) -> pb.ReportResultsResponse:
        attempts = [(r.job_id, r.attempt) for r in request.results]
        self.calls.append(("results", attempts))
        return pb.ReportResultsResponse(
            outcomes=[pb.AttemptOutcome(job_id=j, attempt=a, accepted=True) for j, a in attempts]
        )


def _result(job_id: str, outcome: int = pb.JOB_OUTCOME_SUCCEEDED) -> PendingResult:
    return PendingResult(job_id, 1, outcome, b"1", "")  # type: ignore[arg-type]


async def _reporter() -> tuple[Reporter, RecordingStub, asyncio.Task[None]]:
    reporter = Reporter(on_ack_rejected=lambda outcome: None)
    stub = RecordingStub()
    reporter.connected(stub, "w")  # type: ignore[arg-type]
    return reporter, stub, asyncio.create_task(reporter.run())


async def test_a_job_that_succeeds_at_once_sends_its_result_without_an_acknowledgement() -> None:
    reporter, stub, task = await _reporter()
    reporter.ack("a", 1)
    delivered = reporter.result(_result("a"))
    await asyncio.wait_for(delivered, timeout=5)
    assert stub.calls == [("results", [("a", 1)])]
    task.cancel()


async def test_a_failure_keeps_its_acknowledgement_and_sends_it_first() -> None:
    reporter, stub, task = await _reporter()
    reporter.ack("a", 1)
    reporter.ack("b", 1)
    reporter.result(_result("a", pb.JOB_OUTCOME_FAILED))
    delivered = reporter.result(_result("b"))
    await asyncio.wait_for(delivered, timeout=5)
    assert await reporter.flushed(5)
    assert stub.calls == [("ack", [("a", 1)]), ("results", [("a", 1), ("b", 1)])]
    task.cancel()


async def test_a_refusal_replaces_its_acknowledgement_and_travels_with_the_results() -> None:
    # A refused job never started: the server applies the refusal to the ASSIGNED attempt.
    reporter, stub, task = await _reporter()
    reporter.ack("a", 1)
    reporter.ack("b", 1)
    reporter.result(_result("a", pb.JOB_OUTCOME_REFUSED))
    reporter.result(_result("b", pb.JOB_OUTCOME_FAILED))
    assert await reporter.flushed(5)
    assert stub.calls == [("ack", [("b", 1)]), ("results", [("a", 1), ("b", 1)])]
    task.cancel()


async def test_a_long_job_is_acknowledged_before_it_finishes() -> None:
    reporter, stub, task = await _reporter()
    reporter.ack("a", 1)
    async with asyncio.timeout(5):
        while not stub.calls:
            await asyncio.sleep(0.001)
    assert stub.calls == [("ack", [("a", 1)])]
    await asyncio.wait_for(reporter.result(_result("a")), timeout=5)
    assert stub.calls == [("ack", [("a", 1)]), ("results", [("a", 1)])]
    task.cancel()
