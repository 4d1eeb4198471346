"""Start acknowledgements and results, sent in batches and kept until the server committed them.

One loop sends whatever has accumulated: first the acknowledgements (AckJobs), then the results
(ReportResults), so a job's start is always applied before its result. While a call is in
flight, new items gather for the next one (natural batching). Acknowledgements alone wait a few
milliseconds first: a job that succeeds within that window sends no acknowledgement at all, its
result carries the start (the server then records ASSIGNED → RUNNING → DONE in one row update
instead of two, with both events). A batch that cannot be
delivered (server down, restarting) stays queued and is sent again once the worker is connected;
a result counts as delivered only when the server answered, i.e. after it committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from jobq.domain.records import record
from jobq.observability.logging_setup import get_logger
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.rpc._gen import worker_service_pb2_grpc

log = get_logger("jobq.worker.reporter")

R = TypeVar("R")

RPC_TIMEOUT_S = 10.0
RETRY_DELAY_S = 0.5
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


OnAckOutcome = Callable[[pb.AttemptOutcome], None]

_CARRIES_THE_START = frozenset({pb.JOB_OUTCOME_SUCCEEDED, pb.JOB_OUTCOME_REFUSED})
"""Outcomes the server applies to an ASSIGNED attempt, so they need no acknowledgement."""


class Reporter:
    """Owns the outgoing reports of one worker across reconnects."""

    def __init__(self, on_ack_rejected: OnAckOutcome) -> None:
        self._acks: list[pb.JobAttempt] = []
        self._results: list[PendingResult] = []
        self._delivered: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._on_ack_rejected = on_ack_rejected
        self._stub: worker_service_pb2_grpc.WorkerServiceStub | None = None
        self._worker_id = ""
        self._connected = asyncio.Event()
        self._all_sent = asyncio.Event()
        self._all_sent.set()

    # --- what the runtime calls ----------------------------------------------------------------

    def connected(self, stub: worker_service_pb2_grpc.WorkerServiceStub, worker_id: str) -> None:
        self._stub, self._worker_id = stub, worker_id
        self._connected.set()
        self._wake.set()

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    def disconnected(self) -> None:
        self._connected.clear()

    def ack(self, job_id: str, attempt: int) -> None:
        self._acks.append(pb.JobAttempt(job_id=job_id, attempt=attempt))
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

    def forget(self) -> None:
        """Drop everything unsent: the server declared us lost and retries those jobs itself."""
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
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._connected.wait()
            if self._acks and not self._results:
                await asyncio.sleep(ACK_LINGER_S)
            # Take the results before sending the acknowledgements: a job is acknowledged
            # before its result is queued, so every result taken here has its acknowledgement
            # in this or an earlier AckJobs call, never a later one, or is a success whose
            # acknowledgement it replaces.
            results, self._results = self._results, []
            self._fold_acknowledgements(results)
            if not await self._send_acks():
                self._results = results + self._results
                await asyncio.sleep(RETRY_DELAY_S)
                self._wake.set()
            elif not await self._send_results(results):
                await asyncio.sleep(RETRY_DELAY_S)
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
        reply = await self._call(
            lambda stub: stub.AckJobs(
                pb.AckJobsRequest(worker_id=self._worker_id, jobs=batch), timeout=RPC_TIMEOUT_S
            )
        )
        if reply is None:
            self._acks = batch + self._acks
            return False
        for outcome in reply.outcomes:
            if not outcome.accepted:
                self._on_ack_rejected(outcome)
        return True

    async def _send_results(self, batch: list[PendingResult]) -> bool:
        if not batch:
            return True
        request = pb.ReportResultsRequest(
            worker_id=self._worker_id,
            results=[
                pb.ReportResultRequest(
                    job_id=r.job_id,
                    attempt=r.attempt,
                    outcome=r.outcome,
                    result=r.result,
                    error_message=r.error_message,
                )
                for r in batch
            ],
        )
        reply = await self._call(lambda stub: stub.ReportResults(request, timeout=RPC_TIMEOUT_S))
        if reply is None:
            self._results = batch + self._results
            return False
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

    async def _call(
        self, send: Callable[[worker_service_pb2_grpc.WorkerServiceStub], Awaitable[R]]
    ) -> R | None:
        stub = self._stub
        if stub is None:
            return None
        try:
            return await send(stub)
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "cannot deliver reports yet",
                action="worker.report_failed",
                code=exc.code().name,
                error=exc.details(),
            )
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                self.disconnected()  # the server forgot us: wait for re-registration
            return None
