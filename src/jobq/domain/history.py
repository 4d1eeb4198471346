"""The partitions of the job history (job_events, db/migrations/V23): what they are and how a
day's partition is named. Pure: the storage reads them, the history maintainer decides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Literal

from jobq.domain.states import JobStatus

LIVE_STATUSES: tuple[JobStatus, ...] = (
    JobStatus.PENDING,
    JobStatus.ASSIGNED,
    JobStatus.RUNNING,
    JobStatus.WAITING,
    JobStatus.FAILED,  # awaiting its retry
)
"""Unfinished jobs: a partition holding an event of one is never dropped. Every status but
DONE and DEAD_LETTERED (which RetryJob may bring back: its history then stays only if its
partition was not dropped yet; a dead letter is finished as far as retention goes)."""

PARTITION_PREFIX = "job_events_p"
"""Daily partitions are named job_events_pYYYYMMDD (the UTC day they hold)."""


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of job_events: [lower, upper) in time; lower None is MINVALUE."""

    oid: int
    name: str
    lower: datetime | None
    upper: datetime | None
    is_default: bool


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """What /metrics shows about the history's partitions."""

    partitions: int
    default_rows: int
    held_back: int
    last_success: float | None
    """Epoch seconds of the last successful maintenance run; None: never."""


DropOutcome = Literal["dropped", "live", "busy"]
"""What became of a partition past the retention: dropped; kept, for it holds an event of an
unfinished job; or left for the next run, for job_events' lock was not granted in time."""


def partition_name(day: date) -> str:
    """The daily partition's name: job_events_p20261201 for 1 December 2026 (UTC)."""
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time(0), tzinfo=UTC)
