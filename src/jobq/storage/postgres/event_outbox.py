"""PostgreSQL EventOutboxStore: the event outbox of db/migrations/V15 and its publisher lease.

Capture (the trigger that copies job_events rows into event_outbox) is switched with DDL, so an
installation without Kafka pays nothing per event; the switch takes job_events' lock for an
instant and is bounded by `CAPTURE_LOCK_TIMEOUT_MS`, so a start-up never queues behind a long
transaction (and every writer behind it) for more than that.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from jobq.domain.errors import Unavailable
from jobq.domain.records import OutboxEvent, OutboxLag
from jobq.storage.pool import settings_statement
from jobq.storage.queries import query

PUBLISHER = "kafka"
"""The row of event_publishers this store leases (one publisher today)."""

CAPTURE_LOCK_TIMEOUT_MS = 2000


class PgEventOutboxStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def capture_on(self) -> bool:
        return bool(await self._pool.fetchval(query("event_capture_state")))

    async def capture_set(self, on: bool) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            if bool(await conn.fetchval(query("event_capture_state"))) == on:
                return False
            await conn.execute(
                settings_statement({"lock_timeout": str(CAPTURE_LOCK_TIMEOUT_MS)}, local=True)
            )
            try:
                await conn.execute(query("event_capture_enable" if on else "event_capture_disable"))
            except asyncpg.LockNotAvailableError:
                raise Unavailable(
                    "cannot switch event capture: a long transaction holds job_events"
                ) from None
            return True

    async def lease_take(self, owner: str, ttl_s: float) -> tuple[bool, str | None]:
        row = await self._pool.fetchrow(
            query("event_publisher_lease"), PUBLISHER, owner, float(ttl_s)
        )
        if row is None:
            return False, None
        return True, row["previous"]

    async def lease_release(self, owner: str) -> None:
        await self._pool.execute(query("event_publisher_release"), PUBLISHER, owner)

    async def outbox_read(self, limit: int) -> list[OutboxEvent]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        rows = await self._pool.fetch(query("event_outbox_read"), limit)
        return [OutboxEvent(*row) for row in rows]

    async def outbox_delete(self, batch_ids: Sequence[int]) -> None:
        if batch_ids:
            await self._pool.execute(query("event_outbox_delete"), list(batch_ids), PUBLISHER)

    async def outbox_lag(self) -> OutboxLag:
        row = await self._pool.fetchrow(query("event_outbox_lag"), PUBLISHER)
        assert row is not None  # an aggregate of sub-selects always has its row
        return OutboxLag(
            events=row["events"],
            oldest_s=row["oldest_s"],
            published=row["published"] or 0,
            owner=row["owner"],
            idle_s=row["idle_s"],
        )
