"""The history maintainer's work on jobs: its daily partitions by job id (db/migrations/V24),
made ahead and dropped past the retention, never a live job touched.

Run by the history maintainer (jobq.server.history_maintainer), in the same run and under the
same lease as job_events' partitions, in this order:
1. make the partitions of today and of `premake_days` days ahead, and of any earlier day whose
   jobs sit in the default partition (the maintainer was away longer than it premakes): a day
   is made only by moving its FINISHED jobs out of the default partition; when a live job of
   that day sits there, the day stays in the default partition (logged once, counted), for
   moving a live job between partitions would race its claim;
2. with a retention (`retention_days` > 0), detach and drop every partition whose day is older
   than it (counted from the day a job was created: its id's day), except one that holds a
   live job (a row in ready_jobs, held_jobs or waiting_jobs, an unannounced enqueue, or a job
   resting in FAILED): kept, logged once, counted, dropped by a later run once those finished.
   A finished job is kept until its day's partition goes, however late it finished. The keys,
   schedule ticks and dependency edges of a dropped day's jobs go with it (a key is free again).
The default partition (jobs from before V24, ids no day takes) is never dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from jobq.domain.history import JobPartition, job_day_bounds, job_id_moment
from jobq.observability.logging_setup import get_logger
from jobq.storage.stores import JobPartitionStore

log = get_logger("jobq.history")


@dataclass(slots=True)
class JobsReport:
    """What one run did to jobs' partitions (filled in as the run goes)."""

    created: list[str] = field(default_factory=list)
    moved: int = 0
    """Finished jobs moved out of the default partition into their day's new partition."""
    dropped: list[str] = field(default_factory=list)
    held_back: list[str] = field(default_factory=list)
    """Partitions past the retention kept because they hold a live job."""
    unpartitioned: list[str] = field(default_factory=list)
    """Days left in the default partition because a live job of theirs sits there."""
    busy: list[str] = field(default_factory=list)
    """Days to make and partitions to drop left for the next run (a lock not granted)."""


def _overlaps(lower: UUID, upper: UUID, partitions: list[JobPartition]) -> bool:
    """Whether a bounded partition overlaps the ids [lower, upper) (today's partition made by
    V24 starts mid-day: the day counts as made)."""
    return any(
        p.lower is not None and p.upper is not None and p.lower < upper and lower < p.upper
        for p in partitions
    )


class JobPartitionMaintainer:
    """Keeps jobs' daily partitions; `run` is called by the history maintainer's run."""

    def __init__(
        self,
        store: JobPartitionStore,
        *,
        retention_days: int,
        premake_days: int,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._on_dropped = on_dropped
        self._retention_days = retention_days
        self._premake_days = premake_days
        self._reported: set[str] = set()

    async def record(self, succeeded_at: datetime, held_back: int) -> None:
        """Record a run's success and what it kept back (for /metrics)."""
        await self._store.job_history_record(succeeded_at, held_back)

    async def run(self, now: datetime) -> JobsReport:
        report = JobsReport()
        partitions = await self._store.job_partitions()
        default = next((p for p in partitions if p.is_default), None)
        if default is None:  # made by V24; a hand-made layout without one is left alone
            log.warning("jobs has no default partition: not maintained", action="history.jobs_odd")
            return report
        for day in await self._days_to_make(now, partitions, default):
            outcome, moved = await self._store.job_partition_create(day, default)
            if outcome == "created":
                report.created.append(day.isoformat())
                report.moved += moved
            elif outcome == "live":
                report.unpartitioned.append(day.isoformat())
            else:
                report.busy.append(day.isoformat())
        if report.created:
            partitions = await self._store.job_partitions()
        await self._expire(now, partitions, report)
        if report.dropped and self._on_dropped is not None:
            self._on_dropped(len(report.dropped))
        self._log(report)
        return report

    async def _days_to_make(
        self, now: datetime, partitions: list[JobPartition], default: JobPartition
    ) -> list[date]:
        """Today and the days ahead without a partition; and earlier days, from the oldest
        day partition on, whose jobs sit in the default partition (one index probe a day)."""
        today = now.astimezone(UTC).date()
        days = [today + timedelta(days=n) for n in range(self._premake_days + 1)]
        bounded = [p for p in partitions if p.lower is not None]
        if bounded and bounded[0].lower is not None:
            first = job_id_moment(bounded[0].lower).date()
            gap = [first + timedelta(days=n) for n in range((today - first).days)]
            days = gap + days
        wanted = []
        for day in days:
            lower, upper = job_day_bounds(day)
            if _overlaps(lower, upper, partitions):
                continue
            if day < today and not await self._store.job_default_has_rows(default, lower, upper):
                continue  # a day dropped or never used: nothing to house
            wanted.append(day)
        return wanted

    async def _expire(
        self, now: datetime, partitions: list[JobPartition], report: JobsReport
    ) -> None:
        if self._retention_days == 0:  # keep forever
            return
        cutoff = now - timedelta(days=self._retention_days)
        for partition in partitions:
            ends = partition.ends
            if partition.is_default or ends is None or ends > cutoff:
                continue
            if await self._store.job_partition_live(partition):
                report.held_back.append(partition.name)
                continue
            outcome = await self._store.job_partition_drop(partition)
            {"dropped": report.dropped, "live": report.held_back, "busy": report.busy}[
                outcome
            ].append(partition.name)

    def _log(self, report: JobsReport) -> None:
        """A line when something was made or dropped; one per kept-back partition or day when
        first kept back, not one per run."""
        if report.created or report.dropped:
            log.info(
                "job partitions maintained",
                action="history.jobs_maintained",
                created=report.created,
                moved=report.moved,
                dropped=report.dropped,
            )
        kept = set(report.held_back) | set(report.unpartitioned)
        for name in sorted(kept - self._reported):
            log.info(
                "job partition or day kept back: a live job is in it",
                action="history.jobs_held_back",
                partition=name,
                default_partition=name in report.unpartitioned,
            )
        self._reported = kept
        if report.busy:
            log.warning(
                "history maintenance left work for its next run: jobs is locked",
                action="history.busy",
                left=report.busy,
            )
