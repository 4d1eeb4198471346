"""PostgreSQL QueueStore."""

from __future__ import annotations

import asyncpg

from jobq.domain.errors import (
    QueueAlreadyExists,
    QueueNotEmpty,
    QueueNotFound,
    QueueServedByLiveWorkers,
)
from jobq.domain.flow_limits import FlowChange, Rate
from jobq.domain.records import Queue, QueueStats
from jobq.domain.states import JobStatus
from jobq.storage.postgres.rows import queue_from_row
from jobq.storage.queries import query


class PgQueueStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def queue_create(
        self,
        name: str,
        max_retries: int = 3,
        ttl_seconds: int | None = None,
        max_interruptions: int = 3,
    ) -> Queue:
        row = await self._pool.fetchrow(
            query("queue_create"), name, max_retries, ttl_seconds, max_interruptions
        )
        if row is None:
            raise QueueAlreadyExists(name)
        return queue_from_row(row)

    async def queue_get(self, name: str) -> Queue:
        row = await self._pool.fetchrow(query("queue_get"), name)
        if row is None:
            raise QueueNotFound(name)
        return queue_from_row(row)

    async def queue_list(self) -> list[Queue]:
        return [queue_from_row(row) for row in await self._pool.fetch(query("queue_list"))]

    async def queue_delete(self, name: str, *, force: bool = False) -> int:
        """Delete a queue and its jobs (their history goes with them); returns how many jobs.

        Refused with QueueServedByLiveWorkers while a live worker serves it, even with `force`,
        and with QueueNotEmpty while it holds any job, finished ones included, unless `force`.
        The checks and the deletion run in one transaction that holds the queue's row lock, so
        no job can be submitted to it in between. (Workers do not lock the queues they name: a
        worker registering at the very moment of the deletion is not seen; it then serves a
        queue that does not exist, as one started with a misspelt queue does.)"""
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(query("queue_lock"), name) is None:
                raise QueueNotFound(name)
            workers = await conn.fetch(query("queue_live_workers"), name)
            if workers:
                raise QueueServedByLiveWorkers(name, [row["worker_id"] for row in workers])
            counts = await conn.fetchrow(query("queue_job_counts"), name)
            assert counts is not None
            if counts["jobs"] and not force:
                raise QueueNotEmpty(name, counts["jobs"], counts["unfinished"])
            row = await conn.fetchrow(query("queue_delete"), name)
            assert row is not None
            deleted: int = row["jobs"]
            return deleted

    async def queue_stats(self, name: str) -> QueueStats:
        async with self._pool.acquire() as conn:
            queue = await conn.fetchrow(query("queue_get"), name)
            if queue is None:
                raise QueueNotFound(name)
            rows = await conn.fetch(query("queue_stats"), name)
        counts = dict.fromkeys(JobStatus, 0)
        retries = interruptions = 0
        oldest = 0.0
        for row in rows:
            counts[JobStatus(row["status"])] = row["n"]
            retries += int(row["retries"] or 0)
            interruptions += int(row["interruptions"] or 0)
            if row["oldest_s"] is not None:
                oldest = max(0.0, float(row["oldest_s"]))
        return QueueStats(
            queue_name=name,
            counts=counts,
            oldest_pending_age_s=oldest,
            total_retries=retries,
            max_interruptions=queue["max_interruptions"],
            total_interruptions=interruptions,
            queue=queue_from_row(queue),
        )

    async def queue_set_flow(self, name: str, change: FlowChange) -> Queue:
        """Pause, resume or change the limits of a queue (see FlowChange); every replica's
        dispatcher hears of it (NOTIFY 'queues'). QueueNotFound: no such queue."""
        row = await self._pool.fetchrow(
            query("queue_set_flow"),
            name,
            change.paused,
            change.max_running is not None,
            change.max_running or None,
            change.key_max_running is not None,
            change.key_max_running or None,
            *_rate_arguments(change.rate),
            *_rate_arguments(change.key_rate),
        )
        if row is None:
            raise QueueNotFound(name)
        return queue_from_row(row)

    async def queues_flow_limited(self) -> set[str]:
        """The names of the paused or limited queues."""
        return {row["name"] for row in await self._pool.fetch(query("queues_flow_limited"))}


def _rate_arguments(rate: Rate | None) -> tuple[bool, int | None, int | None]:
    """(set?, limit, period in ms) of queue_set_flow; a rate of limit 0 removes it."""
    if rate is None:
        return (False, None, None)
    if rate.limit == 0:
        return (True, None, None)
    return (True, rate.limit, rate.period_ms)
