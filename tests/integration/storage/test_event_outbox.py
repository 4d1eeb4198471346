"""The event outbox (db/migrations/V15) on a real PostgreSQL: capture is a switch, every writer
is captured while it is on, the publisher's lease goes to one owner at a time, and reads and
deletes are what the publisher relies on."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from jobq.domain.errors import Unavailable
from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.caller_transaction import job_insert_in_transaction
from jobq.storage.postgres.event_outbox import PgEventOutboxStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.queues import PgQueueStore


async def submit(
    pool: asyncpg.Pool, n: int, queue: str = "default", cid: str | None = None
) -> list[uuid.UUID]:
    jobs = [NewJob(uuid7(), queue, b"{}", correlation_id=cid) for _ in range(n)]
    await PgJobStore(pool).jobs_insert(jobs)
    return [job.job_id for job in jobs]


async def outbox(pool: asyncpg.Pool) -> list[int]:
    """Every event id waiting in the outbox, in order."""
    rows = await pool.fetch("SELECT unnest(event_ids) AS id FROM event_outbox ORDER BY 1")
    return [row["id"] for row in rows]


async def outbox_rows(pool: asyncpg.Pool) -> list[tuple[int, list[int]]]:
    rows = await pool.fetch("SELECT batch_id, event_ids FROM event_outbox ORDER BY batch_id")
    return [(row["batch_id"], list(row["event_ids"])) for row in rows]


async def event_ids(pool: asyncpg.Pool) -> list[int]:
    return [row["id"] for row in await pool.fetch("SELECT id FROM job_events ORDER BY 1")]


async def test_capture_is_off_until_turned_on_and_then_takes_every_writer(
    pool: asyncpg.Pool,
) -> None:
    store = PgEventOutboxStore(pool)
    assert not await store.capture_on()
    await submit(pool, 2)
    assert await outbox(pool) == []  # an installation without Kafka writes nothing there

    assert await store.capture_set(True) is True
    assert await store.capture_set(True) is False  # already on: no DDL, no lock
    assert await store.capture_on()
    before = set(await event_ids(pool))
    await submit(pool, 3)
    async with pool.acquire() as conn, conn.transaction():  # an application's enqueue
        await job_insert_in_transaction(conn, NewJob(uuid7(), "default", b"{}"), "public")
    captured = set(await event_ids(pool)) - before
    assert len(captured) == 4
    assert set(await outbox(pool)) == captured

    assert await store.capture_set(False) is True
    await submit(pool, 1)
    assert set(await outbox(pool)) == captured  # off: nothing new, nothing removed


async def test_outbox_read_returns_the_events_in_id_order_with_what_a_message_needs(
    pool: asyncpg.Pool,
) -> None:
    store = PgEventOutboxStore(pool)
    await store.capture_set(True)
    with_cid = await submit(pool, 2, cid="req-1")
    without = await submit(pool, 1)
    items = await store.outbox_read(10)

    assert [item.event_id for item in items] == sorted(await outbox(pool))
    assert [item.job_id for item in items] == [str(job) for job in with_cid + without]
    assert [item.correlation_id for item in items] == ["req-1", "req-1", None]
    first = items[0]
    assert (first.from_status, first.to_status, first.reason, first.queue_name) == (
        None,
        JobStatus.PENDING.value,
        Reason.SUBMITTED.value,
        "default",
    )
    created = await pool.fetchval("SELECT created_at FROM jobs WHERE job_id = $1", with_cid[0])
    assert first.occurred_us == int(created.timestamp() * 1_000_000)
    assert [i.event_id for i in await store.outbox_read(2)] == [i.event_id for i in items[:2]]
    with pytest.raises(ValueError, match="limit"):
        await store.outbox_read(0)


async def test_one_row_per_writing_statement_and_reads_take_whole_rows(
    pool: asyncpg.Pool,
) -> None:
    store = PgEventOutboxStore(pool)
    await store.capture_set(True)
    await submit(pool, 3)  # one statement: one row of three events
    await submit(pool, 2)
    await submit(pool, 1)
    rows = await outbox_rows(pool)
    assert [len(ids) for _, ids in rows] == [3, 2, 1]
    assert all(ids == sorted(ids) for _, ids in rows)
    # Rows up to the one that reaches the limit, never part of one, at least one.
    assert len(await store.outbox_read(1)) == 3
    assert len(await store.outbox_read(4)) == 5
    assert len(await store.outbox_read(100)) == 6
    items = await store.outbox_read(4)
    assert [item.batch_id for item in items] == [rows[0][0]] * 3 + [rows[1][0]] * 2


async def test_delete_takes_out_exactly_the_acknowledged_rows_and_counts_them(
    pool: asyncpg.Pool,
) -> None:
    store = PgEventOutboxStore(pool)
    await store.capture_set(True)
    for _ in range(3):
        await submit(pool, 2)
    (first, _), (second, b), (third, _) = await outbox_rows(pool)
    await store.outbox_delete([first, third])
    await store.outbox_delete([first])  # again (a crash between ack and delete): harmless
    assert await outbox(pool) == b
    lag = await store.outbox_lag()
    assert (lag.events, lag.published) == (2, 4)
    assert lag.oldest_s is not None
    assert lag.oldest_s >= 0
    await store.outbox_delete([second])
    lag = await store.outbox_lag()
    assert (lag.events, lag.oldest_s, lag.published) == (0, None, 6)


async def test_events_of_a_deleted_queue_come_back_empty_to_be_dropped(
    pool: asyncpg.Pool,
) -> None:
    store = PgEventOutboxStore(pool)
    await store.capture_set(True)
    await PgQueueStore(pool).queue_create("doomed")
    await submit(pool, 2, queue="doomed")
    kept = await submit(pool, 1)
    await PgQueueStore(pool).queue_delete("doomed", force=True)
    items = await store.outbox_read(10)
    assert [item.job_id for item in items] == [None, None, str(kept[0])]


async def test_the_lease_has_one_owner_until_it_runs_out_or_is_given_back(
    pool: asyncpg.Pool,
) -> None:
    store = PgEventOutboxStore(pool)
    assert (await store.outbox_lag()).idle_s == float("inf")  # never held
    assert await store.lease_take("a", 0.5) == (True, None)
    assert await store.lease_take("b", 0.5) == (False, None)
    assert await store.lease_take("a", 0.5) == (True, "a")  # renewed
    assert (await store.outbox_lag()).owner == "a"
    await asyncio.sleep(0.6)
    assert (await store.outbox_lag()).owner is None  # ran out
    assert await store.lease_take("b", 5) == (True, "a")  # taken over, previous owner named
    assert await store.lease_take("a", 5) == (False, None)
    await store.lease_release("a")  # not the owner: changes nothing
    assert (await store.outbox_lag()).owner == "b"
    await store.lease_release("b")
    lag = await store.outbox_lag()
    assert lag.owner is None
    assert 0 <= lag.idle_s < 5  # released just now
    assert await store.lease_take("a", 5) == (True, None)


async def test_racing_replicas_never_both_hold_the_lease(pool: asyncpg.Pool) -> None:
    store = PgEventOutboxStore(pool)
    results = await asyncio.gather(*(store.lease_take(f"r{i}", 30) for i in range(8)))
    assert sum(held for held, _ in results) == 1


async def test_a_long_transaction_on_job_events_makes_the_switch_unavailable_not_stuck(
    pool: asyncpg.Pool,
) -> None:
    store = PgEventOutboxStore(pool)
    async with pool.acquire() as holder, holder.transaction():
        await job_insert_in_transaction(holder, NewJob(uuid7(), "default", b"{}"), "public")
        with pytest.raises(Unavailable, match="long transaction"):
            await store.capture_set(True)
    assert not await store.capture_on()  # nothing half done
    assert await store.capture_set(True) is True  # and it works once the lock is free
