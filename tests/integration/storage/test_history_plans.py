"""The hot reads of job_events stay index plans once it is partitioned by day (V23).

A history spread over DAYS daily partitions (EVENTS_PER_DAY events each, four per job) plus the
legacy one; the statements run as production runs them (custom and generic plan), and their
executed plans (`EXPLAIN ANALYZE`, inside a rolled-back transaction) are read: no partition of
job_events may be read by a sequential scan, the rows read stay proportional to the rows the
statement is about, and the publisher's read (event_outbox_read) runs in the partitions of its
outbox rows' days only (run-time pruning on the span V23 records), not in every partition.
The maintainer's checks for live jobs (history_live_partitions, history_detached_live) find
them without reading the jobs of the days within the retention. They measure no time.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
import pytest
from support.job_ids import uuid7_at
from support.migration_day import Days, days_from_migration
from support.plans import Plan, relation, rows_read, scans

from jobq.domain.history import LIVE_STATUSES, Partition, job_id_moment, job_partition_name
from jobq.server.history_maintainer import HistoryMaintainer
from jobq.storage.postgres.event_outbox import PgEventOutboxStore
from jobq.storage.postgres.history_partitions import (
    PgHistoryPartitionStore,
    detached_live_sql,
    live_partitions_sql,
)
from jobq.storage.postgres.job_partitions import PgJobPartitionStore
from jobq.storage.queries import query

DAYS = 10
JOBS_PER_DAY = 500
EVENTS_PER_DAY = 4 * JOBS_PER_DAY


@pytest.fixture
async def day(db_dsn: str) -> Days:
    """Days counted from the one V23 made this database's partitions for (read per test)."""
    return await days_from_migration(db_dsn, "23")


def event_scans(plan: Any) -> list[Plan]:
    """Every scan node of a partition of job_events."""
    return scans(plan, lambda node: relation(node).startswith("job_events"))


async def _fill(pool: asyncpg.Pool, day: Days) -> list[uuid.UUID]:
    """DAYS days of finished jobs from day 1 on, each day's events in its own partition, the
    last day's written while the outbox captures; returns each day's first job."""
    await HistoryMaintainer(
        PgHistoryPartitionStore(pool), retention_days=0, premake_days=DAYS, interval_s=3600
    ).run_once(datetime.combine(day(0), time(0), tzinfo=UTC))
    firsts = []
    for offset in range(1, DAYS + 1):
        if offset == DAYS:
            await PgEventOutboxStore(pool).capture_set(True)
        start = datetime.combine(day(offset), time(6), tzinfo=UTC)
        ids = [uuid.uuid4() for _ in range(JOBS_PER_DAY)]
        firsts.append(ids[0])
        await pool.execute(
            "INSERT INTO jobs (job_id, queue_name, status, attempt, completed_at, created_at)"
            " SELECT j, 'default', 'DONE', 1, $2, $2 FROM unnest($1::uuid[]) AS j",
            ids,
            start,
        )
        for step, (to_status, reason) in enumerate(
            [
                ("PENDING", "SUBMITTED"),
                ("ASSIGNED", "CLAIMED"),
                ("RUNNING", "STARTED"),
                ("DONE", "COMPLETED"),
            ]
        ):
            await pool.execute(
                "INSERT INTO job_events (job_id, to_status, reason, attempt, occurred_at)"
                " SELECT j, $2::job_status, $3, 1, $4 FROM unnest($1::uuid[]) AS j",
                ids,
                to_status,
                reason,
                start + timedelta(minutes=step),
            )
    await pool.execute("ANALYZE jobs; ANALYZE job_events")
    return firsts


@pytest.fixture
async def firsts(pool: asyncpg.Pool, day: Days) -> list[uuid.UUID]:
    return await _fill(pool, day)


async def _explain(
    pool: asyncpg.Pool, name: str, args: tuple[object, ...], generic: bool, sql: str | None = None
) -> Plan:
    """The executed plan of the named statement (or of `sql`, a template of it filled in)."""
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            if generic:
                await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            raw = await conn.fetchval(
                f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql or query(name)}", *args
            )
        finally:
            await transaction.rollback()
    [explained] = json.loads(raw)
    return dict(explained["Plan"])


