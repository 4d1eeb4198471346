"""PostgreSQL JobEventStore: reads of the append-only job history (writes happen in the same
statements that change jobs, in PgJobStore)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from jobq.domain.errors import JobNotFound
from jobq.domain.records import JobEvent, JobEventPage
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

    async def job_events_page(
        self,
        *,
        after_id: int = 0,
        limit: int = 100,
        job_id: UUID | None = None,
        queue_name: str | None = None,
        newest: bool = False,
    ) -> JobEventPage:
        """Events with an id above `after_id`, oldest first: the first `limit` of them, or the
        last `limit` when `newest`; of every job, or one job and/or one queue."""
        async with self._pool.acquire() as conn:
            # The head is read before the page, never after: an event committed between the
            # two statements then has an id above the head or is in the page, so a reader that
            # goes on from last_id misses no event visible to the page's statement. (Read
            # after, the head could pass an event the page did not see.)
            head: int = await conn.fetchval(query("job_events_head"))
            if job_id is not None:
                rows = await conn.fetch(
                    query("job_events_of_job"), after_id, limit, queue_name, job_id, newest
                )
            else:
                name = "job_events_newest" if newest else "job_events_after"
                rows = await conn.fetch(query(name), after_id, limit, queue_name)
        events = [job_event_from_row(row) for row in rows]
        if events and len(events) == limit and not newest:
            # A full page: more may follow right after its last event.
            return JobEventPage(events, events[-1].id)
        # Every matching event up to the head was returned (newest: everything after the
        # page's last event was in it), so the next page starts after the head.
        last = events[-1].id if events else 0
        return JobEventPage(events, max(after_id, head, last))
