"""Read-only snapshots of a job and of its state changes, as the SDK hands them out.

Plain frozen dataclasses built from the proto messages, so callers never touch generated code;
times are timezone-aware UTC datetimes, None where the server left them unset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from jobq.domain.states import JobStatus
from jobq.rpc._gen import common_pb2
from jobq.rpc.convert import from_timestamp, job_status_from_proto

__all__ = ["ENDED", "JobEventInfo", "JobInfo", "JobStatus"]

ENDED = frozenset({JobStatus.DONE, JobStatus.DEAD_LETTERED})
"""Statuses a job stays in unless someone acts (RetryJob): what `wait()` waits for."""


def _time(message: common_pb2.Job | common_pb2.JobEvent, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    stamp = getattr(message, name)
    assert isinstance(stamp, Timestamp)
    return from_timestamp(stamp)


def _status(value: int) -> JobStatus:
    status = job_status_from_proto(value)
    if status is None:
        raise ValueError(f"the server sent an unknown job status {value}")
    return status


@dataclass(frozen=True)
class JobInfo:
    """A job as the server last reported it."""

    job_id: str
    queue_name: str
    status: JobStatus
    payload: bytes
    priority: int
    max_retries: int
    retry_count: int
    attempt: int
    interruptions: int
    worker_id: str
    result: bytes
    """Commands: captured stdout; Python handlers: the JSON of the return value."""
    error_message: str
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    not_before: datetime | None
    updated_at: datetime | None
    concurrency_key: str = ""
    """The key the queue's per-key limits count the job under; empty: none."""
    depends_on: tuple[str, ...] = ()
    """The ids of the jobs it was submitted to run after (README, "Dependencies")."""
    progress: float | None = None
    """The latest progress (0..1) the running attempt reported; None when none."""
    progress_message: str = ""
    progress_updated_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    """When a cancel of the RUNNING job was asked for (it ends CANCELLED once stopped)."""
    cancelled_by: str = ""
    """Who cancelled the job (or asked to): `token:<name>`, `cert:<subject>`, `anonymous`."""

    @property
    def ended(self) -> bool:
        """DONE or DEAD_LETTERED: nothing more happens to it unless it is retried (a WAITING
        job has not ended: it waits for its prerequisites)."""
        return self.status in ENDED

    @classmethod
    def from_proto(cls, job: common_pb2.Job) -> JobInfo:
        return cls(
            job_id=job.job_id,
            queue_name=job.queue_name,
            status=_status(job.status),
            payload=job.payload,
            priority=job.priority,
            max_retries=job.max_retries,
            retry_count=job.retry_count,
            attempt=job.attempt,
            interruptions=job.interruptions,
            worker_id=job.worker_id,
            result=job.result,
            error_message=job.error_message,
            created_at=_time(job, "created_at"),
            started_at=_time(job, "started_at"),
            completed_at=_time(job, "completed_at"),
            not_before=_time(job, "not_before"),
            concurrency_key=job.concurrency_key,
            updated_at=_time(job, "updated_at"),
            depends_on=tuple(job.depends_on),
            progress=job.progress if job.HasField("progress") else None,
            progress_message=job.progress_message,
            progress_updated_at=_time(job, "progress_updated_at"),
            cancel_requested_at=_time(job, "cancel_requested_at"),
            cancelled_by=job.cancelled_by,
        )


@dataclass(frozen=True)
class JobEventInfo:
    """One state change of a job (GetJobLogs), oldest first."""

    id: int
    job_id: str
    queue_name: str
    from_status: JobStatus | None
    """None for the submission, which has no previous state."""
    to_status: JobStatus
    worker_id: str
    reason: str
    detail: str
    occurred_at: datetime | None

    @classmethod
    def from_proto(cls, event: common_pb2.JobEvent) -> JobEventInfo:
        return cls(
            id=event.id,
            job_id=event.job_id,
            queue_name=event.queue_name,
            from_status=job_status_from_proto(event.from_status),
            to_status=_status(event.to_status),
            worker_id=event.worker_id,
            reason=event.reason,
            detail=event.detail,
            occurred_at=_time(event, "occurred_at"),
        )