def _check(plan: Plan, name: str, budget: float) -> list[Plan]:
    scans = event_scans(plan)
    assert scans, f"{name}: no scan of job_events"
    for scan in scans:
        # The planner rightly scans an empty partition (legacy, default) sequentially.
        sequential = scan["Node Type"] == "Seq Scan" and rows_read(scan) > 0
        assert not sequential, f"{name}: sequential scan of {scan['Relation Name']}"
    read = sum(rows_read(scan) for scan in scans)
    assert read <= budget, f"{name}: read {read:g} rows of job_events, budget {budget:g}"
    return scans


@pytest.mark.parametrize("generic", [False, True])
async def test_a_jobs_events_are_found_by_the_job_id_index(
    pool: asyncpg.Pool, firsts: list[uuid.UUID], generic: bool
) -> None:
    plan = await _explain(pool, "job_events_list", (firsts[3],), generic)
    _check(plan, "job_events_list", budget=4)


@pytest.mark.parametrize("generic", [False, True])
async def test_the_duplicate_report_check_reads_the_reported_jobs_events_only(
    pool: asyncpg.Pool, firsts: list[uuid.UUID], generic: bool
) -> None:
    worker = uuid.uuid4()
    args = (firsts, [1] * len(firsts), [worker] * len(firsts), [uuid.uuid4()] * len(firsts), 0)
    plan = await _explain(pool, "jobs_attempt_outcomes", args, generic)
    _check(plan, "jobs_attempt_outcomes", budget=4 * len(firsts))


@pytest.mark.parametrize("generic", [False, True])
async def test_the_publisher_reads_its_events_in_their_days_partition_only(
    pool: asyncpg.Pool, firsts: list[uuid.UUID], generic: bool, day: Days
) -> None:
    limit = 1000
    plan = await _explain(pool, "event_outbox_read", (limit,), generic)
    scans = _check(plan, "event_outbox_read", budget=limit + JOBS_PER_DAY)
    executed = {s["Relation Name"] for s in scans if s["Actual Loops"] > 0}
    partitions = len(await PgHistoryPartitionStore(pool).history_partitions())
    assert partitions > DAYS
    # The outbox rows hold the last day's events only: that day's partition is searched.
    last_day = day(DAYS)
    assert executed == {f"job_events_p{last_day:%Y%m%d}"}


# --- the maintainer's checks for live jobs ---------------------------------------------------

FINISHED_PER_DAY = 300
LIVE = [status.value for status in LIVE_STATUSES]


@dataclass(frozen=True)
class Week:
    """Seven days of finished jobs, each day's jobs and events in that day's partitions, and
    four unfinished jobs: PENDING on day 0, FAILED (resting, as a hand-made update leaves it)
    on day 1 and on day 3 (a client's v4 id, in the default partition), RUNNING on day 5."""

    days: list[date]
    events: dict[date, Partition]
    live: int


