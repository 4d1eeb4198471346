"""A test worker that speaks the WorkerService protocol directly (no jq-worker process).

Like jq-worker it registers without an incarnation the first time (a new process) and keeps the
one the server issues, presenting it on every later call; every acknowledgement and report of
an assignment carries the assignment's claim id. Tests that play a restarted process clear
`incarnation` (or build a new ProtocolWorker with the same worker_id); tests that play an old
or lying worker pass `incarnation=` or `claim_id=` to a call to override what it presents."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import grpc

from jobq.rpc._gen import worker_service_pb2 as wpb
from support.server_harness import Client


@dataclass
class ProtocolWorker:
    """Registers, opens the assignment stream and collects what arrives."""

    client: Client
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 4
    worker_id: str = ""
    incarnation: str = ""
    """What RegisterWorker issued this "process"; empty before its first registration."""
    received: asyncio.Queue[wpb.JobAssignment] = field(default_factory=asyncio.Queue)
    _stream_task: asyncio.Task[None] | None = None
    _call: grpc.aio.UnaryStreamCall | None = None  # type: ignore[type-arg]

    async def register(self) -> str:
        reply = await self.client.workers.RegisterWorker(
            wpb.RegisterWorkerRequest(
                worker_id=self.worker_id,
                hostname="test",
                concurrency=self.concurrency,
                queues=list(self.queues),
                incarnation=self.incarnation,
            ),
            timeout=10,
        )
        self.worker_id = reply.worker_id
        self.incarnation = reply.incarnation
        return self.worker_id

    async def open_stream(self) -> None:
        self._call = self.client.workers.StreamJobs(
            wpb.StreamJobsRequest(worker_id=self.worker_id, incarnation=self.incarnation)
        )
        self._stream_task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._call is not None
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for assignment in self._call:
                await self.received.put(assignment)

    async def start(self) -> ProtocolWorker:
        await self.register()
        await self.open_stream()
        return self

    async def take(self, n: int, within: float = 10.0) -> list[wpb.JobAssignment]:
        """The next `n` assignments, failing the test if they do not arrive in time."""
        items = []
        async with asyncio.timeout(within):
            for _ in range(n):
                items.append(await self.received.get())
        return items

    async def nothing_more(self, wait: float = 0.5) -> bool:
        """True when no assignment arrives within `wait` seconds."""
        try:
            await asyncio.wait_for(self.received.get(), timeout=wait)
        except TimeoutError:
            return True
        return False

    def _incarnation(self, override: str | None) -> str:
        return self.incarnation if override is None else override

    async def ack(
        self, assignments: list[wpb.JobAssignment], *, incarnation: str | None = None
    ) -> wpb.AckJobsResponse:
        return await self.client.workers.AckJobs(
            wpb.AckJobsRequest(
                worker_id=self.worker_id,
                incarnation=self._incarnation(incarnation),
                jobs=[attempt_of(a) for a in assignments],
            ),
            timeout=10,
        )

    async def report(
        self,
        assignment: wpb.JobAssignment,
        outcome: int = wpb.JOB_OUTCOME_SUCCEEDED,
        result: bytes = b"",
        error: str = "",
        *,
        claim_id: str | None = None,
        incarnation: str | None = None,
    ) -> wpb.ReportResultResponse:
        return await self.client.workers.ReportResult(
            wpb.ReportResultRequest(
                worker_id=self.worker_id,
                incarnation=self._incarnation(incarnation),
                job_id=assignment.job_id,
                attempt=assignment.attempt,
                claim_id=assignment.claim_id if claim_id is None else claim_id,
                outcome=outcome,  # type: ignore[arg-type]
                result=result,
                error_message=error,
            ),
            timeout=10,
        )

    async def refuse(self, assignment: wpb.JobAssignment, error: str) -> wpb.ReportResultResponse:
        """Report the attempt refused, as jq-worker does for a job it will never run: without
        acknowledging its start first."""
        return await self.report(assignment, wpb.JOB_OUTCOME_REFUSED, error=error)

    async def run(self, assignments: list[wpb.JobAssignment], result: bytes = b"ok") -> None:
        """Acknowledge and complete assignments successfully."""
        await self.ack(assignments)
        await self.report_many(assignments, result=result)

    async def report_many(
        self,
        assignments: list[wpb.JobAssignment],
        outcome: int = wpb.JOB_OUTCOME_SUCCEEDED,
        result: bytes = b"",
        *,
        incarnation: str | None = None,
    ) -> wpb.ReportResultsResponse:
        """ReportResults: the same outcome for every assignment, each with its claim id."""
        return await self.client.workers.ReportResults(
            wpb.ReportResultsRequest(
                worker_id=self.worker_id,
                incarnation=self._incarnation(incarnation),
                results=[
                    wpb.ReportResultRequest(
                        job_id=a.job_id,
                        attempt=a.attempt,
                        claim_id=a.claim_id,
                        outcome=outcome,  # type: ignore[arg-type]
                        result=result,
                    )
                    for a in assignments
                ],
            ),
            timeout=10,
        )

    async def heartbeat(
        self, running: list[wpb.JobAssignment] | None = None, *, incarnation: str | None = None
    ) -> wpb.HeartbeatResponse:
        return await self.client.workers.Heartbeat(
            wpb.HeartbeatRequest(
                worker_id=self.worker_id,
                incarnation=self._incarnation(incarnation),
                active_job_count=len(running or []),
                running=[attempt_of(a) for a in running or []],
            ),
            timeout=10,
        )

    async def deregister(self, *, incarnation: str | None = None) -> wpb.DeregisterResponse:
        return await self.client.workers.Deregister(
            wpb.DeregisterRequest(
                worker_id=self.worker_id, incarnation=self._incarnation(incarnation)
            ),
            timeout=10,
        )

    async def serve(self, executions: dict[str, int]) -> None:
        """Run whatever arrives (ack, then report success), counting each job id's runs in
        `executions`, until cancelled. Batches whatever is waiting, as a real worker would."""
        while True:
            batch = [await self.received.get()]
            while not self.received.empty() and len(batch) < self.concurrency:
                batch.append(self.received.get_nowait())
            for assignment in batch:
                executions[assignment.job_id] = executions.get(assignment.job_id, 0) + 1
            await self.run(batch)

    async def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._stream_task is not None:
            self._stream_task.cancel()
            await asyncio.gather(self._stream_task, return_exceptions=True)


def attempt_of(assignment: wpb.JobAssignment) -> wpb.JobAttempt:
    """The fencing token of an assignment, as AckJobs and Heartbeat carry it."""
    return wpb.JobAttempt(
        job_id=assignment.job_id, attempt=assignment.attempt, claim_id=assignment.claim_id
    )
