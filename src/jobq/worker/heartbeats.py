"""The heartbeat loop of one session, and the commands the server sends back with each answer.

Every `heartbeat_s` the worker tells the server everything it holds: the jobs running or
waiting for a slot, and the finished ones whose results the server has not answered yet. The
server takes back whatever is missing from that list (an assignment lost on a dead connection)
after a grace period, so the list must be complete, not just "what runs".

Only answers count as contact (`server_contact.py`), and they count from when the heartbeat was
*sent*: the server recorded it after that. A slow answer is therefore waited for up to the
contact deadline rather than given up after one interval, so the worker does not stop the jobs
of a server that is slow rather than gone (a replica catching up after a pause, a loaded
database). Three failed heartbeats in a row end the session (the runtime reconnects); the
server forgetting this worker (NOT_FOUND) ends it at once, and its refusal of a superseded
process is passed on before the error ends the session.

What the answers carry for the rest of the worker goes to subscribers, made by the part built on
top (the worker's `Shutdown`): the server's SHUTDOWN command (`on_shutdown`, which must be heard:
a heartbeat is not sent without its subscriber) and the refusal of a superseded process
(`on_superseded`; optional, since the refusal is raised to the session as well); and the
attempts whose cancel was requested (`on_cancel`, the runtime's `JobRunner.cancel`).

The time is injected (`clock`, `sleep`): tests drive the loop with a fake clock, one `beat` at
a time or through `run`, without waiting for intervals to pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import grpc

from jobq.observability.logging_setup import get_logger
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.rpc._gen import worker_service_pb2_grpc
from jobq.worker.clock import Clock, Sleep
from jobq.worker.job_runner import JobKey
from jobq.worker.registration import RPC_TIMEOUT_S, Registration
from jobq.worker.server_contact import ServerContact
from jobq.worker.session_end import SessionEnded, describe_error, is_superseded_error
from jobq.worker.task_supervisor import cancelled_from_outside

__all__ = ["FAILED_HEARTBEATS_BEFORE_RECONNECT", "MIN_ANSWER_WAIT_S", "Heartbeats"]

log = get_logger("jobq.worker")

FAILED_HEARTBEATS_BEFORE_RECONNECT = 3
MIN_ANSWER_WAIT_S = 1.0
"""The shortest wait for a heartbeat's answer, however short the interval."""


class Heartbeats:
    """Sends heartbeats over a session's stub until the session ends; hands on commands."""

    def __init__(
        self,
        registration: Registration,
        contact: ServerContact,
        held: Callable[[], Iterable[JobKey]],
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`held()` lists every attempt this process holds."""
        self._registration = registration
        self._contact = contact
        self._held = held
        self._on_shutdown: Callable[[], None] | None = None
        self._on_superseded: Callable[[str], None] | None = None
        self._on_cancel: Callable[[str, int], object] | None = None
        self._clock = clock
        self._sleep = sleep
        self.draining = False
        """The server said DRAIN: it assigns this worker nothing more."""

    def on_shutdown(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when an answer carries the server's SHUTDOWN command. Required
        before the first heartbeat."""
        self._on_shutdown = callback

    def on_cancel(self, callback: Callable[[str, int], object]) -> None:
        """Call `callback(job_id, attempt)` for each held attempt an answer says was cancelled
        (the fallback of the stream's cancels; repeated at every beat until the job ends)."""
        self._on_cancel = callback

    def on_superseded(self, callback: Callable[[str], None]) -> None:
        """Call `callback(reason)` when the server refuses this process as superseded."""
        self._on_superseded = callback

    async def run(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> None:
        """Beat every interval until the session must end (raises `SessionEnded` or the
        superseding refusal) or the task is cancelled."""
        failures = 0
        while True:
            await self._sleep(self._registration.heartbeat_s)
            if await self.beat(stub):
                failures = 0
                continue
            failures += 1
            if failures >= FAILED_HEARTBEATS_BEFORE_RECONNECT:
                log.error(
                    "heartbeats failing",
                    action="worker.heartbeat_failed",
                    worker_id=self._registration.worker_id,
                    failures=failures,
                )
                raise SessionEnded(f"{failures} heartbeats failed")

    async def beat(self, stub: worker_service_pb2_grpc.WorkerServiceStub) -> bool:
        """Send one heartbeat: True when answered (its commands handled), False when it
        failed in a way another heartbeat may not (a timeout, the server unavailable).

        Raises:
            SessionEnded: the channel was closed, or the server no longer knows this worker.
            grpc.aio.AioRpcError: the server refused this process as superseded.
            RuntimeError: nobody subscribed to the SHUTDOWN command (a bug in the wiring).
        """
        if self._on_shutdown is None:
            raise RuntimeError("nobody hears the SHUTDOWN command: subscribe with on_shutdown")
        registration = self._registration
        running = [
            pb.JobAttempt(job_id=job_id, attempt=attempt) for job_id, attempt in self._held()
        ]
        sent = self._clock()
        try:
            reply = await stub.Heartbeat(
                pb.HeartbeatRequest(
                    worker_id=registration.worker_id,
                    active_job_count=len(running),
                    running=running,
                    incarnation=registration.incarnation,
                ),
                timeout=self.answer_wait_s(sent),
            )
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise
            # grpc.aio cancels the calls of a closed channel: this session is over.
            raise SessionEnded("the heartbeat's channel was closed") from None
        except grpc.aio.UsageError:
            raise SessionEnded("the heartbeat's channel was closed") from None
        except grpc.aio.AioRpcError as exc:
            if is_superseded_error(exc):
                if self._on_superseded is not None:
                    self._on_superseded(describe_error(exc))
                raise
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                raise SessionEnded("the server no longer knows this worker") from None
            return False
        self._contact.answered(sent)
        self.handle_commands(reply.commands)
        if reply.cancels and self._on_cancel is not None:
            for cancel in reply.cancels:
                self._on_cancel(cancel.job_id, cancel.attempt)
        return True

    def answer_wait_s(self, sent: float) -> float:
        """How long a heartbeat sent at `sent` may wait for its answer: up to the contact
        deadline (the answer still counts until then), at least an interval, at most the RPC
        timeout."""
        heartbeat_s = self._registration.heartbeat_s
        return min(
            RPC_TIMEOUT_S, max(heartbeat_s, MIN_ANSWER_WAIT_S, self._contact.deadline - sent)
        )

    def handle_commands(self, commands: Iterable[int]) -> None:
        """The commands an answer carried: DRAIN (logged once; the server stops assigning)
        and SHUTDOWN (stop gracefully)."""
        for command in commands:
            if command == pb.WORKER_COMMAND_DRAIN and not self.draining:
                self.draining = True
                log.info(
                    "draining: no new jobs",
                    action="worker.draining",
                    worker_id=self._registration.worker_id,
                )
            elif command == pb.WORKER_COMMAND_SHUTDOWN:
                assert self._on_shutdown is not None  # `beat` checked
                self._on_shutdown()
