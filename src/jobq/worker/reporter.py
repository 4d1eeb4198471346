"""Start acknowledgements and results, sent in batches and kept until the server committed them.

One loop sends whatever has accumulated: first the acknowledgements (AckJobs), then the results
(ReportResults), so a job's start is always applied before its result. While a call is in
flight, new items gather for the next one (natural batching). Acknowledgements alone wait a few
milliseconds first: a job that succeeds within that window sends no acknowledgement at all, its
result carries the start (the server then records ASSIGNED → RUNNING → DONE in one row update
instead of two, with both events). A batch that cannot be
delivered (server down, restarting) stays queued and is sent again once the worker is connected;
a result counts as delivered only when the server answered, i.e. after it committed.

Reconnects do not lose reports. Closing a channel (the runtime does when heartbeats fail, e.g.
while its server replica is paused) makes grpc.aio cancel the call in flight with a bare
`asyncio.CancelledError`; `_call` tells that apart from a cancellation of the reporter's own task
(`Task.cancelling()`), and treats it like any failed delivery: the batch goes back to the front
of its queue and is sent again over the next channel. A batch taken off the queues goes back
whatever ends its call, an unexpected exception included, so the loop can be restarted by its
supervisor (`task_supervisor.py`) without losing anything. Results the server refuses are logged
once each, with its reason (`job.result_rejected`).

What the server's answers mean for the rest of the worker is passed up through subscriptions,
made by the parts built on top of the reporter: a refused start (`on_ack_rejected`, the
`JobRunner`, which stops the job) and the refusal of a superseded process (`on_superseded`, the
worker's `Shutdown`). The first must be heard, or a job the server took back would run on:
`run` refuses to start without its subscriber. The second is optional; unheard, the reporter
still stops sending.

Its two waits, the acknowledgements' linger and the pause before sending an undelivered batch
again, go through an injected `sleep`, so tests drive them with a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from jobq.domain.errors import is_superseded
from jobq.domain.records import record
from jobq.observability.logging_setup import get_logger
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.rpc._gen import worker_service_pb2_grpc
from jobq.worker.clock import Sleep
from jobq.worker.task_supervisor import cancelled_from_outside

log = get_logger("jobq.worker.reporter")

R = TypeVar("R")

RPC_TIMEOUT_S = 10.0
RETRY_DELAY_S = 0.5
"""How long an undelivered batch waits before it is sent again."""
ACK_LINGER_S = 0.005
"""How long acknowledgements wait for results to travel with (the server sees the start a few
milliseconds later; the job itself starts at once)."""


@record
class PendingResult:
    job_id: str
    attempt: int
    outcome: pb.JobOutcome
    result: bytes
    error_message: str
    claim_id: str = ""
    """The assignment's claim id, part of the fencing token the server checks."""


class ProgressUnsupported(Exception):
    """The server has no ReportProgress (a jq-server from before progress reports)."""


OnAckOutcome = Callable[[pb.AttemptOutcome], None]
OnSuperseded = Callable[[str], None]

_CARRIES_THE_START = frozenset({pb.JOB_OUTCOME_SUCCEEDED, pb.JOB_OUTCOME_REFUSED})
"""Outcomes the server applies to an ASSIGNED attempt, so they need no acknowledgement."""


