"""PostgreSQL JobEventStore: reads of the append-only job history (writes happen in the same
statements that change jobs, in PgJobStore)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from jobq.domain.errors import JobNotFound
from jobq.domain.records import JobEvent
from jobq.storage.postgres.rows import job_event_from_row
from jobq.storage.queries import query


class PgJobEventStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def job_events_list(self, job_id: UUID) -> list[JobEvent]:
        """A job's transitions in order; JobNotFound when the job does not exist."""
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(query("job_events_list"), job_id)
            if not rows and await conn.fetchval(query("job_exists"), job_id):
                return []
        if not rows:
            raise JobNotFound(job_id)
        return [job_event_from_row(row) for row in rows]
