"""The outbox of transactional enqueues (db/migrations/V14): a job written outside jq-server
leaves its id in enqueued_jobs, and whoever gets to it first takes it out, once: the
announcer (enqueued_jobs_take) or a claim (jobs_claim's `unannounced`). jq-server's own submits
leave nothing there."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg

from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob, Transition
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.caller_transaction import job_insert_in_transaction
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.workers import PgWorkerStore


async def _enqueue(pool: asyncpg.Pool, n: int = 1) -> list[uuid.UUID]:
    """n jobs written as an application's transaction writes them, committed."""
    ids = []
    async with pool.acquire() as conn, conn.transaction():
        for _ in range(n):
            job = NewJob(uuid7(), "default", b'{"handler":"m:f"}')
            await job_insert_in_transaction(conn, job, "public")
            ids.append(job.job_id)
    return ids


async def _listed(pool: asyncpg.Pool) -> set[uuid.UUID]:
    return {row["job_id"] for row in await pool.fetch("SELECT job_id FROM enqueued_jobs")}


async def test_a_server_submit_leaves_nothing_to_announce(pool: asyncpg.Pool) -> None:
    await PgJobStore(pool).jobs_insert([NewJob(uuid7(), "default", b"{}")])
    assert await _listed(pool) == set()
    assert await PgMaintenanceStore(pool).enqueued_jobs_take(10) == []


async def test_an_enqueued_job_is_taken_once_as_its_submitted_transition(
    pool: asyncpg.Pool,
) -> None:
    ids = await _enqueue(pool, 3)
    assert await _listed(pool) == set(ids)
    store = PgMaintenanceStore(pool)
    first = await store.enqueued_jobs_take(2)
    rest = await store.enqueued_jobs_take(2)
    assert await store.enqueued_jobs_take(2) == []
    created = {
        row["job_id"]: row["created_at"]
        for row in await pool.fetch("SELECT job_id, created_at FROM jobs")
    }
    assert [t.job_id for t in first + rest] == ids  # oldest first
    assert first + rest == [
        Transition.submitted(job_id, "default", created[job_id]) for job_id in ids
    ]
    assert await _listed(pool) == set()


async def test_replicas_taking_at_once_share_the_jobs_out(pool: asyncpg.Pool) -> None:
    ids = await _enqueue(pool, 200)
    stores = [PgMaintenanceStore(pool) for _ in range(4)]
    taken: list[Transition] = []
    while True:
        batches = await asyncio.gather(*(store.enqueued_jobs_take(7) for store in stores))
        taken.extend(t for batch in batches for t in batch)
        if not any(batches):
            break
    assert sorted(t.job_id for t in taken) == sorted(ids)  # each once


async def test_a_claim_takes_out_what_it_claims_and_says_so(pool: asyncpg.Pool) -> None:
    [enqueued] = await _enqueue(pool)
    submitted = NewJob(uuid7(), "default", b"{}")
    await PgJobStore(pool).jobs_insert([submitted])
    worker_id = uuid.uuid4()
    workers = PgWorkerStore(pool)
    await workers.worker_register(worker_id, "test-host", 8, ["default"])
    incarnation = (await workers.worker_get(worker_id)).incarnation
    assert incarnation is not None
    assignments = await PgJobStore(pool).jobs_claim(
        worker_id, ["default"], 8, incarnation=incarnation
    )
    flags = {a.job.job_id: a.unannounced for a in assignments}
    assert flags == {enqueued: True, submitted.job_id: False}
    assert all(a.job.status is JobStatus.ASSIGNED for a in assignments)
    assert await _listed(pool) == set()
    assert await PgMaintenanceStore(pool).enqueued_jobs_take(10) == []


async def test_a_claim_waits_for_an_announcer_holding_the_row(pool: asyncpg.Pool) -> None:
    """An announcer's DELETE not yet committed: the claim's DELETE waits for it, then finds the
    row gone, so the job is announced by the announcer alone."""
    [enqueued] = await _enqueue(pool)
    worker_id = uuid.uuid4()
    workers = PgWorkerStore(pool)
    await workers.worker_register(worker_id, "test-host", 8, ["default"])
    incarnation = (await workers.worker_get(worker_id)).incarnation
    assert incarnation is not None
    async with pool.acquire() as announcer:
        transaction = announcer.transaction()
        await transaction.start()
        await announcer.execute("DELETE FROM enqueued_jobs WHERE job_id = $1", enqueued)
        claim = asyncio.create_task(
            PgJobStore(pool).jobs_claim(worker_id, ["default"], 8, incarnation=incarnation)
        )
        await asyncio.sleep(0.3)
        assert not claim.done()  # waiting on the announcer's row lock
        await transaction.commit()
        [assignment] = await asyncio.wait_for(claim, 10)
    assert assignment.job.job_id == enqueued
    assert assignment.unannounced is False


async def test_deleting_a_job_takes_it_out(pool: asyncpg.Pool) -> None:
    [enqueued] = await _enqueue(pool)
    await pool.execute("DELETE FROM job_events WHERE job_id = $1", enqueued)
    await pool.execute("DELETE FROM jobs WHERE job_id = $1", enqueued)
    assert await _listed(pool) == set()


def test_a_submitted_transition_is_pending_at_its_creation() -> None:
    job_id = uuid7()
    created = datetime.now(UTC)
    t = Transition.submitted(job_id, "mail", created)
    assert (t.from_status, t.to_status, t.reason, t.attempt) == (
        None,
        JobStatus.PENDING,
        Reason.SUBMITTED,
        0,
    )
    assert t.occurred_at == t.created_at == created


async def test_a_cancel_takes_it_out_and_says_so(pool: asyncpg.Pool) -> None:
    [enqueued] = await _enqueue(pool)
    change = await PgJobStore(pool).job_cancel(enqueued)
    assert (change.job.status, change.was, change.unannounced) == (
        JobStatus.DEAD_LETTERED,
        JobStatus.PENDING,
        True,
    )
    assert await _listed(pool) == set()
    assert await PgMaintenanceStore(pool).enqueued_jobs_take(10) == []


async def test_ttl_expiry_waits_until_the_job_was_announced(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE queues SET ttl_seconds = 60 WHERE name = 'default'")
    [enqueued] = await _enqueue(pool)
    store = PgMaintenanceStore(pool)
    later = await pool.fetchval("SELECT now() + interval '1 hour'")
    assert await store.jobs_expire_ttl(later, 10) == []  # still to be announced
    [announced] = await store.enqueued_jobs_take(10)
    assert announced.job_id == enqueued
    [expired] = await store.jobs_expire_ttl(later, 10)
    assert (expired.job_id, expired.reason) == (enqueued, Reason.TTL_EXPIRED)
