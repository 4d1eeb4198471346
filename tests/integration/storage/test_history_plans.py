"""The hot reads of job_events stay index plans once it is partitioned by day (V23).

A history spread over DAYS daily partitions (EVENTS_PER_DAY events each, four per job) plus the
legacy one; the statements run as production runs them (custom and generic plan), and their
executed plans (`EXPLAIN ANALYZE`, inside a rolled-back transaction) are read: no partition of
job_events may be read by a sequential scan, the rows read stay proportional to the rows the
statement is about, and the publisher's read (event_outbox_read) runs in the partitions of its
outbox rows' days only (run-time pruning on the span V23 records), not in every partition.
They measure no time.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
import pytest
from support.plans import Plan, relation, rows_read, scans

from jobq.server.history_maintainer import HistoryMaintainer
from jobq.storage.postgres.event_outbox import PgEventOutboxStore
from jobq.storage.postgres.history_partitions import PgHistoryPartitionStore
from jobq.storage.queries import query

DAYS = 10
JOBS_PER_DAY = 500
EVENTS_PER_DAY = 4 * JOBS_PER_DAY
TODAY = datetime.now(UTC).date()


def event_scans(plan: Any) -> list[Plan]:
    """Every scan node of a partition of job_events."""
    return scans(plan, lambda node: relation(node).startswith("job_events"))


async def _fill(pool: asyncpg.Pool) -> list[uuid.UUID]:
    """DAYS days of finished jobs from tomorrow on, each day's events in its own partition, the
    last day's written while the outbox captures; returns each day's first job."""
    await HistoryMaintainer(
        PgHistoryPartitionStore(pool), retention_days=0, premake_days=DAYS, interval_s=3600
    ).run_once()
    firsts = []
    for offset in range(1, DAYS + 1):
        if offset == DAYS:
            await PgEventOutboxStore(pool).capture_set(True)
        start = datetime.combine(TODAY + timedelta(days=offset), time(6), tzinfo=UTC)
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
async def firsts(pool: asyncpg.Pool) -> list[uuid.UUID]:
    return await _fill(pool)


async def _explain(pool: asyncpg.Pool, name: str, args: tuple[object, ...], generic: bool) -> Plan:
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            if generic:
                await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            raw = await conn.fetchval(
                f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {query(name)}", *args
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
    pool: asyncpg.Pool, firsts: list[uuid.UUID], generic: bool
) -> None:
    limit = 1000
    plan = await _explain(pool, "event_outbox_read", (limit,), generic)
    scans = _check(plan, "event_outbox_read", budget=limit + JOBS_PER_DAY)
    executed = {s["Relation Name"] for s in scans if s["Actual Loops"] > 0}
    partitions = len(await PgHistoryPartitionStore(pool).history_partitions())
    assert partitions > DAYS
    # The outbox rows hold the last day's events only: that day's partition is searched.
    last_day = TODAY + timedelta(days=DAYS)
    assert executed == {f"job_events_p{last_day:%Y%m%d}"}
