"""WorkerService: registration, heartbeats, the assignment stream and reports (SPEC §4, §5).

Every process registered under a worker id is an incarnation of it: RegisterWorker issues one
to a process registering for the first time (and releases whatever the worker id held, left by
a previous process), and every later call of the process presents it. A call presenting another
incarnation comes from a superseded process: it is refused (WorkerSuperseded,
FAILED_PRECONDITION) and changes nothing, and the process stops.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import grpc

from jobq.domain.errors import FailedPrecondition, InvalidArgument, WorkerSuperseded
from jobq.domain.records import AttemptRef, AttemptResult
from jobq.domain.states import WorkerStatus
from jobq.domain.validation import check_payload_size, check_queue_name, parse_uuid
from jobq.observability.correlation import log_context
from jobq.observability.logging_setup import get_logger
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.rpc._gen import worker_service_pb2_grpc
from jobq.server.incarnations import IncarnationGate, presented_incarnation
from jobq.server.job_stream import JobStreams
from jobq.server.lifecycle import Lifecycle
from jobq.server.progress import latest_per_job, progress_reports
from jobq.server.reports import ReportItem, ReportKind, ReportWriter
from jobq.server.rpc_handler import RpcObserver, rpc
from jobq.server.undelivered import Undelivered
from jobq.server.worker_capacity import AttemptKey, WorkerCapacity
from jobq.storage.stores import JobStore, WorkerStore

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = "WorkerService"
log = get_logger("jobq.workers")

HeartbeatHook = Callable[[uuid.UUID, int, list[uuid.UUID]], None]
"""Told of each accepted heartbeat: (worker id, active job count, the jobs it holds)."""

MAX_CONCURRENCY = 1024
MAX_QUEUES = 100
MAX_HOSTNAME = 255
MAX_ERROR_MESSAGE = 64 * 1024
MAX_BATCH_ITEMS = 10_000
MAX_RUNNING_LISTED = 10_000
"""A heartbeat lists what the worker holds: its running jobs and its unanswered results."""

_OUTCOME_KIND = {
    pb.JOB_OUTCOME_SUCCEEDED: ReportKind.SUCCESS,
    pb.JOB_OUTCOME_FAILED: ReportKind.FAILURE,
    pb.JOB_OUTCOME_REFUSED: ReportKind.REFUSAL,
    pb.JOB_OUTCOME_SHUTDOWN: ReportKind.SHUTDOWN,
    pb.JOB_OUTCOME_CANCELLED: ReportKind.CANCELLED,
}


class WorkerServicer(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(
        self,
        workers: WorkerStore,
        jobs: JobStore,
        capacity: WorkerCapacity,
        streams: JobStreams,
        gate: IncarnationGate,
        reports: ReportWriter,
        lifecycle: Lifecycle,
        undelivered: Undelivered,
        *,
        heartbeat_timeout_s: float,
        max_result_bytes: int,
        observer: RpcObserver,
        on_heartbeat: HeartbeatHook | None = None,
    ) -> None:
        """`on_heartbeat(worker_id, active_job_count, job_ids)` hears every accepted
        heartbeat (the Kafka worker.heartbeat topic, when events are on)."""
        self._workers = workers
        self._jobs = jobs
        self._capacity = capacity
        self._streams = streams
        self._gate = gate
        self._reports = reports
        self._lifecycle = lifecycle
        self._undelivered = undelivered
        self._heartbeat_timeout_s = heartbeat_timeout_s
        # A whole number of seconds (the field predates sub-second timeouts); the worker uses
        # it only as an upper bound of its own interval, and the timeout itself, sent as is,
        # for when to stop its jobs.
        self._heartbeat_interval_s = max(1, int(heartbeat_timeout_s // 3))
        self._max_result_bytes = max_result_bytes
        self.observer = observer
        self._on_heartbeat = on_heartbeat

    # --- registration and liveness -----------------------------------------------------------

    @rpc(SERVICE)
    async def RegisterWorker(
        self, request: pb.RegisterWorkerRequest, context: Context
    ) -> pb.RegisterWorkerResponse:
        worker_id = (
            parse_uuid(request.worker_id, "worker id") if request.worker_id else uuid.uuid4()
        )
        if not 1 <= request.concurrency <= MAX_CONCURRENCY:
            raise InvalidArgument(
                f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {request.concurrency}"
            )
        if not request.queues:
            raise InvalidArgument("a worker must serve at least one queue")
        if len(request.queues) > MAX_QUEUES:
            raise InvalidArgument(f"a worker serves at most {MAX_QUEUES} queues")
        queues = list(dict.fromkeys(check_queue_name(q) for q in request.queues))
        hostname = request.hostname[:MAX_HOSTNAME] or socket.gethostname()
        presented = parse_uuid(request.incarnation, "incarnation") if request.incarnation else None
        try:
            with self._lifecycle.write() as changes:
                registration = await self._workers.worker_register(
                    worker_id, hostname, request.concurrency, queues, presented
                )
                changes.applied(registration.released)
        except WorkerSuperseded:
            self._gate.superseded(worker_id, presented)
            raise
        incarnation = registration.incarnation
        self._gate.known.remember(worker_id, incarnation)
        # A stream of the previous process may still be open here (a zombie whose connection
        # has not broken yet): it gets nothing more. Its slots are freed with the released
        # claims' transitions.
        self._capacity.close_superseded(worker_id, incarnation)
        with log_context(worker_id=str(worker_id)):
            log.info(
                "worker registered",
                action="worker.registered",
                hostname=hostname,
                concurrency=registration.worker.concurrency,
                queues=queues,
                incarnation=str(incarnation),
                new_process=presented is None,
            )
            if registration.restarted:
                log.warning(
                    "worker restarted: the jobs its previous process held were released",
                    action="worker.restarted",
                    released=len({t.job_id for t in registration.released}),
                )
        return pb.RegisterWorkerResponse(
            worker_id=str(worker_id),
            heartbeat_interval_s=self._heartbeat_interval_s,
            incarnation=str(incarnation),
            heartbeat_timeout_s=self._heartbeat_timeout_s,
        )

    @rpc(SERVICE)
    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        worker_id = parse_uuid(request.worker_id, "worker id")
        incarnation = presented_incarnation(request.incarnation)
        if len(request.running) > MAX_RUNNING_LISTED:
            raise InvalidArgument(f"a heartbeat lists at most {MAX_RUNNING_LISTED} running jobs")
        running = {(parse_uuid(r.job_id, "job id"), r.attempt) for r in request.running}
        try:
            worker = await self._workers.worker_heartbeat(
                worker_id, incarnation, max(0, request.active_job_count)
            )
        except WorkerSuperseded:
            self._gate.superseded(worker_id, incarnation)
            raise
        self._gate.known.remember(worker_id, incarnation)
        commands: list[pb.WorkerCommand] = []
        if worker.status is WorkerStatus.DRAINING:
            commands.append(pb.WORKER_COMMAND_DRAIN)
            self._capacity.drain(worker_id)
        if worker.shutdown_requested:
            commands.append(pb.WORKER_COMMAND_SHUTDOWN)
        stale = self._capacity.reconcile(worker_id, incarnation, running)
        if stale:
            await self._release_unheld(worker_id, set(stale))
        if self._on_heartbeat is not None:
            self._on_heartbeat(worker_id, worker.active_job_count, [job for job, _ in running])
        # Cancels requested for what the worker runs, repeated at every beat until the job
        # ends: the fallback for a notification or stream write that never reached it (one
        # probe of an index that is empty while nobody cancels).
        cancels = [
            pb.JobAttempt(job_id=str(job_id), attempt=attempt)
            for job_id, attempt in await self._jobs.jobs_cancel_requested_for_worker(worker_id)
        ]
        return pb.HeartbeatResponse(commands=commands, cancels=cancels)

    async def _release_unheld(self, worker_id: uuid.UUID, stale: set[AttemptKey]) -> None:
        """Claims this worker has held for longer than a heartbeat's grace without listing
        them: an assignment written to a connection that was already dead (a replica resumed
        after a pause writes before it notices the worker reconnected). Nothing tells the
        server it was lost, so without this the job would wait for the assignment timeout.
        The worker lists everything it holds, finished jobs whose results are unanswered
        included, so what it does not list it never had or no longer has."""
        refs = [
            ref
            for ref in await self._jobs.jobs_held_by_worker(worker_id)
            if (ref.job_id, ref.attempt) in stale
        ]
        await self._undelivered.give_back_refs(refs)

    @rpc(SERVICE)
    async def Deregister(
        self, request: pb.DeregisterRequest, context: Context
    ) -> pb.DeregisterResponse:
        worker_id = parse_uuid(request.worker_id, "worker id")
        incarnation = presented_incarnation(request.incarnation)
        try:
            with self._lifecycle.write() as changes:
                _, released = await self._workers.worker_deregister(worker_id, incarnation)
                changes.applied(released)
        except WorkerSuperseded:
            self._gate.superseded(worker_id, incarnation)
            raise
        self._capacity.close(worker_id, incarnation)
        self._gate.known.forget(worker_id)
        log.info(
            "worker deregistered",
            action="worker.deregistered",
            worker_id=str(worker_id),
            released=len(released),
        )
        return pb.DeregisterResponse()

    # --- the assignment stream -----------------------------------------------------------------

    @rpc(SERVICE)
    async def StreamJobs(self, request: pb.StreamJobsRequest, context: Context) -> None:
        await self._stream(request, context, batched=False)

    @rpc(SERVICE)
    async def StreamJobBatches(self, request: pb.StreamJobsRequest, context: Context) -> None:
        await self._stream(request, context, batched=True)

    async def _stream(self, request: pb.StreamJobsRequest, context: Context, batched: bool) -> None:
        worker_id = parse_uuid(request.worker_id, "worker id")
        incarnation = presented_incarnation(request.incarnation)
        await self._streams.serve(worker_id, incarnation, context, batched=batched)

    # --- reports -------------------------------------------------------------------------------

    @rpc(SERVICE)
    async def AckJobs(self, request: pb.AckJobsRequest, context: Context) -> pb.AckJobsResponse:
        worker_id = await self._gate.current_worker(request.worker_id, request.incarnation)
        if len(request.jobs) > MAX_BATCH_ITEMS:
            raise InvalidArgument(f"at most {MAX_BATCH_ITEMS} acknowledgements per call")
        items = [
            ReportItem(
                ReportKind.ACK,
                AttemptRef(parse_uuid(j.job_id), j.attempt, worker_id, _claim_id(j.claim_id)),
            )
            for j in request.jobs
        ]
        results = await self._reports.report(items)
        return pb.AckJobsResponse(outcomes=_outcomes(request.jobs, results))

    @rpc(SERVICE)
    async def ReportResult(
        self, request: pb.ReportResultRequest, context: Context
    ) -> pb.ReportResultResponse:
        worker_id = await self._gate.current_worker(request.worker_id, request.incarnation)
        item = self._report_item(request, worker_id)
        [result] = await self._reports.report([item])
        if not result.accepted:
            await self._jobs.job_get(item.ref.job_id)  # NOT_FOUND for an unknown job
            raise FailedPrecondition(
                f"attempt {item.ref.attempt} of job {item.ref.job_id} is no longer current"
            )
        return pb.ReportResultResponse()

    @rpc(SERVICE)
    async def ReportResults(
        self, request: pb.ReportResultsRequest, context: Context
    ) -> pb.ReportResultsResponse:
        worker_id = await self._gate.current_worker(request.worker_id, request.incarnation)
        if len(request.results) > MAX_BATCH_ITEMS:
            raise InvalidArgument(f"at most {MAX_BATCH_ITEMS} results per call")
        items = []
        for index, item in enumerate(request.results):
            if item.worker_id and item.worker_id != request.worker_id:
                raise InvalidArgument(f"result {index} names another worker than the batch")
            items.append(self._report_item(item, worker_id))
        results = await self._reports.report(items)
        return pb.ReportResultsResponse(outcomes=_outcomes(request.results, results))

    @rpc(SERVICE)
    async def ReportProgress(
        self, request: pb.ReportProgressRequest, context: Context
    ) -> pb.ReportProgressResponse:
        worker_id = await self._gate.current_worker(request.worker_id, request.incarnation)
        reports = progress_reports(request, worker_id)
        applied = await self._jobs.jobs_record_progress(latest_per_job(reports))
        return pb.ReportProgressResponse(
            outcomes=[
                pb.AttemptOutcome(
                    job_id=item.job_id,
                    attempt=item.attempt,
                    accepted=(report.ref.job_id, item.attempt) in applied,
                    message=""
                    if (report.ref.job_id, item.attempt) in applied
                    else "not a running attempt held by this worker under this claim",
                )
                for item, report in zip(request.items, reports, strict=True)
            ]
        )

    def _report_item(self, request: pb.ReportResultRequest, worker_id: UUID) -> ReportItem:
        kind = _OUTCOME_KIND.get(request.outcome)
        if kind is None:
            raise InvalidArgument(
                "outcome must be SUCCEEDED, FAILED, REFUSED, SHUTDOWN or CANCELLED"
            )
        check_payload_size(request.result, self._max_result_bytes)
        return ReportItem(
            kind,
            AttemptRef(
                parse_uuid(request.job_id), request.attempt, worker_id, _claim_id(request.claim_id)
            ),
            result=request.result,
            error_message=request.error_message[:MAX_ERROR_MESSAGE],
        )


def _claim_id(raw: str) -> UUID | None:
    """A presented claim id; None when empty, which no claim matches (a report of a jq-worker
    from before claim ids is refused as stale: see the decision in sql/jobs.sql's head)."""
    return parse_uuid(raw, "claim id") if raw else None


def _outcomes(
    requested: Sequence[pb.JobAttempt | pb.ReportResultRequest],
    results: Sequence[AttemptResult],
) -> list[pb.AttemptOutcome]:
    """One outcome per reported attempt, in request order. The job ids are the request's own
    strings (already checked to be UUIDs), not formatted again from each result."""
    return [
        pb.AttemptOutcome(
            job_id=item.job_id, attempt=r.attempt, accepted=r.accepted, message=r.message
        )
        for item, r in zip(requested, results, strict=True)
    ]
