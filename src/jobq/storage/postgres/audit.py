"""PostgreSQL AuditStore: the append-only audit trail of admin actions (`audit_events`)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from jobq.domain.records import AuditEvent, AuditPage, NewAuditEvent
from jobq.storage.page_token import decode_audit_page_token, encode_audit_page_token
from jobq.storage.postgres.rows import audit_event_from_row
from jobq.storage.queries import query


class PgAuditStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def audit_event_insert(self, event: NewAuditEvent) -> AuditEvent:
        """Append one record in a transaction of its own; returns it with its id and time."""
        row = await self._pool.fetchrow(
            query("audit_event_insert"),
            event.actor,
            event.action,
            event.target,
            event.outcome,
            event.detail,
        )
        assert row is not None
        return audit_event_from_row(row)

    async def audit_events_list(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        limit: int = 20,
        page_token: str = "",
    ) -> AuditPage:
        """Newest first; `next_page_token` is empty on the last page."""
        after: tuple[datetime | None, int | None] = (None, None)
        if page_token:
            after = decode_audit_page_token(page_token)
        rows = await self._pool.fetch(
            query("audit_events_list"),
            action,
            actor,
            after[0],
            after[1],
            limit + 1,  # one more than asked tells whether another page exists
        )
        events = [audit_event_from_row(row) for row in rows[:limit]]
        token = ""
        if len(rows) > limit and events:
            token = encode_audit_page_token(events[-1].occurred_at, events[-1].id)
        return AuditPage(events=events, next_page_token=token)
