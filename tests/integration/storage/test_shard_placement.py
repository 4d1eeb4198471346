"""Jobs of several shards (issue 21, must-show 4): with the shard count raised to 4 in this
process, the store's statements run once per shard present or served, and every row a job
leaves (jobs, its events, its side-table rows, the outbox of a transactional enqueue) carries
the shard of its id. jq-server runs with one shard; this exercises the split that several
shards need (batches split by shard, claims and sweeps per served shard) on a real database.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from support.side_tables import assert_side_tables_match

from jobq.domain import shards
from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptProgress, Failure, NewJob, Success
from jobq.domain.retry import RetryPolicy
from jobq.domain.shards import shard_of
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.caller_transaction import job_insert_in_transaction
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.workers import PgWorkerStore

SHARDS = 4
JOBS = 40
POLICY = RetryPolicy(base_delay_s=5.0, max_delay_s=300.0, random_source=lambda: 0.0)
LATER = datetime(2100, 1, 1, tzinfo=UTC)

# Every row that names a job, with the shard it carries, where it differs from the job id's.
WRONG_SHARDS = """
SELECT 'jobs' AS tab, job_id, shard FROM jobs
UNION ALL SELECT 'job_events', job_id, shard FROM job_events
UNION ALL SELECT 'ready_jobs', job_id, shard FROM ready_jobs
UNION ALL SELECT 'held_jobs', job_id, shard FROM held_jobs
UNION ALL SELECT 'enqueued_jobs', job_id, shard FROM enqueued_jobs
"""


@pytest.fixture
def four_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shards, "SHARD_COUNT", SHARDS)


async def _wrong_shards(pool: asyncpg.Pool) -> list[tuple[str, uuid.UUID, int]]:
    rows = await pool.fetch(WRONG_SHARDS)
    return [
        (r["tab"], r["job_id"], r["shard"]) for r in rows if r["shard"] != shard_of(r["job_id"])
    ]


def _id_on_shard(shard: int) -> uuid.UUID:
    """A fresh UUIDv7 whose shard is `shard` (consecutive ids take the shards in turn)."""
    while shard_of(job_id := uuid7()) != shard:
        pass
    return job_id


async def _shards_of_rows(pool: asyncpg.Pool, table: str) -> set[int]:
    return {r["shard"] for r in await pool.fetch(f"SELECT DISTINCT shard FROM {table}")}


async def test_a_job_lives_on_the_shard_of_its_id_through_every_statement(
    pool: asyncpg.Pool, four_shards: None
) -> None:
    jobs, workers, maintenance = PgJobStore(pool), PgWorkerStore(pool), PgMaintenanceStore(pool)
    # keyed and plain jobs in one batch: several statements of each kind, one transaction
    batch = [NewJob(uuid7(), "default", b"{}") for _ in range(JOBS // 2)] + [
        NewJob(uuid7(), "default", b"{}", idempotency_key=f"k{n}") for n in range(JOBS // 2)
    ]
    submitted = await jobs.jobs_insert(batch)
    assert [s.job_id for s in submitted] == [j.job_id for j in batch]
    assert {shard_of(j.job_id) for j in batch} == set(range(SHARDS))  # uuid7 counts in rand_a
    assert await _shards_of_rows(pool, "jobs") == set(range(SHARDS))
    # the same keys again: each key's holder found, on its shard. A key is unique per shard
    # (job_idempotency_keys' key leads with shard, V24/V25), so a resubmit finds its holder
    # when its id is on the key's shard: what minting a keyed job's id on its key's shard
    # (docs/scaling.md, F10) will guarantee once there is more than one shard; minted so here.
    again = await jobs.jobs_insert(
        [
            NewJob(_id_on_shard(shard_of(j.job_id)), "default", b"{}", idempotency_key=f"k{n}")
            for n, j in enumerate(batch[JOBS // 2 :])
        ]
    )
    assert [s.job_id for s in again] == [j.job_id for j in batch[JOBS // 2 :]]
    assert all(s.existing for s in again)

    worker_id = uuid.uuid4()
    registration = await workers.worker_register(worker_id, "host", JOBS, ["default"])
    claimed = await jobs.jobs_claim(
        worker_id, ["default"], JOBS, incarnation=registration.incarnation
    )
    assert sorted(a.job.job_id for a in claimed) == sorted(j.job_id for j in batch)
    refs = [a.ref for a in claimed]
    await assert_side_tables_match(pool)

    started = await jobs.jobs_start(refs[:30])
    assert all(r.accepted for r in started.results)
    # a start sent twice is a duplicate, found on each job's shard
    assert [r.message for r in (await jobs.jobs_start(refs[:30])).results] == ["duplicate"] * 30
    await jobs.jobs_record_progress([AttemptProgress(r, 0.5) for r in refs[:10]])
    cancelled = await jobs.job_cancel(refs[10].job_id, "test")
    assert cancelled.requested
    finished = await jobs.jobs_finish_cancelled([refs[10]], ["stopped"])
    assert [r.accepted for r in finished.results] == [True]
    completed = await jobs.jobs_complete(
        [Success(r.job_id, r.attempt, r.worker_id, b"1", claim_id=r.claim_id) for r in refs[:10]]
        + [
            Success(r.job_id, r.attempt, r.worker_id, b"1", claim_id=r.claim_id)
            for r in refs[30:35]  # never started: ASSIGNED → RUNNING → DONE
        ]
    )
    assert all(r.accepted for r in completed.results)
    failed = await jobs.jobs_fail(
        [
            Failure(r.job_id, r.attempt, r.worker_id, "boom", claim_id=r.claim_id)
            for r in refs[11:20]
        ],
        POLICY,
    )
    assert all(r.accepted for r in failed.results)
    released = await jobs.jobs_release(refs[35:38], Reason.WORKER_SHUTDOWN)
    assert all(r.accepted for r in released.results)

    # what is still held (refs 20-29 RUNNING, 38-39 ASSIGNED), found on every shard
    held = await jobs.jobs_held_by_worker(worker_id)
    assert sorted(h.job_id for h in held) == sorted(r.job_id for r in refs[20:30] + refs[38:])
    lost = await maintenance.workers_mark_lost(30.0, LATER)
    assert lost == [worker_id]  # on its home shard
    rescued = await maintenance.jobs_held_by_offline_workers(30.0, LATER)
    assert sorted(r.job_id for r in rescued) == sorted(h.job_id for h in held)
    moved = await jobs.jobs_interrupt(rescued, Reason.WORKER_LOST, "test")
    assert len(moved) == len(held)

    statuses = {r["job_id"]: r["status"] for r in await pool.fetch("SELECT * FROM jobs")}
    assert statuses[refs[10].job_id] == JobStatus.DEAD_LETTERED.value
    assert {statuses[r.job_id] for r in refs[:10] + refs[30:35]} == {JobStatus.DONE.value}
    assert {statuses[r.job_id] for r in refs[11:30] + refs[35:]} == {JobStatus.PENDING.value}
    assert await _wrong_shards(pool) == []
    await assert_side_tables_match(pool)
    worker_shard = await pool.fetchval("SELECT shard FROM workers WHERE worker_id = $1", worker_id)
    assert worker_shard == shard_of(worker_id)


async def test_a_transactional_enqueue_and_its_outbox_row_carry_the_jobs_shard(
    pool: asyncpg.Pool, four_shards: None
) -> None:
    """The outbox of a transactional enqueue (V14) and its announcement, per shard."""
    jobs = [NewJob(uuid7(), "default", b"{}") for _ in range(8)]
    assert len({shard_of(j.job_id) for j in jobs}) > 1
    async with pool.acquire() as conn, conn.transaction():
        for job in jobs:
            await job_insert_in_transaction(conn, job, "public")
    assert await _shards_of_rows(pool, "enqueued_jobs") == {shard_of(j.job_id) for j in jobs}
    assert await _wrong_shards(pool) == []
    taken = await PgMaintenanceStore(pool).enqueued_jobs_take()
    assert sorted(t.job_id for t in taken) == sorted(j.job_id for j in jobs)
    assert await pool.fetchval("SELECT count(*) FROM enqueued_jobs") == 0


async def test_with_one_shard_every_row_is_on_shard_zero(pool: asyncpg.Pool) -> None:
    """The default: nothing changes for a single PostgreSQL."""
    store = PgJobStore(pool)
    await store.jobs_insert([NewJob(uuid7(), "default", b"{}") for _ in range(20)])
    assert await _shards_of_rows(pool, "jobs") == {0}
    assert await _shards_of_rows(pool, "job_events") == {0}
    assert await _shards_of_rows(pool, "ready_jobs") == {0}
