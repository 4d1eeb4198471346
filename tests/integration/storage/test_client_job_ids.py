"""Job ids chosen by clients (the SDK's submits) against a real PostgreSQL: a submit of an id a
job already has returns that job instead of creating one, decided by the primary key
(jobs_insert_by_id) rather than a read before the write, so retries racing each other through
two pools still make one job; a batch mixing keys, client ids and server ids is one commit."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from jobq.domain.errors import QueueNotFound
from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob, Submitted
from jobq.storage.postgres.job_insert import InsertBatch
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.queries import query

ROUNDS = 20
IDS = 100


def _chosen(job_id: uuid.UUID | None = None, queue: str = "default") -> NewJob:
    """A job whose client chose its id."""
    return NewJob(job_id or uuid7(), queue, b"{}", id_from_client=True)


def _plain(key: str | None = None) -> NewJob:
    """A job whose id the server made (and maybe a key)."""
    return NewJob(uuid7(), "default", b"{}", idempotency_key=key)


async def _counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """Jobs, SUBMITTED events, and keys written."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM jobs) AS jobs, "
        "(SELECT count(*) FROM job_events WHERE reason = 'SUBMITTED') AS events, "
        "(SELECT count(idempotency_key) FROM jobs) AS keys"
    )
    assert row is not None
    return row["jobs"], row["events"], row["keys"]


async def test_a_second_submit_of_an_id_returns_the_first_job(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    batch = [_chosen() for _ in range(3)]
    made = await jobs.jobs_insert(batch)
    assert [(r.job_id, r.existing) for r in made] == [(j.job_id, False) for j in batch]
    again = await jobs.jobs_insert([_chosen(j.job_id) for j in batch])  # a retry
    assert again == [Submitted(r.job_id, r.created_at, existing=True) for r in made]
    assert await _counts(pool) == (3, 3, 0)  # one event each, and no key written


async def test_a_retry_finds_what_committed_and_inserts_the_rest(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    [first] = await jobs.jobs_insert([committed := _chosen()])
    retry = [_chosen(committed.job_id), _chosen()]
    results = await jobs.jobs_insert(retry)
    assert results[0] == Submitted(committed.job_id, first.created_at, existing=True)
    assert (results[1].job_id, results[1].existing) == (retry[1].job_id, False)
    assert results[1].created_at > first.created_at
    assert await _counts(pool) == (2, 2, 0)


async def test_repeats_of_an_id_in_one_batch_resolve_to_its_first_job(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    same = uuid7()
    results = await jobs.jobs_insert([_chosen(same), _chosen(), _chosen(same)])
    assert (results[0].job_id, results[0].existing) == (same, False)
    assert results[2] == Submitted(same, results[0].created_at, existing=True)
    assert await _counts(pool) == (2, 2, 0)


async def test_keys_client_ids_and_server_ids_in_one_batch_commit_together(
    pool: asyncpg.Pool,
) -> None:
    jobs = PgJobStore(pool)
    [held] = await jobs.jobs_insert([_plain("held")])
    batch = [_chosen(), _plain("new"), _plain(), _plain("held"), _chosen()]
    results = await jobs.jobs_insert(batch)
    assert [(r.job_id, r.existing) for r in results] == [
        (batch[0].job_id, False),
        (batch[1].job_id, False),
        (batch[2].job_id, False),
        (held.job_id, True),
        (batch[4].job_id, False),
    ]
    assert len({r.created_at for r in results if not r.existing}) == 1  # one transaction
    again = await jobs.jobs_insert([_chosen(batch[0].job_id), _plain("new")])
    assert [(r.job_id, r.existing) for r in again] == [
        (batch[0].job_id, True),
        (batch[1].job_id, True),
    ]
    assert await _counts(pool) == (5, 5, 2)


async def test_an_unknown_queue_fails_the_whole_mixed_batch(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    with pytest.raises(QueueNotFound, match="nowhere"):
        await jobs.jobs_insert([_plain("k"), _chosen(queue="nowhere")])
    with pytest.raises(QueueNotFound, match="nowhere"):
        await jobs.jobs_insert([_chosen(), _chosen(queue="nowhere")])
    assert await _counts(pool) == (0, 0, 0)


# --- concurrency -------------------------------------------------------------------------------


async def test_racing_retries_of_an_id_on_two_replicas_make_one_job(
    replicas: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    one, two = PgJobStore(replicas[0]), PgJobStore(replicas[1])
    for _ in range(ROUNDS):
        same = uuid7()
        [a], [b] = await asyncio.gather(
            one.jobs_insert([_chosen(same)]), two.jobs_insert([_chosen(same)])
        )
        assert a.job_id == b.job_id == same
        assert sorted([a.existing, b.existing]) == [False, True]
        assert a.created_at == b.created_at
    assert await _counts(replicas[0]) == (ROUNDS, ROUNDS, 0)


async def test_racing_batches_of_shared_ids_in_opposite_orders_do_not_deadlock(
    replicas: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    one, two = PgJobStore(replicas[0]), PgJobStore(replicas[1])
    for _ in range(ROUNDS):
        ids = [uuid7() for _ in range(IDS)]
        got_a, got_b = await asyncio.gather(
            one.jobs_insert([_chosen(i) for i in ids]),
            two.jobs_insert([_chosen(i) for i in reversed(ids)]),
        )
        assert [r.job_id for r in got_a] == ids
        for a, b in zip(got_a, reversed(got_b), strict=True):
            assert a.existing != b.existing
    assert await _counts(replicas[0]) == (ROUNDS * IDS, ROUNDS * IDS, 0)


async def test_an_id_found_in_the_same_transaction_is_not_taken_for_a_new_job(
    pool: asyncpg.Pool,
) -> None:
    """Found rows are told from inserted ones by the row itself, not by the clock: within one
    transaction (one now(), as two transactions starting in the same microsecond have) the
    second insert of an id finds the first."""
    batch = InsertBatch([_chosen()])
    async with pool.acquire() as conn, conn.transaction():
        first = await conn.fetch(query("jobs_insert_by_id"), *batch.id_arguments(False))
        again = await conn.fetch(query("jobs_insert_by_id"), *batch.id_arguments(False))
    assert [tuple(row) for row in first] == [(batch.by_id[0].job_id, first[0][1], False)]
    assert [tuple(row) for row in again] == [(batch.by_id[0].job_id, first[0][1], True)]
    assert await _counts(pool) == (1, 1, 0)
