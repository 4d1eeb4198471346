"""The partitions of the job history (job_events, db/migrations/V23): what they are and how a
day's partition is named. Pure: the storage reads them, the history maintainer decides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from uuid import UUID

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
"""Daily partitions are named job_events_pYYYYMMDD (the UTC day they hold), or
job_events_pYYYY_MM_DD once pg_partman 4 keeps them (its names, see PartmanState)."""

DAY_FORMATS = {"YYYYMMDD": "%Y%m%d", "YYYY_MM_DD": "%Y_%m_%d"}
"""The day suffixes jobq names partitions with, by their to_char() spelling (pg_partman's
part_config.datetime_string) and their strftime one. YYYYMMDD is jobq's own and pg_partman
5's; YYYY_MM_DD is pg_partman 4's for daily partitions, which it parses back from the names
to order them (a name in another spelling breaks its maintenance)."""

JOBQ_DAY_FORMAT = "YYYYMMDD"
PARTMAN_4_DAY_FORMAT = "YYYY_MM_DD"


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


def partition_name(day: date, day_format: str = JOBQ_DAY_FORMAT) -> str:
    """The daily partition's name: job_events_p20261201 for 1 December 2026 (UTC), or
    job_events_p2026_12_01 with pg_partman 4's `day_format` (a key of DAY_FORMATS)."""
    return PARTITION_PREFIX + day.strftime(DAY_FORMATS[day_format])


@dataclass(frozen=True, slots=True)
class PartmanState:
    """pg_partman as installed in jobq's database, and whether it keeps job_events."""

    schema: str
    version: str
    registered: bool
    """job_events has its row in pg_partman's part_config."""
    interval: timedelta | None = None
    """The registered partition interval (jobq needs one day)."""
    day_format: str | None = None
    """The registered datetime_string: how pg_partman names the partitions it makes."""

    @property
    def major(self) -> int:
        head = self.version.split(".", 1)[0]
        return int(head) if head.isdigit() else 0


PartmanOutcome = tuple[Literal["done", "busy", "failed"], str]
"""What a pg_partman step did: done; busy (a lock not granted in time, nothing changed); or
failed, with PostgreSQL's message (jobq then keeps the partitions itself)."""


SUPPORTED_PARTMAN_MAJOR = 4
"""The pg_partman major version jobq registers job_events with: 4 (Debian 12's 4.7, what
jobq is tested with). pg_partman 5 changed create_parent's arguments and its default
partition's handling; it is left alone (the built-in maintainer keeps the partitions)."""


def partman_refusal(state: PartmanState) -> str | None:
    """Why jobq does not let this pg_partman keep job_events (None: it does)."""
    if state.major != SUPPORTED_PARTMAN_MAJOR:
        return (
            f"pg_partman {state.version} is installed; jobq registers job_events with "
            f"pg_partman {SUPPORTED_PARTMAN_MAJOR}.x only"
        )
    if state.registered and state.interval != timedelta(days=1):
        return (
            f"job_events is registered with pg_partman at an interval of {state.interval}; "
            "jobq keeps one partition per day: remove its part_config row to let jobq "
            "register it"
        )
    if state.registered and state.day_format not in DAY_FORMATS:
        return f"job_events is registered with pg_partman's datetime_string {state.day_format}"
    return None


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time(0), tzinfo=UTC)


JOB_PARTITION_PREFIX = "jobs_p"
"""jobs' daily partitions (db/migrations/V24) are named jobs_pYYYYMMDD: the jobs whose UUIDv7
id was made that UTC day."""

_MS_SHIFT = 80  # a UUIDv7's 48-bit Unix time in ms is its top 48 of 128 bits
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def job_partition_name(day: date) -> str:
    """jobs' daily partition's name: jobs_p20261201 for 1 December 2026 (UTC)."""
    return f"{JOB_PARTITION_PREFIX}{day:%Y%m%d}"


def job_id_floor(moment: datetime) -> UUID:
    """The lowest job id of `moment`'s millisecond: the uuid whose first 48 bits are the
    moment in Unix ms and the rest zero (jobs' partition bounds, V24's jobq_job_id_floor)."""
    ms = (moment - _EPOCH) // timedelta(milliseconds=1)  # exact: no float on the way
    return UUID(int=(ms & ((1 << 48) - 1)) << _MS_SHIFT)


def job_id_moment(job_id: UUID) -> datetime:
    """The moment in a UUIDv7's first 48 bits (for a v4 id: a random moment)."""
    return _EPOCH + timedelta(milliseconds=job_id.int >> _MS_SHIFT)


def job_day_bounds(day: date) -> tuple[UUID, UUID]:
    """The ids of `day` (UTC): [floor(midnight), floor(next midnight)): its partition's bounds."""
    return job_id_floor(day_start(day)), job_id_floor(day_start(day + timedelta(days=1)))


@dataclass(frozen=True, slots=True)
class JobPartition:
    """One partition of jobs: the ids of [lower, upper) (None: the DEFAULT partition, which
    holds the jobs from before V24 and the ids no day's partition takes)."""

    oid: int
    name: str
    lower: UUID | None
    upper: UUID | None

    @property
    def is_default(self) -> bool:
        return self.lower is None

    @property
    def ends(self) -> datetime | None:
        """The moment after this partition's last id (None: the default partition)."""
        return None if self.upper is None else job_id_moment(self.upper)


CreateOutcome = Literal["created", "live", "busy"]
"""What became of a day's partition of jobs to make: made (the day's finished jobs that sat in
the default partition moved into it); not made, for a live job of that day sits in the default
partition and is never moved; or left for the next run, for a lock was not granted in time."""


def partman_registration(
    partitions: list[Partition], now: datetime
) -> tuple[date, list[tuple[str, str]]]:
    """How jobq registers job_events with pg_partman 4: where create_parent starts (the first
    day partition jobq has: it makes the days from there on, and one before it would overlap
    V23's legacy partition) and the day partitions to rename to pg_partman 4's spelling."""
    days = [p for p in partitions if is_day_partition(p)]
    renames = [
        (p.name, name)
        for p in days
        if p.lower is not None
        and (name := partition_name(p.lower.astimezone(UTC).date(), PARTMAN_4_DAY_FORMAT)) != p.name
    ]
    starts = [p.lower for p in days if p.lower is not None]
    if starts:
        return min(starts).astimezone(UTC).date(), renames
    uppers = [p.upper for p in partitions if p.lower is None and p.upper is not None]
    start = max(uppers) if uppers else now
    return start.astimezone(UTC).date(), renames


def is_day_partition(partition: Partition) -> bool:
    """A partition of one whole UTC day (not the legacy one, the default, or one by hand)."""
    lower, upper = partition.lower, partition.upper
    return (
        not partition.is_default
        and lower is not None
        and upper is not None
        and upper - lower == timedelta(days=1)
        and lower.astimezone(UTC).time() == time(0)
    )
