"""Jobs with events on chosen days, written straight into a migrated database, for the tests of
job_events' daily partitions (tests/integration/storage/test_history_*.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time

import asyncpg

from jobq.domain.ids import uuid7


def noon(day: date, hour: int = 12) -> datetime:
    """A moment of `day` (UTC): noon unless told."""
    return datetime.combine(day, time(hour), tzinfo=UTC)


async def job_with_events(pool: asyncpg.Pool, status: str, days: list[date]) -> uuid.UUID:
    """A job in `status` with one event at noon of each of `days`, written through job_events
    (as every statement of jobq writes them: the day's partition or the default one)."""
    job_id = uuid7()
    await pool.execute(
        "INSERT INTO jobs (job_id, queue_name, status, completed_at)"
        " VALUES ($1, 'default', $2::job_status,"
        "         CASE WHEN $2 IN ('DONE', 'DEAD_LETTERED') THEN now() END)",
        job_id,
        status,
    )
    await pool.execute(
        "INSERT INTO job_events (job_id, to_status, reason, occurred_at)"
        " SELECT $1, 'PENDING', 'SUBMITTED', d FROM unnest($2::timestamptz[]) AS d",
        job_id,
        [noon(d) for d in days],
    )
    return job_id


async def events_of(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[int]:
    """The ids of a job's events, oldest first."""
    rows = await pool.fetch("SELECT id FROM job_events WHERE job_id = $1 ORDER BY id", job_id)
    return [row["id"] for row in rows]
