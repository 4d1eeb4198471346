"""The history maintainer: job_events' daily partitions made ahead and dropped past the
retention (issue 21, db/migrations/V23).

Each run, on one replica at a time (a lease row in history_maintenance, as the event publisher
leases), in this order:
1. make the partitions of today and of `premake_days` days ahead, so that events land in their
   day's partition and the DEFAULT partition stays empty;
2. move rows that did land in the default partition (a clock far ahead, a maintainer that was
   away) into partitions of their own days: a row of a day left in the default partition would
   make that day's partition impossible to create;
3. with a retention (`retention_days` > 0), detach and drop every partition whose whole range is
   older than it, except one that holds an event of an unfinished job (PENDING, ASSIGNED,
   RUNNING, WAITING, or FAILED awaiting its retry): a live job's history is never touched. Such
   a partition is kept, logged once, counted (jq_history_partitions_held_back), and dropped by
   a later run once those jobs have finished.

With pg_partman installed in jobq's database (CREATE EXTENSION pg_partman, version 4), the run
registers job_events with it (once: the day partitions renamed to its spelling, pg_partman's
default partition for jobq's empty one, create_parent) and step 1 is pg_partman's
run_maintenance; any day it did not make is made as without it. Steps 2 and 3 stay jobq's:
pg_partman's retention drops a day whatever it holds, and jobq's keeps a live job's history.
pg_partman refused (jobq's role lacks a privilege on its schema, say): logged once, and the
run goes on as without it.

The same run, under the same lease, keeps jobs' daily partitions (db/migrations/V24) with
`jobs` (jobq.server.job_partition_maintainer), with the same retention and premake days.

Retention by partition rather than DELETE, as Oban Pro's partitioner, pg_partman and Hatchet
do: dropping a day costs a catalogue change, where deleting it row by row costs dead tuples,
index churn, WAL and vacuum, and falls behind at volume.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from jobq.domain.history import (
    JOBQ_DAY_FORMAT,
    PARTMAN_4_DAY_FORMAT,
    Partition,
    PartmanState,
    day_start,
    partition_name,
    partman_refusal,
    partman_registration,
)
from jobq.observability.logging_setup import get_logger
from jobq.server.job_partition_maintainer import JobPartitionMaintainer, JobsReport
from jobq.server.service_loop import ServiceLoop
from jobq.storage.stores import HistoryPartitionStore, HistoryPartmanStore

log = get_logger("jobq.history")

LEASE_S = 600.0
"""How long a run may hold the lease before another replica may take over (a replica that died
mid-run). Runs take seconds; the lease is given back at the end of each."""


@dataclass(frozen=True, slots=True)
class HistoryReport:
    """What one run did; `acted` False: another replica held the lease, nothing was done."""

    acted: bool
    created: list[str] = field(default_factory=list)
    moved: int = 0
    """Rows moved out of the default partition into their day's new partition."""
    dropped: list[str] = field(default_factory=list)
    held_back: list[str] = field(default_factory=list)
    """Partitions past the retention kept because they hold an event of an unfinished job."""
    busy: list[str] = field(default_factory=list)
    """Days to make and partitions to drop left for the next run: job_events' lock was not
    granted within the lock timeout (a long transaction on it)."""
    jobs: JobsReport | None = None
    """What the run did to jobs' partitions (None: not maintained by this maintainer)."""
    partman: str | None = None
    """The version of pg_partman that kept job_events' partitions this run (None: jobq did)."""
    premade_by_partman: list[str] = field(default_factory=list)
    """Partitions pg_partman's run_maintenance made this run (`created`: those jobq made)."""


def _covered(day: date, partitions: list[Partition]) -> bool:
    start = day_start(day)
    return any(
        not p.is_default
        and (p.lower is None or p.lower <= start)
        and (p.upper is None or start < p.upper)
        for p in partitions
    )


