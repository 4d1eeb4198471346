"""The heartbeat loop with a fake clock: it beats every interval listing everything held, an
answer moves the contact deadline by when its heartbeat was *sent*, a slow answer is waited for
up to that deadline, three failures in a row end the session (a success in between resets the
count), NOT_FOUND ends it at once, a superseding refusal is passed on, and the commands an
answer carries are handled."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest
import structlog
from support.fake_clock import FakeClock

from jobq.config import WorkerSettings
from jobq.domain.errors import SUPERSEDED
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.worker.heartbeats import FAILED_HEARTBEATS_BEFORE_RECONNECT, Heartbeats
from jobq.worker.registration import RPC_TIMEOUT_S, Registration
from jobq.worker.server_contact import ServerContact
from jobq.worker.session_end import SessionEnded

INTERVAL_S = 2.0


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class Stub:
    """Answers Heartbeat from a script: a reply (with its delay in fake seconds) or an error."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.requests: list[tuple[float, pb.HeartbeatRequest, float]] = []
        self.script: Iterator[pb.HeartbeatResponse | grpc.aio.AioRpcError] = iter(())
        self.answer_after_s = 0.0

    async def Heartbeat(self, request: pb.HeartbeatRequest, **call: float) -> object:
        self.requests.append((self.clock(), request, call["timeout"]))
        self.clock.now += self.answer_after_s  # the call took that long
        answer = next(self.script, pb.HeartbeatResponse())
        if isinstance(answer, grpc.aio.AioRpcError):
            raise answer
        return answer


class Parts:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.contact = ServerContact(self.clock)
        self.contact.learn_timeout(10.0, 0)  # deadline: 8 s after the last answered send
        self.registration = Registration(
            WorkerSettings(heartbeat_interval_s=INTERVAL_S), self.contact, self.clock
        )
        self.registration.worker_id, self.registration.incarnation = "w1", "inc"
        self.held = [("a", 1), ("b", 2)]
        self.shutdowns = 0
        self.superseded: list[str] = []
        self.heartbeats = Heartbeats(
            self.registration,
            self.contact,
            lambda: self.held,
            clock=self.clock,
            sleep=self.clock.sleep,
        )
        self.heartbeats.on_shutdown(self.shutdown)
        self.heartbeats.on_superseded(self.superseded.append)
        self.stub = Stub(self.clock)

    def shutdown(self) -> None:
        self.shutdowns += 1


@pytest.fixture
def parts() -> Parts:
    return Parts()


async def test_it_beats_every_interval_with_everything_held(parts: Parts) -> None:
    loop = asyncio.create_task(parts.heartbeats.run(parts.stub))  # type: ignore[arg-type]
    try:
        await parts.clock.sleeping()
        assert parts.stub.requests == []  # the first heartbeat waits an interval
        parts.clock.advance(INTERVAL_S)
        await parts.clock.sleeping()
        parts.clock.advance(INTERVAL_S)
        await parts.clock.sleeping()
    finally:
        loop.cancel()
    assert [at for at, _, _ in parts.stub.requests] == [1002.0, 1004.0]
    request = parts.stub.requests[0][1]
    assert (request.worker_id, request.incarnation) == ("w1", "inc")
    assert {(j.job_id, j.attempt) for j in request.running} == {("a", 1), ("b", 2)}
    assert request.active_job_count == 2
    assert parts.clock.slept == [INTERVAL_S] * 3


async def test_a_slow_answer_counts_from_when_it_was_sent(parts: Parts) -> None:
    parts.stub.answer_after_s = 3.0
    sent = parts.clock()
    assert await parts.heartbeats.beat(parts.stub)  # type: ignore[arg-type]
    assert parts.contact.deadline == sent + 10.0 - 2.0


async def test_the_answer_is_waited_for_up_to_the_contact_deadline(parts: Parts) -> None:
    now = parts.clock()
    parts.contact.answered(now)  # deadline: now + 8 s
    assert parts.heartbeats.answer_wait_s(now) == 8.0
    assert parts.heartbeats.answer_wait_s(now + 7.5) == INTERVAL_S  # never under an interval
    parts.contact.learn_timeout(100.0, 0)
    assert parts.heartbeats.answer_wait_s(now) == RPC_TIMEOUT_S  # nor over the RPC timeout
    await parts.heartbeats.beat(parts.stub)  # type: ignore[arg-type]
    assert parts.stub.requests[0][2] == RPC_TIMEOUT_S


