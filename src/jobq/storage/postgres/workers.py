"""PostgreSQL WorkerStore."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from jobq.domain.errors import WorkerNotFound
from jobq.domain.records import Worker
from jobq.domain.states import WorkerStatus
from jobq.storage.postgres.rows import worker_from_row
from jobq.storage.queries import query


class PgWorkerStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def worker_register(
        self, worker_id: UUID, hostname: str, concurrency: int, queues: Sequence[str]
    ) -> Worker:
        row = await self._pool.fetchrow(
            query("worker_register"), worker_id, hostname, concurrency, list(queues)
        )
        assert row is not None
        return worker_from_row(row)

    async def worker_heartbeat(self, worker_id: UUID, active_job_count: int) -> Worker:
        """Record a heartbeat; WorkerNotFound for unknown workers and for OFFLINE ones, which
        must register again."""
        row = await self._pool.fetchrow(query("worker_heartbeat"), worker_id, active_job_count)
        if row is None:
            raise WorkerNotFound(worker_id)
        return worker_from_row(row)

    async def worker_get(self, worker_id: UUID) -> Worker:
        row = await self._pool.fetchrow(query("worker_get"), worker_id)
        if row is None:
            raise WorkerNotFound(worker_id)
        return worker_from_row(row)

    async def worker_list(self, status: WorkerStatus | None = None) -> list[Worker]:
        rows = await self._pool.fetch(query("worker_list"), None if status is None else status)
        return [worker_from_row(row) for row in rows]

    async def worker_set_status(self, worker_id: UUID, status: WorkerStatus) -> Worker:
        row = await self._pool.fetchrow(query("worker_set_status"), worker_id, status.value)
        if row is None:
            raise WorkerNotFound(worker_id)
        return worker_from_row(row)

    async def worker_request_shutdown(self, worker_id: UUID) -> Worker:
        """Mark a live worker DRAINING with a pending SHUTDOWN command; WorkerNotFound when
        unknown or OFFLINE."""
        row = await self._pool.fetchrow(query("worker_request_shutdown"), worker_id)
        if row is None:
            raise WorkerNotFound(worker_id)
        return worker_from_row(row)

    async def worker_counts(self) -> dict[WorkerStatus, int]:
        rows = await self._pool.fetch(query("worker_counts"))
        counts = dict.fromkeys(WorkerStatus, 0)
        counts.update({WorkerStatus(row["status"]): row["n"] for row in rows})
        return counts
