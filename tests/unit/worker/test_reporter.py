"""The reporter's batching: acknowledgements ride with results, and order is kept; its linger
and retry delay, driven by a fake clock."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from support.fake_clock import FakeClock

from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.reporter import ACK_LINGER_S, RETRY_DELAY_S, PendingResult, Reporter


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
    reporter = Reporter()
    reporter.on_ack_rejected(lambda outcome: None)
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


class CutOffStub(RecordingStub):
    """Its first ReportResults ends as grpc.aio ends a call whose channel is being closed:
    with a bare CancelledError in the caller, whose own task is not being cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cut = 0

    async def ReportResults(
        self, request: pb.ReportResultsRequest, **kwargs: object
    ) -> pb.ReportResultsResponse:
        if not self.cut:
            self.cut += 1
            raise asyncio.CancelledError
        return await super().ReportResults(request, **kwargs)


async def test_a_call_cut_off_by_a_reconnect_is_sent_again_over_the_next_channel() -> None:
    clock = FakeClock()
    reporter = Reporter(sleep=clock.sleep)
    reporter.on_ack_rejected(lambda outcome: None)
    old, new = CutOffStub(), RecordingStub()
    reporter.connected(old, "w")  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run())
    delivered = reporter.result(_result("a"))
    await clock.sleeping()  # the cut-off call is over: the retry delay has begun
    assert old.cut == 1
    assert clock.slept == [RETRY_DELAY_S]
    assert not task.done(), "the reporter died with the call"
    reporter.disconnected()  # the runtime's session ended
    reporter.connected(new, "w")  # type: ignore[arg-type]
    clock.advance(RETRY_DELAY_S)
    await asyncio.wait_for(delivered, timeout=5)
    assert new.calls == [("results", [("a", 1)])]
    task.cancel()


async def test_an_undelivered_batch_is_sent_again_after_the_retry_delay_not_before() -> None:
    clock = FakeClock()
    reporter = Reporter(sleep=clock.sleep)
    reporter.on_ack_rejected(lambda outcome: None)
    stub = CutOffStub()
    reporter.connected(stub, "w")  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run())
    delivered = reporter.result(_result("a"))
    await clock.sleeping()
    clock.advance(RETRY_DELAY_S - 0.01)
    await asyncio.sleep(0)
    assert stub.calls == []  # the first call was cut off
    assert not delivered.done()
    clock.advance(0.01)
    await asyncio.wait_for(delivered, timeout=5)
    assert stub.calls == [("results", [("a", 1)])]
    task.cancel()


async def test_acknowledgements_alone_linger_for_results_to_travel_with() -> None:
    clock = FakeClock()
    reporter = Reporter(sleep=clock.sleep)
    reporter.on_ack_rejected(lambda outcome: None)
    stub = RecordingStub()
    reporter.connected(stub, "w")  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run())
    reporter.ack("a", 1)
    await clock.sleeping()
    assert clock.slept == [ACK_LINGER_S]
    reporter.result(_result("a"))  # within the linger: it carries the start
    clock.advance(ACK_LINGER_S)
    assert await reporter.flushed(5)
    assert stub.calls == [("results", [("a", 1)])]
    reporter.result(_result("b"))  # a result alone goes at once, without lingering
    assert await reporter.flushed(5)
    assert clock.slept == [ACK_LINGER_S]
    task.cancel()


class BrokenStub(RecordingStub):
    """Raises an unexpected exception (a bug) from its first ReportResults."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True

    async def ReportResults(
        self, request: pb.ReportResultsRequest, **kwargs: object
    ) -> pb.ReportResultsResponse:
        if self.broken:
            self.broken = False
            raise RuntimeError("bug")
        return await super().ReportResults(request, **kwargs)


async def test_a_crash_keeps_the_batch_for_the_restarted_loop() -> None:
    reporter = Reporter()
    reporter.on_ack_rejected(lambda outcome: None)
    stub = BrokenStub()
    reporter.connected(stub, "w")  # type: ignore[arg-type]
    reporter.ack("a", 1)
    delivered = reporter.result(_result("a", pb.JOB_OUTCOME_FAILED))
    first = asyncio.create_task(reporter.run())
    done, _ = await asyncio.wait({first}, timeout=5)
    assert done
    assert isinstance(first.exception(), RuntimeError)
    assert not reporter.idle
    restarted = asyncio.create_task(reporter.run())  # what the supervisor does
    await asyncio.wait_for(delivered, timeout=5)
    assert stub.calls == [("ack", [("a", 1)]), ("results", [("a", 1)])]
    restarted.cancel()


class HangingStub(RecordingStub):
    """Its ReportResults hangs until released, then ends as a closed channel's call does."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def ReportResults(
        self, request: pb.ReportResultsRequest, **kwargs: object
    ) -> pb.ReportResultsResponse:
        self.entered.set()
        await self.release.wait()
        raise asyncio.CancelledError


