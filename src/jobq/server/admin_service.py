"""AdminService: queues, workers and system status (SPEC §5)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import grpc
from google.protobuf.duration_pb2 import Duration

from jobq import __version__
from jobq.domain.errors import FailedPrecondition, InvalidArgument
from jobq.domain.flow_limits import FlowChange, check_limit, check_rate
from jobq.domain.states import WorkerStatus
from jobq.domain.validation import (
    check_max_interruptions,
    check_max_retries,
    check_queue_name,
    parse_uuid,
)
from jobq.rpc import convert
from jobq.rpc._gen import admin_service_pb2 as pb
from jobq.rpc._gen import admin_service_pb2_grpc, schedules_pb2
from jobq.server.audit import AuditTrail, audit_filters
from jobq.server.rpc_handler import RpcObserver, rpc
from jobq.server.schedule_admin import ScheduleAdmin
from jobq.server.worker_capacity import WorkerCapacity
from jobq.storage.stores import JobStore, QueueStore, WorkerStore

Context = grpc.aio.ServicerContext[Any, Any]
SERVICE = "AdminService"
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT = 20, 100

# name → check returning (state, detail); state None means the component is disabled.
DEGRADED: Final = "degraded"
Health = bool | None | Literal["degraded"]
"""A dependency's state: True healthy, False unhealthy, None not configured, DEGRADED working
but behind (Kafka away while its events wait in PostgreSQL)."""
HealthCheck = Callable[[], Awaitable[tuple[Health, str]]]


def flow_change_from_request(request: pb.SetQueueLimitsRequest) -> FlowChange:
    """The checked FlowChange of a SetQueueLimits request, or InvalidArgument."""
    try:
        max_running = request.max_running if request.HasField("max_running") else None
        key_max_running = request.key_max_running if request.HasField("key_max_running") else None
        check_limit(max_running, "max_running")
        check_limit(key_max_running, "key_max_running")
        rate = convert.rate_from_proto(request.rate) if request.HasField("rate") else None
        key_rate = (
            convert.rate_from_proto(request.key_rate) if request.HasField("key_rate") else None
        )
        if rate is not None:
            check_rate(rate, "rate")
        if key_rate is not None:
            check_rate(key_rate, "key_rate")
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    change = FlowChange(
        max_running=max_running, key_max_running=key_max_running, rate=rate, key_rate=key_rate
    )
    if change.empty:
        raise InvalidArgument(
            "nothing to change: give max_running, key_max_running, rate or key_rate"
        )
    return change


def describe_change(change: FlowChange) -> str:
    """The audit trail's detail of a SetQueueLimits: what was set (0: removed)."""
    parts = []
    for name in ("max_running", "key_max_running", "rate", "key_rate"):
        value = getattr(change, name)
        if value is not None:
            parts.append(f"{name}={value}")
    return ", ".join(parts)