async def _week(pool: asyncpg.Pool) -> Week:
    # the days with a partition of jobs and one of job_events (the migration made both)
    job_days = {
        job_id_moment(p.lower).date()
        for p in await PgJobPartitionStore(pool).job_partitions()
        if p.lower is not None
    }
    events = {
        p.lower.astimezone(UTC).date(): p
        for p in await PgHistoryPartitionStore(pool).history_partitions()
        if p.lower is not None and not p.is_default
    }
    days = sorted(job_days & set(events))[:7]
    assert len(days) == 7, days
    for d in days:
        start = datetime.combine(d, time(0), tzinfo=UTC)
        ids = [uuid7_at(start + timedelta(seconds=n)) for n in range(FINISHED_PER_DAY)]
        await pool.execute(
            "INSERT INTO jobs (job_id, queue_name, status, attempt, completed_at, created_at)"
            " SELECT j, 'default', 'DONE', 1, $2, $2 FROM unnest($1::uuid[]) AS j",
            ids,
            start,
        )
        await pool.execute(
            "INSERT INTO job_events (job_id, to_status, reason, attempt, occurred_at)"
            " SELECT j, s::job_status, r, 1, $2 FROM unnest($1::uuid[]) AS j,"
            " (VALUES ('PENDING', 'SUBMITTED'), ('DONE', 'COMPLETED')) AS v(s, r)",
            ids,
            start + timedelta(hours=6),
        )
    live = [(0, "PENDING", False), (1, "FAILED", False), (3, "FAILED", True), (5, "RUNNING", False)]
    for n, status, v4 in live:
        moment = datetime.combine(days[n], time(7), tzinfo=UTC)
        # a v4 id with its first bits set: a "moment" thousands of years ahead, in jobs_legacy
        job_id = uuid.UUID(int=uuid.uuid4().int | 0xF << 124) if v4 else uuid7_at(moment)
        await pool.execute(
            "INSERT INTO jobs (job_id, queue_name, status, created_at)"
            " VALUES ($1, 'default', $2::job_status, $3)",
            job_id,
            status,
            moment,
        )
        await pool.execute(
            "INSERT INTO job_events (job_id, to_status, reason, occurred_at)"
            " VALUES ($1, 'PENDING', 'SUBMITTED', $2)",
            job_id,
            moment,
        )
    await pool.execute("ANALYZE jobs; ANALYZE job_events")
    return Week(days, events, len(live))


def _rows_read_of_jobs(plan: Plan, days: list[date]) -> tuple[float, list[str]]:
    """The rows read from the partitions of jobs of `days`, and those of them scanned
    sequentially (a scan that read rows, not one that was pruned or found nothing)."""
    names = {job_partition_name(d) for d in days}
    found = scans(plan, lambda node: relation(node) in names)
    sequential = [relation(s) for s in found if s["Node Type"] == "Seq Scan" and rows_read(s) > 0]
    return sum(rows_read(s) for s in found), sequential


@pytest.mark.parametrize("generic", [False, True])
async def test_the_live_partitions_check_reads_no_job_within_the_retention(
    pool: asyncpg.Pool, generic: bool
) -> None:
    """Days 0-3 past the retention: the check finds the PENDING job (side table) and the
    FAILED ones (among the jobs of days before $1 and of the default partition: no side table
    leads to them), and reads the jobs of days 5-6 only by primary key, for the live job
    among them: not every job."""
    week = await _week(pool)
    old = [week.events[d] for d in week.days[:4]]
    upper = old[-1].upper
    assert upper is not None
    created_before = upper + timedelta(days=1)
    args = (created_before, LIVE, [p.oid for p in old])
    found = {r["oid"] for r in await pool.fetch(live_partitions_sql(), *args)}
    assert found == {week.events[week.days[n]].oid for n in (0, 1, 3)}

    plan = await _explain(pool, "history_live_partitions", args, generic, live_partitions_sql())
    _check(plan, "history_live_partitions", budget=4 * week.live)
    read, sequential = _rows_read_of_jobs(plan, week.days[5:])
    assert not sequential, f"jobs within the retention scanned: {sequential}"
    assert read <= week.live, f"read {read:g} rows of jobs within the retention"


@pytest.mark.parametrize("generic", [False, True])
async def test_the_check_under_the_detach_lock_reads_no_job_within_the_retention(
    pool: asyncpg.Pool, generic: bool
) -> None:
    """The re-check of a partition holding no live job's event (day 2) while job_events is
    locked: it goes through every unfinished job, and reads the jobs of the days within the
    retention only by primary key."""
    week = await _week(pool)
    partition = week.events[week.days[2]]
    assert partition.upper is not None
    args = (partition.upper + timedelta(days=1), LIVE)
    sql = detached_live_sql(partition.name)
    assert await pool.fetchval(sql, *args) is False

    plan = await _explain(pool, "history_detached_live", args, generic, sql=sql)
    read, sequential = _rows_read_of_jobs(plan, week.days[4:])
    assert not sequential, f"jobs within the retention scanned: {sequential}"
    assert read <= week.live, f"read {read:g} rows of jobs within the retention"
