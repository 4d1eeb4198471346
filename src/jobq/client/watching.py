"""What waiting shares between the sync and asyncio clients: the id limit of one WatchJobs call,
the reason a job was dead-lettered, and status filters as proto values."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from jobq.client.errors import ClientError
from jobq.client.job_info import JobEventInfo, JobInfo, JobStatus
from jobq.rpc._gen import common_pb2
from jobq.rpc.convert import job_status_to_proto

__all__ = ["MAX_WATCHED", "dead_letter_reason", "reason_from_events", "status_to_proto"]

MAX_WATCHED: Final = 1000
"""Most ids one WatchJobs call may watch (the server refuses more)."""


def reason_from_events(events: Sequence[JobEventInfo]) -> str:
    """The reason of the job's last move to DEAD_LETTERED ("" when its log has none)."""
    for event in reversed(events):
        if event.to_status is JobStatus.DEAD_LETTERED:
            return event.reason
    return ""


def dead_letter_reason(job: JobInfo, logs: Callable[[str], Sequence[JobEventInfo]]) -> str:
    """Why a dead-lettered job was: read from its log, which is the only place that says
    (a Job message has no reason). "" when the log cannot be read: the caller still gets a
    JobDeadLettered, only not the finer JobFailed or JobCancelled."""
    try:
        return reason_from_events(logs(job.job_id))
    except ClientError:
        return ""


def status_to_proto(status: JobStatus | str | None) -> common_pb2.JobStatus:
    """A status filter ("done", "DONE", JobStatus.DONE; None for every status)."""
    if status is None:
        return common_pb2.JOB_STATUS_UNSPECIFIED
    if isinstance(status, str) and not isinstance(status, JobStatus):
        try:
            status = JobStatus(status.upper())
        except ValueError:
            names = ", ".join(s.value.lower() for s in JobStatus)
            raise ValueError(f"unknown job status {status!r}; one of {names}") from None
    return job_status_to_proto(status)
