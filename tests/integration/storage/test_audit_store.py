"""PgAuditStore against a real PostgreSQL: append, list newest first, filter, paginate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from jobq.domain.errors import InvalidArgument
from jobq.domain.records import NewAuditEvent
from jobq.storage.page_token import (
    decode_audit_page_token,
    encode_audit_page_token,
    encode_page_token,
)
from jobq.storage.postgres.audit import PgAuditStore


def _event(
    action: str = "queue.delete", actor: str = "token:ci", target: str = "q"
) -> NewAuditEvent:
    return NewAuditEvent(actor=actor, action=action, target=target, outcome="ok")


async def test_insert_returns_the_stored_record(pool: asyncpg.Pool) -> None:
    store = PgAuditStore(pool)
    before = await pool.fetchval("SELECT now()")
    stored = await store.audit_event_insert(
        NewAuditEvent(
            actor="cert:ops-1",
            action="queue.delete",
            target="emails",
            outcome="FAILED_PRECONDITION: queue 'emails' holds 5 job(s)",
            detail="force=false",
        )
    )
    assert stored.id >= 1
    assert stored.occurred_at >= before
    assert (stored.actor, stored.action, stored.target, stored.outcome, stored.detail) == (
        "cert:ops-1",
        "queue.delete",
        "emails",
        "FAILED_PRECONDITION: queue 'emails' holds 5 job(s)",
        "force=false",
    )
    page = await store.audit_events_list()
    assert page.events == [stored]
    assert page.next_page_token == ""


async def test_the_table_refuses_empty_actor_action_and_outcome(pool: asyncpg.Pool) -> None:
    store = PgAuditStore(pool)
    for event in (
        NewAuditEvent(actor="", action="job.cancel", target="x", outcome="ok"),
        NewAuditEvent(actor="anonymous", action="", target="x", outcome="ok"),
        NewAuditEvent(actor="anonymous", action="job.cancel", target="x", outcome=""),
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            await store.audit_event_insert(event)


async def test_list_is_newest_first_and_filters_by_action_and_actor(pool: asyncpg.Pool) -> None:
    store = PgAuditStore(pool)
    first = await store.audit_event_insert(_event("queue.create", "token:ci", "a"))
    second = await store.audit_event_insert(_event("queue.delete", "token:ci", "a"))
    third = await store.audit_event_insert(_event("queue.delete", "anonymous", "b"))
    assert [e.id for e in (await store.audit_events_list()).events] == [
        third.id,
        second.id,
        first.id,
    ]
    by_action = await store.audit_events_list(action="queue.delete")
    assert [e.id for e in by_action.events] == [third.id, second.id]
    by_actor = await store.audit_events_list(actor="token:ci")
    assert [e.id for e in by_actor.events] == [second.id, first.id]
    both = await store.audit_events_list(action="queue.delete", actor="token:ci")
    assert [e.id for e in both.events] == [second.id]
    assert (await store.audit_events_list(action="job.retry")).events == []


async def test_pages_cover_every_record_once_in_order(pool: asyncpg.Pool) -> None:
    store = PgAuditStore(pool)
    ids = [(await store.audit_event_insert(_event(target=str(i)))).id for i in range(7)]
    # Several records in one transaction share occurred_at: the id breaks the tie.
    await pool.execute(
        "INSERT INTO audit_events (actor, action, target, outcome)"
        " SELECT 'anonymous', 'job.cancel', 'same-time-' || n, 'ok' FROM generate_series(1, 3) n"
    )
    seen: list[int] = []
    token = ""
    pages = 0
    while True:
        page = await store.audit_events_list(limit=3, page_token=token)
        seen.extend(e.id for e in page.events)
        pages += 1
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert pages == 4  # 10 records, 3 a page
    assert len(seen) == len(set(seen)) == 10
    rows = await pool.fetch("SELECT id FROM audit_events ORDER BY occurred_at DESC, id DESC")
    assert seen == [row["id"] for row in rows]
    assert set(ids) <= set(seen)


async def test_a_full_last_page_has_no_next_token(pool: asyncpg.Pool) -> None:
    store = PgAuditStore(pool)
    for i in range(4):
        await store.audit_event_insert(_event(target=str(i)))
    first = await store.audit_events_list(limit=2)
    last = await store.audit_events_list(limit=2, page_token=first.next_page_token)
    assert len(last.events) == 2
    assert last.next_page_token == ""


async def test_filters_apply_across_pages(pool: asyncpg.Pool) -> None:
    store = PgAuditStore(pool)
    for i in range(6):
        await store.audit_event_insert(
            _event("job.cancel" if i % 2 else "job.retry", target=str(i))
        )
    page = await store.audit_events_list(action="job.cancel", limit=2)
    rest = await store.audit_events_list(
        action="job.cancel", limit=2, page_token=page.next_page_token
    )
    assert [e.target for e in page.events + rest.events] == ["5", "3", "1"]
    assert rest.next_page_token == ""


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("not-base64!", id="garbage"),
        pytest.param("eyJ4IjoxfQ", id="json-without-fields"),
        pytest.param(encode_page_token(datetime.now(UTC), uuid.uuid4()), id="jobs"),
        pytest.param("A" * 300, id="too-long"),
    ],
)
async def test_a_malformed_page_token_is_invalid_argument(pool: asyncpg.Pool, token: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        await PgAuditStore(pool).audit_events_list(page_token=token)


def test_page_tokens_round_trip_and_refuse_bad_ids() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert decode_audit_page_token(encode_audit_page_token(at, 42)) == (at, 42)
    for bad in (0, -1):
        with pytest.raises(InvalidArgument, match="page_token"):
            decode_audit_page_token(encode_audit_page_token(at, bad))
    with pytest.raises(InvalidArgument, match="page_token"):
        decode_audit_page_token(encode_audit_page_token(at.replace(tzinfo=None), 1))


async def test_the_newest_first_listing_reads_an_index(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO audit_events (actor, action, target, outcome)"
        " SELECT 'anonymous', 'job.cancel', n::text, 'ok' FROM generate_series(1, 2000) n"
    )
    await pool.execute("ANALYZE audit_events")
    plan = "\n".join(
        row[0]
        for row in await pool.fetch(
            "EXPLAIN SELECT id FROM audit_events ORDER BY occurred_at DESC, id DESC LIMIT 21"
        )
    )
    assert "audit_events_newest_idx" in plan
    assert "Sort" not in plan
