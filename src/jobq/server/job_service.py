"""JobService: submit, inspect, cancel and retry jobs (SPEC §5). Thin: parse, call, convert."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import grpc

from jobq.config import LimitsSettings
from jobq.domain.errors import InvalidArgument, NotFound, PrerequisiteNotFound, QueueNotFound
from jobq.domain.states import Reason
from jobq.domain.validation import check_queue_name, parse_uuid
from jobq.observability import tracing
from jobq.observability.logging_setup import get_logger
from jobq.rpc import convert
from jobq.rpc._gen import job_service_pb2 as pb
from jobq.rpc._gen import job_service_pb2_grpc
from jobq.server.audit import AuditTrail
from jobq.server.caller import current_caller
from jobq.server.job_watch import MAX_WATCHED, JobWatch
from jobq.server.lifecycle import Lifecycle
from jobq.server.rpc_handler import RpcObserver, rpc
from jobq.server.submission import Submitter, new_job_from_request
from jobq.server.submit_stream import SubmitStreams
from jobq.server.submit_tracing import traced_insert
from jobq.storage.stores import JobEventStore, JobStore

Context = grpc.aio.ServicerContext[Any, Any]
log = get_logger("jobq.jobs")
SERVICE = "JobService"
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT = 100, 1000


class JobServicer(job_service_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        jobs: JobStore,
        events: JobEventStore,
        submitter: Submitter,
        lifecycle: Lifecycle,
        limits: LimitsSettings,
        observer: RpcObserver,
        audit: AuditTrail,
        watch: JobWatch,
    ) -> None:
        self._jobs = jobs
        self._events = events
        self._submitter = submitter
        self._lifecycle = lifecycle
        self._limits = limits
        self.observer = observer
        self._audit = audit
        self._watch = watch
        self._submit_streams = SubmitStreams()

    @rpc(SERVICE)
    async def SubmitJob(
        self, request: pb.SubmitJobRequest, context: Context
    ) -> pb.SubmitJobResponse:
        job = new_job_from_request(request, self._limits, datetime.now(UTC))
        if tracing.enabled():
            submitted = await traced_insert(
                [job],
                [request],
                context.invocation_metadata(),
                "SubmitJob",
                lambda traced: self._submitter.submit(traced[0]),
            )
        else:
            submitted = await self._submitter.submit(job)
        return pb.SubmitJobResponse(job_id=str(submitted.job_id), existing=submitted.existing)

    @rpc(SERVICE)
    async def SubmitJobs(
        self, request: pb.SubmitJobsRequest, context: Context
    ) -> pb.SubmitJobsResponse:
        metadata = context.invocation_metadata() if tracing.enabled() else None
        ids, existing = await self._submit_batch(request.jobs, metadata)
        return pb.SubmitJobsResponse(job_ids=ids, existing=existing)

    @rpc(SERVICE)
    async def SubmitJobStream(
        self, requests: AsyncIterator[pb.SubmitJobStreamRequest], context: Context
    ) -> None:
        # The stream's metadata (a traceparent) is the parent of its jobs without their own.
        metadata = context.invocation_metadata() if tracing.enabled() else None
        await self._submit_streams.serve(
            requests,
            context.write,
            partial(self._submit_batch, metadata=metadata),
            self.observer,
            SERVICE,
        )

    def close_streams(self) -> None:
        """The server is stopping: end the submit streams once their batches are answered."""
        self._submit_streams.close_all()

    async def _submit_batch(
        self,
        items: Sequence[pb.SubmitJobRequest],
        metadata: Iterable[tuple[str, str | bytes]] | None = None,
    ) -> tuple[list[str], list[bool]]:
        """SubmitJobs' work, for both the call and the stream: all jobs committed or none."""
        if not items:
            raise InvalidArgument("a batch needs at least one job")
        if len(items) > self._limits.max_batch_size:
            raise InvalidArgument(
                f"a batch holds at most {self._limits.max_batch_size} jobs, got {len(items)}"
            )
        now = datetime.now(UTC)
        jobs = []
        for index, item in enumerate(items):
            try:
                jobs.append(new_job_from_request(item, self._limits, now))
            except InvalidArgument as exc:
                raise InvalidArgument(f"job {index}: {exc}") from None
        try:
            if tracing.enabled():
                inserted = await traced_insert(
                    jobs, items, metadata, "SubmitJobs", self._submitter.submit_batch
                )
            else:
                inserted = await self._submitter.submit_batch(jobs)
        except QueueNotFound as exc:
            index = next(i for i, job in enumerate(jobs) if job.queue_name == exc.name)
            raise NotFound(f"job {index}: {exc}") from None
        except PrerequisiteNotFound as exc:
            index = next(i for i, job in enumerate(jobs) if exc.job_id in job.depends_on)
            raise NotFound(f"job {index}: {exc}") from None
        log.debug("jobs submitted", action="job.submitted_batch", count=len(jobs))
        return [str(s.job_id) for s in inserted], [s.existing for s in inserted]

    @rpc(SERVICE)
    async def CancelJob(
        self, request: pb.CancelJobRequest, context: Context
    ) -> pb.CancelJobResponse:
        async with self._audit.recording("job.cancel", request.job_id) as note:
            job_id = parse_uuid(request.job_id)
            with self._lifecycle.write() as changes:
                # Bounded as the column is (V18): a certificate's subject can be long.
                change = await self._jobs.job_cancel(job_id, current_caller().label[:300])
                if not change.requested:  # a request changes no state: nothing to publish
                    changes.operator_changed(change, Reason.CANCELLED)
            job = change.job
            note.detail = f"queue '{job.queue_name}'" + (
                "; cancel requested (RUNNING)" if change.requested else ""
            )
            if change.requested:
                log.info(
                    "cancel of a running job requested",
                    action="job.cancel_requested",
                    job_id=str(job_id),
                    worker_id=str(job.worker_id),
                    cancelled_by=job.cancelled_by,
                )
        return pb.CancelJobResponse(job=convert.job_to_proto(job))

    @rpc(SERVICE)
    async def GetJobStatus(
        self, request: pb.GetJobStatusRequest, context: Context
    ) -> pb.GetJobStatusResponse:
        job = await self._jobs.job_get(parse_uuid(request.job_id))
        return pb.GetJobStatusResponse(job=convert.job_to_proto(job))

    @rpc(SERVICE)
    async def ListJobs(self, request: pb.ListJobsRequest, context: Context) -> pb.ListJobsResponse:
        if request.limit < 0:
            raise InvalidArgument(f"limit must not be negative, got {request.limit}")
        limit = min(request.limit or DEFAULT_LIMIT, MAX_LIMIT)
        queue = check_queue_name(request.queue_name) if request.queue_name else None
        status = convert.job_status_from_proto(request.status)
        if request.status and status is None:
            raise InvalidArgument(f"unknown job status {request.status}")
        page = await self._jobs.jobs_list(
            queue_name=queue, status=status, limit=limit, page_token=request.page_token
        )
        return pb.ListJobsResponse(
            jobs=[convert.job_to_proto(job) for job in page.jobs],
            next_page_token=page.next_page_token,
        )

    @rpc(SERVICE)
    async def GetJobLogs(
        self, request: pb.GetJobLogsRequest, context: Context
    ) -> pb.GetJobLogsResponse:
        events = await self._events.job_events_list(parse_uuid(request.job_id))
        return pb.GetJobLogsResponse(events=[convert.event_to_proto(e) for e in events])

    @rpc(SERVICE)
    async def ListJobEvents(
        self, request: pb.ListJobEventsRequest, context: Context
    ) -> pb.ListJobEventsResponse:
        job_id = parse_uuid(request.job_id) if request.job_id else None
        queue = check_queue_name(request.queue_name) if request.queue_name else None
        if request.after_id < 0:
            raise InvalidArgument(f"after_id must not be negative, got {request.after_id}")
        if request.limit < 0:
            raise InvalidArgument(f"limit must not be negative, got {request.limit}")
        page = await self._events.job_events_page(
            after_id=request.after_id,
            limit=min(request.limit or DEFAULT_EVENTS_LIMIT, MAX_EVENTS_LIMIT),
            job_id=job_id,
            queue_name=queue,
            newest=request.newest,
        )
        return pb.ListJobEventsResponse(
            events=[convert.event_to_proto(e) for e in page.events], last_id=page.last_id
        )

    @rpc(SERVICE)
    async def WatchJobs(self, request: pb.WatchJobsRequest, context: Context) -> None:
        if not request.job_ids:
            raise InvalidArgument("watch at least one job")
        if len(request.job_ids) > MAX_WATCHED:
            raise InvalidArgument(f"watch at most {MAX_WATCHED} jobs per call")
        job_ids = list(dict.fromkeys(parse_uuid(raw, "job id") for raw in request.job_ids))
        async with contextlib.aclosing(self._watch.watch(job_ids)) as ended:
            async for job in ended:
                await context.write(pb.WatchJobsResponse(job=convert.job_to_proto(job)))

    @rpc(SERVICE)
    async def RetryJob(self, request: pb.RetryJobRequest, context: Context) -> pb.RetryJobResponse:
        async with self._audit.recording("job.retry", request.job_id) as note:
            job_id = parse_uuid(request.job_id)
            with self._lifecycle.write() as changes:
                change = await self._jobs.job_retry_manual(job_id)
                changes.operator_changed(change, Reason.MANUAL_RETRY)
            job = change.job
            note.detail = f"queue '{job.queue_name}'"
        return pb.RetryJobResponse(job=convert.job_to_proto(job))