def default_owner() -> str:
    """This process's name in the lease: host, pid and a random part (a restarted process with
    the same pid is another owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class HistoryMaintainer:
    """Keeps job_events' partitions: made ahead, refilled from the default, dropped when old."""

    def __init__(
        self,
        store: HistoryPartitionStore,
        *,
        retention_days: int,
        premake_days: int,
        interval_s: float,
        owner: str | None = None,
        clock: Callable[[], datetime] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        jobs: JobPartitionMaintainer | None = None,
        partman: HistoryPartmanStore | None = None,
    ) -> None:
        if retention_days < 0 or premake_days < 1:
            raise ValueError(
                f"need retention_days >= 0, premake_days >= 1, got {retention_days}, {premake_days}"
            )
        self._store = store
        self._retention_days = retention_days
        self._premake_days = premake_days
        self._owner = owner or default_owner()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_dropped = on_dropped
        self._reported_held: set[str] = set()
        self._jobs = jobs
        self._partman = partman
        self._partman_said = ""
        self.loop = ServiceLoop("history", interval_s, self._tick)

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()

    async def run_once(self, now: datetime | None = None) -> HistoryReport:
        """One maintenance run at `now` (default: the clock), if this replica gets the lease."""
        now = now if now is not None else self._clock()
        if not await self._store.history_lease(self._owner, LEASE_S):
            return HistoryReport(acted=False)
        try:
            report = await self._maintain(now)
            if self._jobs is not None:
                jobs = await self._jobs.run(now)
                report = replace(report, jobs=jobs)
                await self._jobs.record(now, len(jobs.held_back) + len(jobs.unpartitioned))
        except BaseException:
            await self._store.history_abandon(self._owner)
            raise
        await self._store.history_release(self._owner, now, len(report.held_back))
        if report.created or report.moved or report.dropped:
            log.info(
                "history partitions maintained",
                action="history.maintained",
                created=report.created,
                moved=report.moved,
                dropped=report.dropped,
                held_back=len(report.held_back),
            )
        return report

    async def _maintain(self, now: datetime) -> HistoryReport:
        created: list[str] = []
        busy: list[str] = []
        moved = 0
        partitions = await self._store.history_partitions()
        partman = await self._partman_state()
        day_format = partman.day_format if partman and partman.day_format else JOBQ_DAY_FORMAT

        async def make(day: date) -> None:
            nonlocal moved, partitions
            count = await self._store.history_partition_create(day, partition_name(day, day_format))
            if count is None:
                busy.append(day.isoformat())
                return
            moved += count
            created.append(day.isoformat())
            partitions = await self._store.history_partitions()

        # Stray rows first: pg_partman would premake from a stray far-ahead row's day and then
        # fail to attach the days it holds, and registering needs an empty default partition.
        for day in await self._store.history_default_days():
            if not _covered(day, partitions):
                await make(day)
        premade: list[str] = []
        kept_by: str | None = None
        if partman is not None:
            before = {p.lower for p in partitions}  # by bounds: registering renames them
            kept, registered = await self._partman_run(partman, partitions, now)
            # Re-read whatever happened: registering renamed the partitions, run_maintenance
            # made some; the drops below name them.
            partitions = await self._store.history_partitions()
            if registered:  # by jobq this run (no datetime_string read yet) or before
                day_format = partman.day_format or PARTMAN_4_DAY_FORMAT
            if kept:
                kept_by = partman.version
                premade = [p.name for p in partitions if not p.is_default and p.lower not in before]
        today = now.astimezone(UTC).date()
        for day in (today + timedelta(days=n) for n in range(self._premake_days + 1)):
            if not _covered(day, partitions):
                await make(day)
        dropped, held_back, busy_drops = await self._expire(now, partitions)
        busy += busy_drops
        if busy:
            log.warning(
                "history maintenance left work for its next run: job_events is locked",
                action="history.busy",
                left=busy,
            )
        return HistoryReport(
            True,
            created,
            moved,
            dropped,
            held_back,
            busy,
            partman=kept_by,
            premade_by_partman=premade,
        )

    async def _partman_state(self) -> PartmanState | None:
        """pg_partman when it is installed and jobq may let it keep job_events; None: not."""
        if self._partman is None:
            return None
        state = await self._partman.partman_state()
        refusal = partman_refusal(state) if state is not None else None
        if refusal is not None:
            self._say_once(f"{refusal}; jobq keeps job_events' partitions itself")
            return None
        return state

    async def _partman_run(
        self, state: PartmanState, partitions: list[Partition], now: datetime
    ) -> tuple[bool, bool]:
        """Register job_events with pg_partman if it is not yet, then let pg_partman premake.
        Returns whether pg_partman kept the days this run (its maintenance ran) and whether
        job_events is registered with it (its spelling names the partitions from now on)."""
        assert self._partman is not None
        if not state.registered:
            start, renames = partman_registration(partitions, now)
            outcome, detail = await self._partman.partman_register(
                state, self._premake_days, start, renames
            )
            if outcome == "failed":
                self._say_once(
                    f"job_events could not be registered with pg_partman ({detail}); jobq keeps"
                    " its partitions itself meanwhile"
                )
            if outcome != "done":  # busy: the next run tries again
                return False, False
            log.info(
                "job_events registered with pg_partman",
                action="history.partman_registered",
                version=state.version,
                renamed=len(renames),
            )
        outcome, detail = await self._partman.partman_maintain(state, self._premake_days)
        if outcome == "failed":
            self._say_once(
                f"pg_partman's maintenance of job_events failed ({detail}); jobq makes the days"
                " ahead itself meanwhile"
            )
        elif outcome == "done":
            self._partman_said = ""
        return outcome == "done", True

    def _say_once(self, message: str) -> None:
        """A warning about pg_partman, logged when it changes, not once per run."""
        if message and message != self._partman_said:
            log.warning(message, action="history.partman_unused")
        self._partman_said = message

    async def _expire(
        self, now: datetime, partitions: list[Partition]
    ) -> tuple[list[str], list[str], list[str]]:
        """Drop the partitions wholly older than the retention that hold no live job's event:
        returns those dropped, those held back, and those left for the next run (locked)."""
        if self._retention_days == 0:  # keep forever
            return [], [], []
        cutoff = now - timedelta(days=self._retention_days)
        old = [
            p for p in partitions if not p.is_default and p.upper is not None and p.upper <= cutoff
        ]
        live = await self._store.history_live_partitions(old)
        outcomes: dict[str, list[str]] = {"dropped": [], "live": [], "busy": []}
        for partition in old:
            if partition.oid in live:
                outcomes["live"].append(partition.name)
                continue
            outcomes[await self._store.history_partition_drop(partition)].append(partition.name)
        if outcomes["dropped"] and self._on_dropped is not None:
            self._on_dropped(len(outcomes["dropped"]))
        self._log_held_back(outcomes["live"])
        return outcomes["dropped"], outcomes["live"], outcomes["busy"]

    def _log_held_back(self, held_back: list[str]) -> None:
        """One line per partition when it is first held back, not one per run."""
        for name in held_back:
            if name not in self._reported_held:
                log.info(
                    "history partition past the retention kept: an unfinished job has events in it",
                    action="history.held_back",
                    partition=name,
                )
        self._reported_held = set(held_back)

    async def _tick(self) -> None:
        await self.run_once()