async def test_three_failures_in_a_row_end_the_session(parts: Parts) -> None:
    unavailable = rpc_error(grpc.StatusCode.UNAVAILABLE)
    # Two failures, an answer (the count starts again), then three failures.
    parts.stub.script = iter([unavailable, unavailable, pb.HeartbeatResponse()] + [unavailable] * 3)
    loop = asyncio.create_task(parts.heartbeats.run(parts.stub))  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        for _ in range(6):
            await parts.clock.sleeping()
            parts.clock.advance(INTERVAL_S)
        with pytest.raises(SessionEnded, match="3 heartbeats failed"):
            await asyncio.wait_for(loop, 5)
    assert len(parts.stub.requests) == 6
    [failed] = [e for e in logs if e.get("action") == "worker.heartbeat_failed"]
    assert failed["failures"] == FAILED_HEARTBEATS_BEFORE_RECONNECT


async def test_a_server_that_forgot_the_worker_ends_the_session_at_once(parts: Parts) -> None:
    parts.stub.script = iter([rpc_error(grpc.StatusCode.NOT_FOUND, "unknown worker")])
    with pytest.raises(SessionEnded, match="no longer knows"):
        await parts.heartbeats.beat(parts.stub)  # type: ignore[arg-type]


async def test_a_superseding_refusal_is_passed_on_and_ends_the_session(parts: Parts) -> None:
    refusal = rpc_error(grpc.StatusCode.FAILED_PRECONDITION, f"{SUPERSEDED} w1: stop")
    parts.stub.script = iter([refusal])
    with pytest.raises(grpc.aio.AioRpcError):
        await parts.heartbeats.beat(parts.stub)  # type: ignore[arg-type]
    assert parts.superseded == [f"FAILED_PRECONDITION: {SUPERSEDED} w1: stop"]


async def test_an_unanswered_heartbeat_does_not_move_the_deadline(parts: Parts) -> None:
    deadline = parts.contact.deadline
    parts.stub.script = iter([rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED)])
    assert not await parts.heartbeats.beat(parts.stub)  # type: ignore[arg-type]
    assert parts.contact.deadline == deadline


async def test_drain_is_logged_once_and_shutdown_asks_the_worker_to_stop(parts: Parts) -> None:
    drain = pb.HeartbeatResponse(commands=[pb.WORKER_COMMAND_DRAIN])
    parts.stub.script = iter(
        [drain, drain, pb.HeartbeatResponse(commands=[pb.WORKER_COMMAND_SHUTDOWN])]
    )
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            assert await parts.heartbeats.beat(parts.stub)  # type: ignore[arg-type]
    assert parts.heartbeats.draining
    assert [e["action"] for e in logs] == ["worker.draining"]
    assert parts.shutdowns == 1


async def test_no_heartbeat_is_sent_before_someone_hears_the_shutdown_command() -> None:
    """A SHUTDOWN nobody hears would be lost: unwired heartbeats fail loudly, sending nothing."""
    parts = Parts()
    unwired = Heartbeats(parts.registration, parts.contact, lambda: parts.held, clock=parts.clock)
    with pytest.raises(RuntimeError, match="on_shutdown"):
        await unwired.beat(parts.stub)  # type: ignore[arg-type]
    assert parts.stub.requests == []


async def test_the_cancels_an_answer_carries_go_to_the_subscriber(parts: Parts) -> None:
    heard: list[tuple[str, int]] = []
    parts.heartbeats.on_cancel(lambda job_id, attempt: heard.append((job_id, attempt)))
    parts.stub.script = iter(
        [
            pb.HeartbeatResponse(cancels=[pb.JobAttempt(job_id="a", attempt=1)]),
            pb.HeartbeatResponse(),
        ]
    )
    assert await parts.heartbeats.beat(parts.stub)  # type: ignore[arg-type]
    assert await parts.heartbeats.beat(parts.stub)  # type: ignore[arg-type]
    assert heard == [("a", 1)]