async def test_what_was_forgotten_during_a_call_is_not_put_back() -> None:
    reporter = Reporter()
    reporter.on_ack_rejected(lambda outcome: None)
    old, new = HangingStub(), RecordingStub()
    reporter.connected(old, "w")  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run())
    reporter.result(_result("a"))
    await asyncio.wait_for(old.entered.wait(), 5)
    reporter.forget()  # declared lost while the call hangs: the server retries the job
    reporter.disconnected()
    old.release.set()
    await asyncio.sleep(0.01)
    assert reporter.idle
    reporter.connected(new, "w")  # type: ignore[arg-type]
    reporter.result(_result("b"))
    assert await reporter.flushed(5)
    assert new.calls == [("results", [("b", 1)])]
    task.cancel()


class RefusingStub(RecordingStub):
    """Refuses every result, saying why (a stale attempt: the job was re-assigned)."""

    async def ReportResults(
        self, request: pb.ReportResultsRequest, **kwargs: object
    ) -> pb.ReportResultsResponse:
        self.calls.append(("results", [(r.job_id, r.attempt) for r in request.results]))
        return pb.ReportResultsResponse(
            outcomes=[
                pb.AttemptOutcome(
                    job_id=r.job_id, attempt=r.attempt, accepted=False, message="stale attempt"
                )
                for r in request.results
            ]
        )


async def test_a_refused_result_is_logged_once_with_the_reason_and_not_sent_again() -> None:
    reporter = Reporter()
    reporter.on_ack_rejected(lambda outcome: None)
    stub = RefusingStub()
    reporter.connected(stub, "w")  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run())
    with structlog.testing.capture_logs() as logs:
        delivered = [reporter.result(_result("a")), reporter.result(_result("b"))]
        await asyncio.wait_for(asyncio.gather(*delivered), timeout=5)
        assert await reporter.flushed(5)
    refused = [e for e in logs if e.get("action") == "job.result_rejected"]
    assert [(e["job_id"], e["reason"], e["log_level"]) for e in refused] == [
        ("a", "stale attempt", "warning"),
        ("b", "stale attempt", "warning"),
    ]
    assert stub.calls == [("results", [("a", 1), ("b", 1)])]  # answered: not sent again
    task.cancel()


async def test_a_result_is_unsettled_until_the_server_answered_it() -> None:
    """The heartbeat lists unsettled results as held: the server takes back claims a worker
    leaves out, and a finished job whose result is still on its way is not one to take."""
    reporter = Reporter()
    reporter.on_ack_rejected(lambda outcome: None)
    delivered = reporter.result(_result("a"))
    assert reporter.unsettled() == [("a", 1)]  # not connected yet: waiting
    stub = RecordingStub()
    reporter.connected(stub, "w")  # type: ignore[arg-type]
    task = asyncio.create_task(reporter.run())
    await asyncio.wait_for(delivered, timeout=5)
    assert reporter.unsettled() == []
    task.cancel()


async def test_the_reporter_does_not_send_before_someone_hears_refused_starts() -> None:
    """A refused start nobody hears would leave a job the server took back running."""
    reporter = Reporter()
    stub = RecordingStub()
    reporter.connected(stub, "w")  # type: ignore[arg-type]
    reporter.ack("a", 1)
    with pytest.raises(RuntimeError, match="on_ack_rejected"):
        await asyncio.wait_for(reporter.run(), timeout=5)
    assert stub.calls == []
