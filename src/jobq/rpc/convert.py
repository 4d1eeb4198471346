"""The one place that translates between proto messages and domain records."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from jobq.domain.flow_limits import Rate
from jobq.domain.records import (
    Assignment,
    AuditEvent,
    Job,
    JobEvent,
    Queue,
    QueueStats,
    Worker,
)
from jobq.domain.schedules import MissedPolicy, Schedule
from jobq.domain.states import JobStatus, WorkerStatus
from jobq.rpc._gen import admin_service_pb2, common_pb2, schedules_pb2, worker_service_pb2

ProtoJobStatus = common_pb2.JobStatus
ProtoWorkerStatus = common_pb2.WorkerStatus

_JOB_STATUS_TO_PROTO: dict[JobStatus, ProtoJobStatus] = {
    s: cast(ProtoJobStatus, common_pb2.JobStatus.Value(f"JOB_STATUS_{s.value}")) for s in JobStatus
}
_JOB_STATUS_FROM_PROTO: dict[int, JobStatus] = {v: k for k, v in _JOB_STATUS_TO_PROTO.items()}
_WORKER_STATUS_TO_PROTO: dict[WorkerStatus, ProtoWorkerStatus] = {
    s: cast(ProtoWorkerStatus, common_pb2.WorkerStatus.Value(f"WORKER_STATUS_{s.value}"))
    for s in WorkerStatus
}
_WORKER_STATUS_FROM_PROTO: dict[int, WorkerStatus] = {
    v: k for k, v in _WORKER_STATUS_TO_PROTO.items()
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    """A proto Timestamp, or None (leave the field unset) for a missing time."""
    if value is None:
        return None
    # Exact integer arithmetic, and several times cheaper than Timestamp.FromDatetime: every
    # assignment and listed job carries timestamps. A naive datetime is taken as UTC, as
    # FromDatetime does.
    delta = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def job_status_to_proto(status: JobStatus | None) -> ProtoJobStatus:
    if status is None:
        return common_pb2.JOB_STATUS_UNSPECIFIED
    return _JOB_STATUS_TO_PROTO[status]


def job_status_from_proto(value: int) -> JobStatus | None:
    """The domain status, or None for UNSPECIFIED (and unknown future values)."""
    return _JOB_STATUS_FROM_PROTO.get(value)


def worker_status_to_proto(status: WorkerStatus) -> ProtoWorkerStatus:
    return _WORKER_STATUS_TO_PROTO[status]


def worker_status_from_proto(value: int) -> WorkerStatus | None:
    return _WORKER_STATUS_FROM_PROTO.get(value)


def job_to_proto(job: Job) -> common_pb2.Job:
    return common_pb2.Job(
        job_id=str(job.job_id),
        queue_name=job.queue_name,
        payload=job.payload,
        priority=job.priority,
        status=_JOB_STATUS_TO_PROTO[job.status],
        max_retries=job.max_retries,
        retry_count=job.retry_count,
        attempt=job.attempt,
        worker_id="" if job.worker_id is None else str(job.worker_id),
        result=job.result or b"",
        error_message=job.error_message or "",
        created_at=timestamp(job.created_at),
        started_at=timestamp(job.started_at),
        completed_at=timestamp(job.completed_at),
        not_before=timestamp(job.not_before),
        updated_at=timestamp(job.updated_at),
        interruptions=job.interruptions,
        concurrency_key=job.concurrency_key or "",
        schedule_name=job.schedule_name or "",
        depends_on=[str(p) for p in job.depends_on],
        progress=job.progress,
        progress_message=job.progress_message or "",
        progress_updated_at=timestamp(job.progress_updated_at),
        cancel_requested_at=timestamp(job.cancel_requested_at),
        cancelled_by=job.cancelled_by or "",
    )


def assignment_to_proto(assignment: Assignment) -> worker_service_pb2.JobAssignment:
    job = assignment.job
    message = worker_service_pb2.JobAssignment(
        job_id=str(job.job_id),
        queue_name=job.queue_name,
        payload=job.payload,
        attempt=job.attempt,
        worker_id="" if job.worker_id is None else str(job.worker_id),
        priority=job.priority,
        retry_count=job.retry_count,
        max_retries=job.max_retries,
        timeout_s=assignment.timeout_s or 0,
        created_at=timestamp(job.created_at),
        claim_id="" if assignment.claim_id is None else str(assignment.claim_id),
    )
    if assignment.trace_context is not None:  # traced (issue 20): the dispatch span's context
        message.traceparent, _, message.tracestate = assignment.trace_context.partition("\n")
    return message


def event_to_proto(event: JobEvent) -> common_pb2.JobEvent:
    return common_pb2.JobEvent(
        id=event.id,
        job_id=str(event.job_id),
        queue_name=event.queue_name,
        from_status=job_status_to_proto(event.from_status),
        to_status=_JOB_STATUS_TO_PROTO[event.to_status],
        worker_id="" if event.worker_id is None else str(event.worker_id),
        reason=event.reason.value,
        detail=event.detail or "",
        occurred_at=timestamp(event.occurred_at),
        attempt=event.attempt or 0,
    )


def queue_to_proto(queue: Queue) -> common_pb2.Queue:
    return common_pb2.Queue(
        name=queue.name,
        max_retries=queue.max_retries,
        ttl_seconds=queue.ttl_seconds or 0,
        created_at=timestamp(queue.created_at),
        updated_at=timestamp(queue.updated_at),
        max_interruptions=queue.max_interruptions,
        paused=queue.flow.paused,
        max_running=queue.flow.max_running or 0,
        key_max_running=queue.flow.key_max_running or 0,
        rate=None if queue.flow.rate is None else rate_to_proto(queue.flow.rate),
        key_rate=None if queue.flow.key_rate is None else rate_to_proto(queue.flow.key_rate),
    )


def rate_to_proto(rate: Rate) -> common_pb2.RateLimit:
    period = Duration()
    period.FromMilliseconds(rate.period_ms)
    return common_pb2.RateLimit(limit=rate.limit, period=period)


def rate_from_proto(rate: common_pb2.RateLimit) -> Rate:
    """A Rate as given (limit 0: remove the rate); not yet checked (check_rate)."""
    return Rate(rate.limit, rate.period.ToMilliseconds() / 1000)


def queue_stats_to_proto(stats: QueueStats) -> admin_service_pb2.QueueStats:
    counts = stats.counts
    return admin_service_pb2.QueueStats(
        queue_name=stats.queue_name,
        pending=counts.get(JobStatus.PENDING, 0),
        assigned=counts.get(JobStatus.ASSIGNED, 0),
        running=counts.get(JobStatus.RUNNING, 0),
        done=counts.get(JobStatus.DONE, 0),
        failed=counts.get(JobStatus.FAILED, 0),
        dead_lettered=counts.get(JobStatus.DEAD_LETTERED, 0),
        oldest_pending_age_s=stats.oldest_pending_age_s,
        total_retries=stats.total_retries,
        max_interruptions=stats.max_interruptions,
        total_interruptions=stats.total_interruptions,
        queue=None if stats.queue is None else queue_to_proto(stats.queue),
        waiting=counts.get(JobStatus.WAITING, 0),
    )


def worker_to_proto(worker: Worker) -> common_pb2.Worker:
    return common_pb2.Worker(
        worker_id=str(worker.worker_id),
        hostname=worker.hostname,
        status=_WORKER_STATUS_TO_PROTO[worker.status],
        concurrency=worker.concurrency,
        active_job_count=worker.active_job_count,
        queues=list(worker.queues),
        last_heartbeat=timestamp(worker.last_heartbeat),
        registered_at=timestamp(worker.registered_at),
    )


def audit_event_to_proto(event: AuditEvent) -> admin_service_pb2.AuditEvent:
    return admin_service_pb2.AuditEvent(
        id=event.id,
        occurred_at=timestamp(event.occurred_at),
        actor=event.actor,
        action=event.action,
        target=event.target,
        outcome=event.outcome,
        detail=event.detail or "",
    )


_MISSED_TO_PROTO: dict[MissedPolicy, schedules_pb2.MissedTickPolicy] = {
    MissedPolicy.SKIP: schedules_pb2.MISSED_TICK_POLICY_SKIP,
    MissedPolicy.ONCE: schedules_pb2.MISSED_TICK_POLICY_ONCE,
}
_MISSED_FROM_PROTO: dict[int, MissedPolicy] = {v: k for k, v in _MISSED_TO_PROTO.items()}


def missed_policy_from_proto(value: int) -> MissedPolicy | None:
    """The domain policy; None for UNSPECIFIED and unknown values."""
    return _MISSED_FROM_PROTO.get(value)


def schedule_to_proto(
    schedule: Schedule, upcoming: Sequence[datetime] = ()
) -> schedules_pb2.Schedule:
    timing = schedule.timing
    return schedules_pb2.Schedule(
        name=schedule.name,
        cron=timing.cron or "",
        time_zone=timing.time_zone,
        interval_seconds=timing.interval_seconds or 0,
        queue_name=schedule.queue_name,
        payload=schedule.payload,
        priority=schedule.priority,
        max_retries=schedule.max_retries,
        missed=_MISSED_TO_PROTO[schedule.missed],
        paused=schedule.paused,
        next_run_at=timestamp(schedule.next_run_at),
        last_run_at=timestamp(schedule.last_run_at),
        created_at=timestamp(schedule.created_at),
        updated_at=timestamp(schedule.updated_at),
        upcoming=list(upcoming),
    )
