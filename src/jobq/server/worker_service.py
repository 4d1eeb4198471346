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
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import grpc

from jobq.domain.errors import FailedPrecondition, InvalidArgument, WorkerSuperseded
from jobq.domain.records import Assignment, AttemptRef, AttemptResult, Worker
from jobq.domain.states import Reason, WorkerStatus
from jobq.domain.validation import check_payload_size, check_queue_name, parse_uuid
from jobq.observability.correlation import log_context
from jobq.observability.logging_setup import get_logger
from jobq.rpc import convert
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.rpc._gen import worker_service_pb2_grpc
from jobq.server.dispatcher import Dispatcher
from jobq.server.incarnations import KnownIncarnations
from jobq.server.lifecycle import Lifecycle
from jobq.server.reports import ReportItem, ReportKind, ReportWriter
from jobq.server.rpc_handler import RpcObserver, rpc
from jobq.server.worker_registry import AttemptKey, ConnectedWorker, WorkerRegistry
from jobq.storage.stores import JobStore, WorkerStore

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = "WorkerService"
log = get_logger("jobq.workers")

MAX_CONCURRENCY = 1024
MAX_QUEUES = 100
MAX_HOSTNAME = 255
MAX_ERROR_MESSAGE = 64 * 1024
MAX_BATCH_ITEMS = 10_000
MAX_KNOWN_WORKERS = 10_000
"""Workers whose incarnation is remembered (to skip a lookup per report); the oldest are
forgotten beyond this, and looked up again if they report."""
NO_INCARNATION = (
    "no incarnation presented: register first and present the incarnation RegisterWorker "
    "returns (a jq-worker older than this jq-server does not; upgrade it)"
)

_OUTCOME_KIND = {
    pb.JOB_OUTCOME_SUCCEEDED: ReportKind.SUCCESS,
    pb.JOB_OUTCOME_FAILED: ReportKind.FAILURE,
    pb.JOB_OUTCOME_REFUSED: ReportKind.REFUSAL,
    pb.JOB_OUTCOME_SHUTDOWN: ReportKind.SHUTDOWN,
}


