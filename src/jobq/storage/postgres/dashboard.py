"""PostgreSQL DashboardStore: the overview's samples of every replica's activity."""

from __future__ import annotations

import asyncpg

from jobq.storage.queries import query
from jobq.storage.stores import ActivitySample


class PgDashboardStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def dashboard_head(self) -> int:
        head: int = await self._pool.fetchval(query("dashboard_head"))
        return head

    async def dashboard_activity(self, after_id: int, pending_cap: int) -> ActivitySample:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(query("dashboard_activity"), after_id)
            pending: int = await conn.fetchval(query("dashboard_pending"), pending_cap)
        assert row is not None
        return ActivitySample(
            last_id=row["last_id"],
            submitted=row["submitted"],
            started=row["started"],
            finished=row["finished"],
            failed=row["failed"],
            pending=pending,
        )