class Reporter:
    """Owns the outgoing reports of one worker across reconnects."""

    def __init__(self, *, sleep: Sleep = asyncio.sleep) -> None:
        """`sleep` waits out the linger and the retry delay."""
        self._on_ack_rejected: OnAckOutcome | None = None
        self._on_superseded: OnSuperseded | None = None
        self._sleep = sleep
        self._incarnation = ""
        self._acks: list[pb.JobAttempt] = []
        self._results: list[PendingResult] = []
        self._delivered: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._stub: worker_service_pb2_grpc.WorkerServiceStub | None = None
        self._worker_id = ""
        self._connected = asyncio.Event()
        self._all_sent = asyncio.Event()
        self._all_sent.set()
        self._generation = 0
        """Bumped by `forget`: a batch taken before it is not put back after it."""

    # --- who hears the server's refusals ---------------------------------------------------------

    def on_ack_rejected(self, callback: OnAckOutcome) -> None:
        """Call `callback(outcome)` for each start the server refused (the job was cancelled
        or re-assigned: it must be stopped). Required before `run`."""
        self._on_ack_rejected = callback

    def on_superseded(self, callback: OnSuperseded) -> None:
        """Call `callback(reason)` when the server refuses this process as superseded (a newer
        one registered under this worker id): the worker must stop, not send again."""
        self._on_superseded = callback

    # --- what the runtime calls ----------------------------------------------------------------

    def connected(
        self,
        stub: worker_service_pb2_grpc.WorkerServiceStub,
        worker_id: str,
        incarnation: str = "",
    ) -> None:
        """`incarnation`: what RegisterWorker gave this process, presented with every batch."""
        self._stub, self._worker_id, self._incarnation = stub, worker_id, incarnation
        self._connected.set()
        self._wake.set()

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    def disconnected(self) -> None:
        self._connected.clear()

    def ack(self, job_id: str, attempt: int, claim_id: str = "") -> None:
        self._acks.append(pb.JobAttempt(job_id=job_id, attempt=attempt, claim_id=claim_id))
        self._all_sent.clear()
        self._wake.set()

    def result(self, item: PendingResult) -> asyncio.Future[None]:
        """Queue a result; the future resolves when the server has answered for it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._delivered[(item.job_id, item.attempt)] = future
        self._results.append(item)
        self._all_sent.clear()
        self._wake.set()
        return future

    def unsettled(self) -> list[tuple[str, int]]:
        """The attempts whose results the server has not answered yet: this worker still holds
        them (its heartbeat says so, or the server would take them back as never delivered)."""
        return list(self._delivered)

    def forget(self) -> None:
        """Drop everything unsent: the server declared us lost and retries those jobs itself."""
        self._generation += 1
        self._acks.clear()
        self._results.clear()
        self._all_sent.set()
        for future in self._delivered.values():
            if not future.done():
                future.cancel()
        self._delivered.clear()

    @property
    def idle(self) -> bool:
        return not self._acks and not self._results

    async def flushed(self, within: float) -> bool:
        """Wait until everything queued so far was delivered (False if `within` s passed)."""
        try:
            async with asyncio.timeout(within):
                await self._all_sent.wait()
                waiting = [f for f in self._delivered.values() if not f.done()]
                if waiting:
                    await asyncio.gather(*waiting, return_exceptions=True)
        except TimeoutError:
            return False
        return True

    # --- the sending loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Send until cancelled. Restartable: whatever is queued is sent by the next run."""
        if self._on_ack_rejected is None:
            raise RuntimeError("nobody hears refused starts: subscribe with on_ack_rejected")
        self._wake.set()  # a restarted loop may find items queued while nothing ran
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._connected.wait()
            if self._acks and not self._results:
                await self._sleep(ACK_LINGER_S)
            # Take the results before sending the acknowledgements: a job is acknowledged
            # before its result is queued, so every result taken here has its acknowledgement
            # in this or an earlier AckJobs call, never a later one, or is a success whose
            # acknowledgement it replaces.
            results, self._results = self._results, []
            self._fold_acknowledgements(results)
            generation, sent = self._generation, False
            try:
                sent = await self._send_acks() and await self._send_results(results)
            finally:
                if not sent:  # undelivered, or a bug's exception: keep them for the next try
                    self._put_back(generation, results=results)
            if not sent:
                await self._sleep(RETRY_DELAY_S)
                self._wake.set()
            elif self.idle:
                self._all_sent.set()

    def _fold_acknowledgements(self, results: list[PendingResult]) -> None:
        """Drop the unsent acknowledgements of attempts that succeeded (their result carries
        the start) or were refused (they never started; the server applies a refusal to an
        ASSIGNED job too). Failures keep theirs (the server applies a failure to a started job
        only)."""
        folded = {(r.job_id, r.attempt) for r in results if r.outcome in _CARRIES_THE_START}
        if folded and self._acks:
            self._acks = [a for a in self._acks if (a.job_id, a.attempt) not in folded]

    async def _send_acks(self) -> bool:
        if not self._acks:
            return True
        batch, self._acks = self._acks, []
        generation, reply = self._generation, None
        try:
            reply = await self._call(
                lambda stub: stub.AckJobs(
                    pb.AckJobsRequest(
                        worker_id=self._worker_id, jobs=batch, incarnation=self._incarnation
                    ),
                    timeout=RPC_TIMEOUT_S,
                )
            )
        finally:
            if reply is None:
                self._put_back(generation, acks=batch)
        if reply is None:
            return False
        for outcome in reply.outcomes:
            if not outcome.accepted:
                assert self._on_ack_rejected is not None  # `run` checked
                self._on_ack_rejected(outcome)
        return True

    async def _send_results(self, batch: list[PendingResult]) -> bool:
        if not batch:
            return True
        request = pb.ReportResultsRequest(
            worker_id=self._worker_id,
            incarnation=self._incarnation,
            results=[
                pb.ReportResultRequest(
                    job_id=r.job_id,
                    attempt=r.attempt,
                    outcome=r.outcome,
                    result=r.result,
                    error_message=r.error_message,
                    claim_id=r.claim_id,
                )
                for r in batch
            ],
        )
        reply = await self._call(lambda stub: stub.ReportResults(request, timeout=RPC_TIMEOUT_S))
        if reply is None:
            return False  # the caller puts the batch back
        for outcome in reply.outcomes:
            if not outcome.accepted:
                log.warning(
                    "result not accepted",
                    action="job.result_rejected",
                    job_id=outcome.job_id,
                    attempt=outcome.attempt,
                    reason=outcome.message,
                )
        for item in batch:
            future = self._delivered.pop((item.job_id, item.attempt), None)
            if future is not None and not future.done():
                future.set_result(None)
        return True

    async def send_progress(self, items: list[pb.JobProgress]) -> pb.ReportProgressResponse | None:
        """One ReportProgress call over the current connection (for the `ProgressSender`);
        None when it was not delivered.

        Raises:
            ProgressUnsupported: the server predates ReportProgress (UNIMPLEMENTED): workers
                are upgraded before servers, so this is an expected, lasting state.
        """
        request = pb.ReportProgressRequest(
            worker_id=self._worker_id, items=items, incarnation=self._incarnation
        )
        stub = self._stub
        if stub is None:
            return None
        try:
            reply: pb.ReportProgressResponse = await stub.ReportProgress(
                request, timeout=RPC_TIMEOUT_S
            )
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise
            return None  # a reconnect closed the channel: the next batch tries again
        except grpc.aio.UsageError:
            return None
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                raise ProgressUnsupported(exc.details() or "") from None
            # Progress is best effort: superseded, unknown worker and the like are heard
            # (and acted on) through the results' and heartbeats' calls.
            return None
        return reply

    def _put_back(
        self,
        generation: int,
        *,
        acks: list[pb.JobAttempt] | None = None,
        results: list[PendingResult] | None = None,
    ) -> None:
        """Return an unsent batch to the front of its queue (it was taken first, and order
        matters: starts before results), unless `forget` dropped everything meanwhile."""
        if generation != self._generation:
            return
        if acks:
            self._acks = acks + self._acks
        if results:
            self._results = results + self._results

    async def _call(
        self, send: Callable[[worker_service_pb2_grpc.WorkerServiceStub], Awaitable[R]]
    ) -> R | None:
        """The reply, or None when the batch was not delivered and must be sent again."""
        stub = self._stub
        if stub is None:
            return None
        try:
            return await send(stub)
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise  # the worker is stopping this task
            # grpc.aio cancels the calls of a channel being closed: the session ended while
            # this call was in flight. Send it again once reconnected.
            log.info(
                "reports cut off by a reconnect; sending them again once reconnected",
                action="worker.report_interrupted",
            )
            return None
        except grpc.aio.UsageError as exc:  # the session's channel was closed before the call
            log.info(
                "reports wait for the next connection",
                action="worker.report_interrupted",
                error=str(exc),
            )
            return None
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.FAILED_PRECONDITION and is_superseded(
                exc.details() or ""
            ):
                self.disconnected()  # never send again: a newer process owns this worker id
                if self._on_superseded is not None:
                    self._on_superseded(exc.details() or "")
                return None
            log.warning(
                "cannot deliver reports yet",
                action="worker.report_failed",
                code=exc.code().name,
                error=exc.details(),
            )
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                self.disconnected()  # the server forgot us: wait for re-registration
            return None