class WorkerServicer(worker_service_pb2_grpc.WorkerServiceServicer):
    def __init__(
        self,
        workers: WorkerStore,
        jobs: JobStore,
        registry: WorkerRegistry,
        dispatcher: Dispatcher,
        reports: ReportWriter,
        lifecycle: Lifecycle,
        *,
        heartbeat_timeout_s: float,
        max_result_bytes: int,
        observer: RpcObserver,
    ) -> None:
        self._workers = workers
        self._jobs = jobs
        self._registry = registry
        self._dispatcher = dispatcher
        self._reports = reports
        self._lifecycle = lifecycle
        self._heartbeat_timeout_s = heartbeat_timeout_s
        # A whole number of seconds (the field predates sub-second timeouts); the worker uses
        # it only as an upper bound of its own interval, and the timeout itself, sent as is,
        # for when to stop its jobs.
        self._heartbeat_interval_s = max(1, int(heartbeat_timeout_s // 3))
        self._max_result_bytes = max_result_bytes
        self._known = KnownIncarnations(MAX_KNOWN_WORKERS)
        self.observer = observer

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
            registration = await self._workers.worker_register(
                worker_id, hostname, request.concurrency, queues, presented
            )
        except WorkerSuperseded:
            self._superseded(worker_id, presented)
            raise
        incarnation = registration.incarnation
        self._known.remember(worker_id, incarnation)
        # A stream of the previous process may still be open here (a zombie whose connection
        # has not broken yet): it gets nothing more. Its slots are freed with the released
        # claims' transitions.
        self._registry.close_superseded(worker_id, incarnation)
        self._lifecycle.publish(registration.released)
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
        incarnation = _incarnation(request.incarnation)
        try:
            worker = await self._workers.worker_heartbeat(
                worker_id, incarnation, max(0, request.active_job_count)
            )
        except WorkerSuperseded:
            self._superseded(worker_id, incarnation)
            raise
        self._known.remember(worker_id, incarnation)
        connected = self._registry.get(worker_id)
        commands: list[pb.WorkerCommand] = []
        if worker.status is WorkerStatus.DRAINING:
            commands.append(pb.WORKER_COMMAND_DRAIN)
            if connected is not None:
                connected.draining = True
        if worker.shutdown_requested:
            commands.append(pb.WORKER_COMMAND_SHUTDOWN)
        if connected is not None and connected.incarnation == incarnation:
            running = {(parse_uuid(r.job_id), r.attempt) for r in request.running}
            stale = connected.reconcile(running)
            if stale:
                await self._release_unheld(worker_id, set(stale))
                self._dispatcher.wake()
        return pb.HeartbeatResponse(commands=commands)

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
        if refs:
            await self.release_undelivered_refs(refs)

    @rpc(SERVICE)
    async def Deregister(
        self, request: pb.DeregisterRequest, context: Context
    ) -> pb.DeregisterResponse:
        worker_id = parse_uuid(request.worker_id, "worker id")
        incarnation = _incarnation(request.incarnation)
        try:
            _, released = await self._workers.worker_deregister(worker_id, incarnation)
        except WorkerSuperseded:
            self._superseded(worker_id, incarnation)
            raise
        connected = self._registry.get(worker_id)
        if connected is not None and connected.incarnation == incarnation:
            connected.close()
        self._lifecycle.publish(released)
        self._known.forget(worker_id)
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
        incarnation = _incarnation(request.incarnation)
        worker = await self._workers.worker_get(worker_id)
        self._check_incarnation(worker, incarnation)
        if worker.status is WorkerStatus.OFFLINE:
            raise FailedPrecondition(f"worker {worker_id} is OFFLINE; register again")
        # Every claim the worker id holds is this process's: a registration of a new process
        # released its predecessor's in the same transaction that stored its incarnation.
        held = await self._jobs.jobs_held_by_worker(worker_id)
        connected, previous = self._registry.attach(
            worker_id,
            worker.queues,
            worker.concurrency,
            held=[(ref.job_id, ref.attempt) for ref in held],
            draining=worker.status is WorkerStatus.DRAINING,
            incarnation=incarnation,
        )
        if previous is not None:
            previous.close()
        self._dispatcher.wake()
        log.info("job stream opened", action="worker.stream_opened", worker_id=str(worker_id))
        try:
            if batched:
                await self._pump_batches(connected, context)
            else:
                await self._pump(connected, context)
        finally:
            self._registry.detach(connected)
            leftovers = connected.take_undelivered()
            if leftovers:
                await self.release_undelivered(leftovers)
            log.info("job stream closed", action="worker.stream_closed", worker_id=str(worker_id))

    async def _pump(self, connected: ConnectedWorker, context: Context) -> None:
        """Write assignments to the stream, one message each, until it is closed or fails."""
        while True:
            assignment = await connected.outbox.get()
            if assignment is None:
                return
            await self._write(connected, context, [assignment], batched=False)

    async def _pump_batches(self, connected: ConnectedWorker, context: Context) -> None:
        """Write every assignment waiting at once as one message, until closed or failed."""
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
                await self._write(connected, context, batch, batched=True)
            if closed:
                return

    async def _write(
        self,
        connected: ConnectedWorker,
        context: Context,
        assignments: list[Assignment],
        *,
        batched: bool,
    ) -> None:
        messages = [convert.assignment_to_proto(a) for a in assignments]
        try:
            if batched:
                await context.write(pb.JobAssignmentBatch(assignments=messages))
            else:
                await context.write(messages[0])
        except Exception:
            # The worker is gone: these never reached it, give them back at once.
            for a in assignments:
                connected.in_flight.pop((a.job.job_id, a.job.attempt), None)
            await self.release_undelivered(assignments)
            raise

    async def release_undelivered(self, assignments: list[Assignment]) -> None:
        """Assignments that never reached their worker go back to PENDING without using a
        retry (reason DELIVERY_FAILED)."""
        await self.release_undelivered_refs(
            [a.ref for a in assignments if a.job.worker_id is not None]
        )

    async def release_undelivered_refs(self, refs: list[AttemptRef]) -> None:
        outcome = await self._jobs.jobs_release(refs, Reason.DELIVERY_FAILED)
        self._lifecycle.publish(outcome.transitions)
        self._dispatcher.wake()

    # --- reports -------------------------------------------------------------------------------

    @rpc(SERVICE)
    async def AckJobs(self, request: pb.AckJobsRequest, context: Context) -> pb.AckJobsResponse:
        worker_id = await self._current_worker(request.worker_id, request.incarnation)
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
        worker_id = await self._current_worker(request.worker_id, request.incarnation)
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
        worker_id = await self._current_worker(request.worker_id, request.incarnation)
        if len(request.results) > MAX_BATCH_ITEMS:
            raise InvalidArgument(f"at most {MAX_BATCH_ITEMS} results per call")
        items = []
        for index, item in enumerate(request.results):
            if item.worker_id and item.worker_id != request.worker_id:
                raise InvalidArgument(f"result {index} names another worker than the batch")
            items.append(self._report_item(item, worker_id))
        results = await self._reports.report(items)
        return pb.ReportResultsResponse(outcomes=_outcomes(request.results, results))

    def _report_item(self, request: pb.ReportResultRequest, worker_id: UUID) -> ReportItem:
        kind = _OUTCOME_KIND.get(request.outcome)
        if kind is None:
            raise InvalidArgument("outcome must be SUCCEEDED, FAILED, REFUSED or SHUTDOWN")
        check_payload_size(request.result, self._max_result_bytes)
        return ReportItem(
            kind,
            AttemptRef(
                parse_uuid(request.job_id), request.attempt, worker_id, _claim_id(request.claim_id)
            ),
            result=request.result,
            error_message=request.error_message[:MAX_ERROR_MESSAGE],
        )

    async def _current_worker(self, raw_id: str, raw_incarnation: str) -> UUID:
        """The worker's id, after checking that the calling process is its current
        incarnation: against this replica's memory while the database confirmed it recently
        (see KnownIncarnations), else against the database."""
        worker_id = parse_uuid(raw_id, "worker id")
        incarnation = _incarnation(raw_incarnation)
        if not self._known.confirmed(worker_id, incarnation):
            worker = await self._workers.worker_get(worker_id)  # WorkerNotFound
            self._check_incarnation(worker, incarnation)
        return worker_id

    def _check_incarnation(self, worker: Worker, incarnation: UUID) -> None:
        """Refuse a call of any process but the worker's current one (remembering the
        confirmation when it is)."""
        if worker.incarnation == incarnation:
            self._known.remember(worker.worker_id, incarnation)
            return
        self._superseded(worker.worker_id, incarnation)
        if worker.incarnation is None:  # registered by an older jq-server: register again
            raise FailedPrecondition(
                f"worker {worker.worker_id} has no registered process; register again"
            )
        raise WorkerSuperseded(worker.worker_id)

    def _superseded(self, worker_id: UUID, incarnation: UUID | None) -> None:
        """A call of a process that is not the worker's current one was refused: forget what
        this replica remembered of the worker, and close that process's stream if it is open
        here (it would get no claims anyway, see jobs_claim)."""
        self._known.forget(worker_id)
        connected = self._registry.get(worker_id)
        if connected is not None and connected.incarnation == incarnation:
            connected.close()


def _incarnation(raw: str) -> UUID:
    """The incarnation a call presents; FAILED_PRECONDITION without one (a process that has not
    registered, or a jq-worker from before incarnations)."""
    if not raw:
        raise FailedPrecondition(NO_INCARNATION)
    return parse_uuid(raw, "incarnation")


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
