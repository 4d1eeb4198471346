"""A test worker that speaks the WorkerService protocol directly (no jq-worker process)."""

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
            ),
            timeout=10,
        )
        self.worker_id = reply.worker_id
        return self.worker_id

    async def open_stream(self) -> None:
        self._call = self.client.workers.StreamJobs(wpb.StreamJobsRequest(worker_id=self.worker_id))
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

    async def ack(self, assignments: list[wpb.JobAssignment]) -> wpb.AckJobsResponse:
        return await self.client.workers.AckJobs(
            wpb.AckJobsRequest(
                worker_id=self.worker_id,
                jobs=[wpb.JobAttempt(job_id=a.job_id, attempt=a.attempt) for a in assignments],
            ),
            timeout=10,
        )

    async def report(
        self,
        assignment: wpb.JobAssignment,
        outcome: int = wpb.JOB_OUTCOME_SUCCEEDED,
        result: bytes = b"",
        error: str = "",
    ) -> wpb.ReportResultResponse:
        return await self.client.workers.ReportResult(
            wpb.ReportResultRequest(
                worker_id=self.worker_id,
                job_id=assignment.job_id,
                attempt=assignment.attempt,
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
        await self.client.workers.ReportResults(
            wpb.ReportResultsRequest(
                worker_id=self.worker_id,
                results=[
                    wpb.ReportResultRequest(
                        job_id=a.job_id,
                        attempt=a.attempt,
                        outcome=wpb.JOB_OUTCOME_SUCCEEDED,
                        result=result,
                    )
                    for a in assignments
                ],
            ),
            timeout=10,
        )

    async def heartbeat(
        self, running: list[wpb.JobAssignment] | None = None
    ) -> wpb.HeartbeatResponse:
        return await self.client.workers.Heartbeat(
            wpb.HeartbeatRequest(
                worker_id=self.worker_id,
                active_job_count=len(running or []),
                running=[wpb.JobAttempt(job_id=a.job_id, attempt=a.attempt) for a in running or []],
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
