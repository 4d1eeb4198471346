"""Turn asyncpg records into domain records; the one place that knows column names."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

import asyncpg

from jobq.domain.flow_limits import FlowLimits, Rate
from jobq.domain.records import AuditEvent, Job, JobEvent, Queue, Transition, Worker
from jobq.domain.schedules import MissedPolicy, Schedule, Timing
from jobq.domain.states import JobStatus, Reason, WorkerStatus

# Enum lookup by value (`JobStatus("DONE")`) runs Enum.__new__, which costs more than the rest
# of a row's conversion; claims and reports convert thousands of rows a second.
_STATUS: dict[str, JobStatus] = {s.value: s for s in JobStatus}
_REASON: dict[str, Reason] = {r.value: r for r in Reason}


def job_from_row(row: asyncpg.Record) -> Job:
    return Job(
        job_id=row["job_id"],
        queue_name=row["queue_name"],
        payload=bytes(row["payload"]),
        status=_STATUS[row["status"]],
        priority=row["priority"],
        max_retries=row["max_retries"],
        retry_count=row["retry_count"],
        attempt=row["attempt"],
        worker_id=row["worker_id"],
        result=None if row["result"] is None else bytes(row["result"]),
        error_message=row["error_message"],
        not_before=row["not_before"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        updated_at=row["updated_at"],
        interruptions=row["interruptions"],
        concurrency_key=row.get("concurrency_key"),
        schedule_name=row.get("schedule_name"),
        depends_on=tuple(row.get("depends_on") or ()),
    )


def job_detail_from_row(row: asyncpg.Record) -> Job:
    """A job with the columns only reads of single jobs and lists select (progress, cancel
    request): kept out of `job_from_row`, which claims run for every job."""
    return replace(
        job_from_row(row),
        progress=row["progress"],
        progress_message=row["progress_message"],
        progress_updated_at=row["progress_updated_at"],
        cancel_requested_at=row["cancel_requested_at"],
        cancelled_by=row["cancelled_by"],
    )


def job_event_from_row(row: asyncpg.Record) -> JobEvent:
    from_status = row["from_status"]
    return JobEvent(
        id=row["id"],
        job_id=row["job_id"],
        queue_name=row["queue_name"],
        from_status=None if from_status is None else JobStatus(from_status),
        to_status=JobStatus(row["to_status"]),
        worker_id=row["worker_id"],
        reason=Reason(row["reason"]),
        detail=row["detail"],
        attempt=row["attempt"],
        occurred_at=row["occurred_at"],
    )


def queue_from_row(row: asyncpg.Record) -> Queue:
    return Queue(
        name=row["name"],
        max_retries=row["max_retries"],
        ttl_seconds=row["ttl_seconds"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        max_interruptions=row["max_interruptions"],
        flow=flow_from_row(row),
    )


def flow_from_row(row: asyncpg.Record) -> FlowLimits:
    """A queue's flow settings from its columns (queue_get, queue_flow_lock)."""
    return FlowLimits(
        paused=row["paused"],
        max_running=row["max_running"],
        key_max_running=row["key_max_running"],
        rate=_rate(row["rate_limit"], row["rate_period_ms"]),
        key_rate=_rate(row["key_rate_limit"], row["key_rate_period_ms"]),
    )


def _rate(limit: int | None, period_ms: int | None) -> Rate | None:
    return None if limit is None or period_ms is None else Rate(limit, period_ms / 1000)


def worker_from_row(row: asyncpg.Record) -> Worker:
    worker_id: UUID = row["worker_id"]
    return Worker(
        worker_id=worker_id,
        hostname=row["hostname"],
        status=WorkerStatus(row["status"]),
        concurrency=row["concurrency"],
        active_job_count=row["active_job_count"],
        queues=tuple(row["queues"]),
        last_heartbeat=row["last_heartbeat"],
        registered_at=row["registered_at"],
        updated_at=row["updated_at"],
        shutdown_requested=bool(row.get("shutdown_requested", False)),
        incarnation=row.get("incarnation"),
    )


def transition_from_row(
    row: asyncpg.Record,
    *,
    from_status: JobStatus | None = None,
    to_status: JobStatus | None = None,
    reason: Reason | None = None,
) -> Transition:
    """An applied state change from a statement's RETURNING row; the keyword arguments
    override columns (a failure row stands for two transitions: X → FAILED → next state)."""
    return Transition(
        job_id=row["job_id"],
        queue_name=row["queue_name"],
        from_status=from_status or _STATUS[row["from_status"]],
        to_status=to_status or _STATUS[row["to_status"]],
        reason=reason or _REASON[row["reason"]],
        worker_id=row["worker_id"],
        attempt=row["attempt"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        occurred_at=row["occurred_at"],
        has_dependants=row.get("has_dependants") or False,
    )


def audit_event_from_row(row: asyncpg.Record) -> AuditEvent:
    return AuditEvent(
        id=row["id"],
        occurred_at=row["occurred_at"],
        actor=row["actor"],
        action=row["action"],
        target=row["target"],
        outcome=row["outcome"],
        detail=row["detail"],
    )


def schedule_from_row(row: asyncpg.Record) -> Schedule:
    return Schedule(
        name=row["name"],
        timing=Timing(row["cron"], row["time_zone"], row["interval_seconds"]),
        queue_name=row["queue_name"],
        payload=bytes(row["payload"]),
        priority=row["priority"],
        max_retries=row["max_retries"],
        missed=MissedPolicy(row["missed"]),
        paused=row["paused"],
        next_run_at=row["next_run_at"],
        last_run_at=row["last_run_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
