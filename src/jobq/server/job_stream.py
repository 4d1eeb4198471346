"""The assignment stream of one worker process (StreamJobs, StreamJobBatches): opened, written,
ended.

Opening attaches the worker to WorkerCapacity with the claims it already holds; the dispatcher
then queues assignments on the stream's outbox, which the writer here sends, one message each or
every waiting one at once. An assignment whose write fails, and those still queued when the
stream ends, never reached the worker: they go back at once (Undelivered).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import grpc

from jobq.domain.errors import FailedPrecondition
from jobq.domain.records import Assignment
from jobq.domain.states import WorkerStatus
from jobq.observability.logging_setup import get_logger
from jobq.rpc import convert
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.server.incarnations import IncarnationGate
from jobq.server.undelivered import Undelivered
from jobq.server.worker_capacity import CancelOrder, ConnectedWorker, WorkerCapacity
from jobq.storage.stores import JobStore, WorkerStore

Context = grpc.aio.ServicerContext[Any, Any]
log = get_logger("jobq.workers")


class JobStreams:
    def __init__(
        self,
        workers: WorkerStore,
        jobs: JobStore,
        capacity: WorkerCapacity,
        undelivered: Undelivered,
        gate: IncarnationGate,
    ) -> None:
        self._workers = workers
        self._jobs = jobs
        self._capacity = capacity
        self._undelivered = undelivered
        self._gate = gate

    async def serve(
        self, worker_id: UUID, incarnation: UUID, context: Context, *, batched: bool
    ) -> None:
        """Run the stream of the process `incarnation` until it ends."""
        worker = await self._workers.worker_get(worker_id)
        self._gate.check(worker, incarnation)
        if worker.status is WorkerStatus.OFFLINE:
            raise FailedPrecondition(f"worker {worker_id} is OFFLINE; register again")
        # Every claim the worker id holds is this process's: a registration of a new process
        # released its predecessor's in the same transaction that stored its incarnation.
        held = await self._jobs.jobs_held_by_worker(worker_id)
        connected = self._capacity.attach(
            worker_id,
            worker.queues,
            worker.concurrency,
            held=[(ref.job_id, ref.attempt) for ref in held],
            draining=worker.status is WorkerStatus.DRAINING,
            incarnation=incarnation,
        )
        log.info("job stream opened", action="worker.stream_opened", worker_id=str(worker_id))
        try:
            if batched:
                await self._pump_batches(connected, context)
            else:
                await self._pump(connected, context)
        finally:
            leftovers = self._capacity.detach(connected)
            if leftovers:
                await self._undelivered.give_back(leftovers)
            log.info("job stream closed", action="worker.stream_closed", worker_id=str(worker_id))

    async def _pump(self, connected: ConnectedWorker, context: Context) -> None:
        """Write assignments to the stream, one message each, until it is closed or fails.
        JobAssignment has no room for a cancel: this older stream's workers hear of cancels
        from the heartbeats' answers only."""
        while True:
            assignment = await connected.outbox.get()
            if assignment is None:
                return
            if isinstance(assignment, Assignment):
                await self._write(connected, context, [assignment], [], batched=False)

    async def _pump_batches(self, connected: ConnectedWorker, context: Context) -> None:
        """Write every assignment (and cancel) waiting at once as one message, until closed or
        failed."""
        while True:
            first = await connected.outbox.get()
            batch = [] if first is None else [first]
            closed = first is None
            while not closed and not connected.outbox.empty():
                item = connected.outbox.get_nowait()
                if item is None:
                    closed = True
                else:
                    batch.append(item)
            if batch:
                assignments = [item for item in batch if isinstance(item, Assignment)]
                cancels = (
                    []
                    if len(assignments) == len(batch)  # the usual case: no cancel among them
                    else [item for item in batch if isinstance(item, CancelOrder)]
                )
                await self._write(connected, context, assignments, cancels, batched=True)
            if closed:
                return

    async def _write(
        self,
        connected: ConnectedWorker,
        context: Context,
        assignments: list[Assignment],
        cancels: list[CancelOrder],
        *,
        batched: bool,
    ) -> None:
        messages = [convert.assignment_to_proto(a) for a in assignments]
        try:
            if batched:
                batch = pb.JobAssignmentBatch(assignments=messages)
                if cancels:
                    batch.cancels.extend(
                        pb.JobAttempt(job_id=str(c.job_id), attempt=c.attempt) for c in cancels
                    )
                    log.info(
                        "cancels sent to worker",
                        action="job.cancel_sent",
                        worker_id=str(connected.worker_id),
                        jobs=[str(c.job_id) for c in cancels],
                    )
                await context.write(batch)
            else:
                await context.write(messages[0])
        except Exception:
            # The worker is gone: these never reached it, give them back at once.
            self._capacity.undelivered(connected, assignments)
            await self._undelivered.give_back(assignments)
            raise