class AdminServicer(admin_service_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        queues: QueueStore,
        workers: WorkerStore,
        jobs: JobStore,
        capacity: WorkerCapacity,
        health_checks: dict[str, HealthCheck],
        started_at: datetime,
        observer: RpcObserver,
        audit: AuditTrail,
        *,
        schedules: ScheduleAdmin,
    ) -> None:
        self._queues = queues
        self._workers = workers
        self._jobs = jobs
        self._capacity = capacity
        self._health_checks = health_checks
        self._started_at = started_at
        self._started_monotonic = time.monotonic()
        self.observer = observer
        self._audit = audit
        self._schedules = schedules

    @rpc(SERVICE)
    async def CreateQueue(
        self, request: pb.CreateQueueRequest, context: Context
    ) -> pb.CreateQueueResponse:
        async with self._audit.recording("queue.create", request.name) as note:
            name = check_queue_name(request.name)
            max_retries = (
                check_max_retries(request.max_retries) if request.HasField("max_retries") else 3
            )
            ttl: int | None = None
            if request.HasField("ttl_seconds") and request.ttl_seconds != 0:
                if not 0 < request.ttl_seconds <= MAX_TTL_SECONDS:
                    raise InvalidArgument(
                        f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS} (0 = none), "
                        f"got {request.ttl_seconds}"
                    )
                ttl = request.ttl_seconds
            max_interruptions = (
                check_max_interruptions(request.max_interruptions)
                if request.HasField("max_interruptions")
                else 3
            )
            note.detail = (
                f"max_retries={max_retries}, ttl_seconds={ttl or 0}, "
                f"max_interruptions={max_interruptions}"
            )
            queue = await self._queues.queue_create(name, max_retries, ttl, max_interruptions)
        return pb.CreateQueueResponse(queue=convert.queue_to_proto(queue))

    @rpc(SERVICE)
    async def DeleteQueue(
        self, request: pb.DeleteQueueRequest, context: Context
    ) -> pb.DeleteQueueResponse:
        async with self._audit.recording("queue.delete", request.name) as note:
            force = "true" if request.force else "false"
            note.detail = f"force={force}"
            deleted = await self._queues.queue_delete(
                check_queue_name(request.name), force=request.force
            )
            note.detail = f"force={force}, deleted {deleted} job(s)"
        return pb.DeleteQueueResponse(deleted_jobs=deleted)

    @rpc(SERVICE)
    async def ListQueues(
        self, request: pb.ListQueuesRequest, context: Context
    ) -> pb.ListQueuesResponse:
        queues = await self._queues.queue_list()
        return pb.ListQueuesResponse(queues=[convert.queue_to_proto(q) for q in queues])

    @rpc(SERVICE)
    async def GetQueueStats(
        self, request: pb.GetQueueStatsRequest, context: Context
    ) -> pb.GetQueueStatsResponse:
        stats = await self._queues.queue_stats(check_queue_name(request.name))
        return pb.GetQueueStatsResponse(stats=convert.queue_stats_to_proto(stats))

    @rpc(SERVICE)
    async def PauseQueue(
        self, request: pb.PauseQueueRequest, context: Context
    ) -> pb.PauseQueueResponse:
        async with self._audit.recording("queue.pause", request.name):
            queue = await self._queues.queue_set_flow(
                check_queue_name(request.name), FlowChange(paused=True)
            )
        return pb.PauseQueueResponse(queue=convert.queue_to_proto(queue))

    @rpc(SERVICE)
    async def ResumeQueue(
        self, request: pb.ResumeQueueRequest, context: Context
    ) -> pb.ResumeQueueResponse:
        async with self._audit.recording("queue.resume", request.name):
            queue = await self._queues.queue_set_flow(
                check_queue_name(request.name), FlowChange(paused=False)
            )
        return pb.ResumeQueueResponse(queue=convert.queue_to_proto(queue))

    @rpc(SERVICE)
    async def SetQueueLimits(
        self, request: pb.SetQueueLimitsRequest, context: Context
    ) -> pb.SetQueueLimitsResponse:
        async with self._audit.recording("queue.limits", request.name) as note:
            name = check_queue_name(request.name)
            change = flow_change_from_request(request)
            note.detail = describe_change(change)
            queue = await self._queues.queue_set_flow(name, change)
        return pb.SetQueueLimitsResponse(queue=convert.queue_to_proto(queue))

    @rpc(SERVICE)
    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: Context
    ) -> pb.ListWorkersResponse:
        status = convert.worker_status_from_proto(request.status)
        if request.status and status is None:
            raise InvalidArgument(f"unknown worker status {request.status}")
        workers = await self._workers.worker_list(status)
        return pb.ListWorkersResponse(workers=[convert.worker_to_proto(w) for w in workers])

    @rpc(SERVICE)
    async def DrainWorker(
        self, request: pb.DrainWorkerRequest, context: Context
    ) -> pb.DrainWorkerResponse:
        async with self._audit.recording("worker.drain", request.worker_id) as note:
            worker_id = parse_uuid(request.worker_id, "worker id")
            # A live worker only, checked by the update itself (FAILED_PRECONDITION naming the
            # status otherwise): a read first could pass a worker that goes OFFLINE before the
            # write, which would then bring it back as DRAINING.
            worker, was = await self._workers.worker_set_status(
                worker_id, WorkerStatus.DRAINING, (WorkerStatus.ONLINE, WorkerStatus.DRAINING)
            )
            note.detail = f"was {was.value}"
            self._capacity.drain(worker_id)
        return pb.DrainWorkerResponse(worker=convert.worker_to_proto(worker))

    @rpc(SERVICE)
    async def ShutdownWorker(
        self, request: pb.ShutdownWorkerRequest, context: Context
    ) -> pb.ShutdownWorkerResponse:
        async with self._audit.recording("worker.shutdown", request.worker_id) as note:
            worker_id = parse_uuid(request.worker_id, "worker id")
            current = await self._workers.worker_get(worker_id)
            note.detail = f"was {current.status.value}"
            if current.status is WorkerStatus.OFFLINE:
                raise FailedPrecondition(f"worker {worker_id} is OFFLINE")
            worker = await self._workers.worker_request_shutdown(worker_id)
            self._capacity.drain(worker_id)
        return pb.ShutdownWorkerResponse(worker=convert.worker_to_proto(worker))

    @rpc(SERVICE)
    async def GetSystemStatus(
        self, request: pb.GetSystemStatusRequest, context: Context
    ) -> pb.GetSystemStatusResponse:
        components = []
        for name, check in self._health_checks.items():
            healthy, detail = await check()
            state = (
                pb.COMPONENT_STATE_DISABLED
                if healthy is None
                else pb.COMPONENT_STATE_DEGRADED
                if healthy == DEGRADED
                else pb.COMPONENT_STATE_HEALTHY
                if healthy
                else pb.COMPONENT_STATE_UNHEALTHY
            )
            components.append(pb.ComponentHealth(name=name, state=state, detail=detail))
        workers = await self._workers.worker_counts()
        jobs = await self._jobs.jobs_count_by_status()
        uptime = Duration()
        uptime.FromTimedelta(timedelta(seconds=time.monotonic() - self._started_monotonic))
        return pb.GetSystemStatusResponse(
            version=__version__,
            uptime=uptime,
            started_at=convert.timestamp(self._started_at.astimezone(UTC)),
            components=components,
            workers_by_status={s.value: n for s, n in workers.items()},
            jobs_by_status={s.value: n for s, n in jobs.items()},
        )

    @rpc(SERVICE)
    async def ListAuditEvents(
        self, request: pb.ListAuditEventsRequest, context: Context
    ) -> pb.ListAuditEventsResponse:
        if request.limit < 0:
            raise InvalidArgument(f"limit must not be negative, got {request.limit}")
        limit = min(request.limit or DEFAULT_AUDIT_LIMIT, MAX_AUDIT_LIMIT)
        action, actor = audit_filters(request.action, request.actor)
        page = await self._audit.store.audit_events_list(
            action=action, actor=actor, limit=limit, page_token=request.page_token
        )
        return pb.ListAuditEventsResponse(
            events=[convert.audit_event_to_proto(event) for event in page.events],
            next_page_token=page.next_page_token,
        )

    # --- schedules (server/schedule_admin.py) -----------------------------------------------

    @rpc(SERVICE)
    async def CreateSchedule(
        self, request: schedules_pb2.CreateScheduleRequest, context: Context
    ) -> schedules_pb2.CreateScheduleResponse:
        return await self._schedules.create(request)

    @rpc(SERVICE)
    async def ListSchedules(
        self, request: schedules_pb2.ListSchedulesRequest, context: Context
    ) -> schedules_pb2.ListSchedulesResponse:
        return await self._schedules.list()

    @rpc(SERVICE)
    async def GetSchedule(
        self, request: schedules_pb2.GetScheduleRequest, context: Context
    ) -> schedules_pb2.GetScheduleResponse:
        return await self._schedules.get(request)

    @rpc(SERVICE)
    async def DeleteSchedule(
        self, request: schedules_pb2.DeleteScheduleRequest, context: Context
    ) -> schedules_pb2.DeleteScheduleResponse:
        return await self._schedules.delete(request)

    @rpc(SERVICE)
    async def PauseSchedule(
        self, request: schedules_pb2.PauseScheduleRequest, context: Context
    ) -> schedules_pb2.PauseScheduleResponse:
        return await self._schedules.pause(request)

    @rpc(SERVICE)
    async def ResumeSchedule(
        self, request: schedules_pb2.ResumeScheduleRequest, context: Context
    ) -> schedules_pb2.ResumeScheduleResponse:
        return await self._schedules.resume(request)
