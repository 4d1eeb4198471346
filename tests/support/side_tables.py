"""The invariant of V22's side tables, checked against jobs exactly: a ready_jobs row iff the job
is PENDING, a held_jobs row iff ASSIGNED or RUNNING, a waiting_jobs row iff WAITING, each row
carrying the job's current values. Shared by the storage tests (not a fixture module: the
storage conftest belongs to other work)."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Each side table as jobs says it must be, and as it is, column for column. EXCEPT both ways
# finds a missing row, an extra row and a stale value alike.
_SIDES = """
WITH ready_expected AS (
    SELECT job_id, shard, queue_name, priority, created_at, not_before,
           concurrency_key, interruptions >= 2 AS suspect
    FROM jobs WHERE status = 'PENDING'
), ready_actual AS (
    SELECT job_id, shard, queue_name, priority, created_at, not_before, concurrency_key, suspect
    FROM ready_jobs
), held_expected AS (
    SELECT job_id, shard, worker_id, queue_name, concurrency_key, status,
           interruptions >= 2 AS suspect, assigned_at, cancel_requested_at IS NOT NULL AS cancel
    FROM jobs WHERE status IN ('ASSIGNED', 'RUNNING')
), held_actual AS (
    SELECT job_id, shard, worker_id, queue_name, concurrency_key, status, suspect, assigned_at,
           cancel_requested
    FROM held_jobs
), waiting_expected AS (
    SELECT job_id, shard, queue_name FROM jobs WHERE status = 'WAITING'
), waiting_actual AS (
    SELECT job_id, shard, queue_name FROM waiting_jobs
)
"""
# Both directions for each table: expected EXCEPT actual (a row missing, or stale) and actual
# EXCEPT expected (a row too many, or stale).
_MISMATCHES = _SIDES + "\nUNION ALL\n".join(
    f"SELECT '{table}_jobs {wrong}' AS problem, job_id\n"
    f"FROM (SELECT * FROM {table}_{have} EXCEPT SELECT * FROM {table}_{want}) x"
    for table in ("ready", "held", "waiting")
    for have, want, wrong in (
        ("expected", "actual", "missing or stale"),
        ("actual", "expected", "extra or stale"),
    )
)


async def side_table_mismatches(
    db: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
) -> list[tuple[str, str]]:
    """Every (problem, job id) where a side table disagrees with jobs; [] when they agree."""
    rows = await db.fetch(_MISMATCHES)
    return [(row["problem"], str(row["job_id"])) for row in rows]


async def side_table_counts(
    db: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
) -> tuple[int, int, int]:
    """(ready, held, waiting) rows: lets a test show that the states it built are there."""
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM ready_jobs) AS r, (SELECT count(*) FROM held_jobs) AS h,"
        " (SELECT count(*) FROM waiting_jobs) AS w"
    )
    assert row is not None
    return int(row["r"]), int(row["h"]), int(row["w"])


async def assert_side_tables_match(
    db: asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy,
) -> None:
    """Fail, naming the jobs, unless every side table agrees with jobs exactly."""
    mismatches = await side_table_mismatches(db)
    assert mismatches == [], mismatches
