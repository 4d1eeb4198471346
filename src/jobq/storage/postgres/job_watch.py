"""PostgreSQL reads of WatchJobs: many jobs by id, in one statement each."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

from jobq.domain.records import Job
from jobq.storage.postgres.rows import job_detail_from_row
from jobq.storage.queries import query


class PgJobWatchStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def jobs_get_many(self, job_ids: Sequence[UUID]) -> list[Job]:
        rows = await self._pool.fetch(query("jobs_get_many"), list(job_ids))
        return [job_detail_from_row(row) for row in rows]

    async def jobs_ended(self, job_ids: Sequence[UUID]) -> list[Job]:
        rows = await self._pool.fetch(query("jobs_ended"), list(job_ids))
        return [job_detail_from_row(row) for row in rows]
