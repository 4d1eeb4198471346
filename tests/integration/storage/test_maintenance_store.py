"""The recovery monitors' statements: lost workers, assignment timeouts and TTL expiry.

Time moves by passing `now` (or by backdating a heartbeat); no test sleeps for a timeout.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest

from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptRef, NewJob, Transition
from jobq.domain.states import JobStatus, Reason, WorkerStatus
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.workers import PgWorkerStore

TIMEOUT_S = 30.0


async def _worker(pool: asyncpg.Pool, queues: tuple[str, ...] = ("default",)) -> uuid.UUID:
    worker_id = uuid.uuid4()
    await PgWorkerStore(pool).worker_register(worker_id, "test-host", 8, list(queues))
    return worker_id


async def _submit(pool: asyncpg.Pool, n: int = 1, queue: str = "default") -> list[uuid.UUID]:
    new = [NewJob(uuid7(), queue, b"{}") for _ in range(n)]
    await PgJobStore(pool).jobs_insert(new)
    return [j.job_id for j in new]


async def _db_now(pool: asyncpg.Pool) -> datetime:
    now: datetime = await pool.fetchval("SELECT now()")
    return now


async def _silence(pool: asyncpg.Pool, worker_id: uuid.UUID, seconds: float = 3600) -> None:
    """Pretend the worker's last heartbeat was `seconds` ago (test set-up only)."""
    await pool.execute(
        "UPDATE workers SET last_heartbeat = last_heartbeat - make_interval(secs => $2)"
        " WHERE worker_id = $1",
        worker_id,
        float(seconds),
    )


async def _claim(
    pool: asyncpg.Pool, worker_id: uuid.UUID, n: int, *, start: bool = False, queue: str = "default"
) -> list[AttemptRef]:
    jobs = PgJobStore(pool)
    incarnation = (await PgWorkerStore(pool).worker_get(worker_id)).incarnation
    assert incarnation is not None
    claimed = await jobs.jobs_claim(worker_id, [queue], n, incarnation=incarnation)
    refs = [a.ref for a in claimed]
    if start:
        assert all(r.accepted for r in (await jobs.jobs_start(refs)).results)
    return refs


async def _event_counts(pool: asyncpg.Pool, reason: Reason) -> dict[uuid.UUID, int]:
    rows = await pool.fetch(
        "SELECT job_id, count(*) AS n FROM job_events WHERE reason = $1 GROUP BY job_id",
        reason.value,
    )
    return {row["job_id"]: row["n"] for row in rows}


async def _status(pool: asyncpg.Pool, job_id: uuid.UUID) -> JobStatus:
    return (await PgJobStore(pool).job_get(job_id)).status


# --- lost workers ----------------------------------------------------------------------------


async def test_mark_lost_takes_only_silent_live_workers(pool: asyncpg.Pool) -> None:
    workers, store = PgWorkerStore(pool), PgMaintenanceStore(pool)
    silent_online, silent_draining, fresh, gone = [await _worker(pool) for _ in range(4)]
    await workers.worker_set_status(silent_draining, WorkerStatus.DRAINING)
    await workers.worker_set_status(gone, WorkerStatus.OFFLINE)
    for worker_id in (silent_online, silent_draining, gone):
        await _silence(pool, worker_id)
    await _submit(pool)
    [held] = await _claim(pool, silent_online, 1, start=True)

    lost = await store.workers_mark_lost(TIMEOUT_S, None)

    assert sorted(lost) == sorted([silent_online, silent_draining])
    for worker_id in (silent_online, silent_draining, gone):
        assert (await workers.worker_get(worker_id)).status is WorkerStatus.OFFLINE
    assert (await workers.worker_get(fresh)).status is WorkerStatus.ONLINE
    # Marking a worker lost does not touch its jobs: the rescue is a separate, fenced step.
    assert await _status(pool, held.job_id) is JobStatus.RUNNING
    assert await store.workers_mark_lost(TIMEOUT_S, None) == []
    # A lost worker's heartbeat does not revive it.
    incarnation = (await workers.worker_get(silent_online)).incarnation
    assert incarnation is not None
    with pytest.raises(Exception, match="not found"):
        await workers.worker_heartbeat(silent_online, incarnation, 0)


async def test_mark_lost_judges_staleness_by_the_given_now(pool: asyncpg.Pool) -> None:
    store = PgMaintenanceStore(pool)
    worker_id = await _worker(pool)
    now = await _db_now(pool)
    assert await store.workers_mark_lost(TIMEOUT_S, now + timedelta(seconds=TIMEOUT_S - 1)) == []
    assert await store.workers_mark_lost(TIMEOUT_S, now + timedelta(seconds=TIMEOUT_S + 1)) == [
        worker_id
    ]


async def test_jobs_held_by_offline_workers_skips_live_and_just_deregistered_ones(
    pool: asyncpg.Pool,
) -> None:
    workers, store = PgWorkerStore(pool), PgMaintenanceStore(pool)
    await _submit(pool, 6)
    lost, deregistered, silent_but_online = [await _worker(pool) for _ in range(3)]
    lost_refs = await _claim(pool, lost, 1) + await _claim(pool, lost, 1, start=True)
    await _claim(pool, deregistered, 2)
    await _claim(pool, silent_but_online, 2)
    # `lost` was marked OFFLINE but its jobs never rescued; `deregistered` went OFFLINE just
    # now (its heartbeat is fresh); `silent_but_online` has not been marked lost yet.
    await _silence(pool, lost)
    await workers.worker_set_status(lost, WorkerStatus.OFFLINE)
    await workers.worker_set_status(deregistered, WorkerStatus.OFFLINE)
    await _silence(pool, silent_but_online)

    held = await store.jobs_held_by_offline_workers(TIMEOUT_S, None)

    assert sorted(held, key=lambda r: r.job_id) == sorted(lost_refs, key=lambda r: r.job_id)
    assert len(await store.jobs_held_by_offline_workers(TIMEOUT_S, None, 1)) == 1
    # Once the deregistered worker has been silent for the timeout, its leftovers count too.
    later = await _db_now(pool) + timedelta(seconds=TIMEOUT_S + 1)
    assert len(await store.jobs_held_by_offline_workers(TIMEOUT_S, later)) == 4


# --- assignment timeout ----------------------------------------------------------------------


async def test_unacknowledged_assignments_go_back_to_pending_without_a_retry(
    pool: asyncpg.Pool,
) -> None:
    jobs, store = PgJobStore(pool), PgMaintenanceStore(pool)
    await _submit(pool, 3)
    worker_id = await _worker(pool)
    assigned = await _claim(pool, worker_id, 2)
    [running] = await _claim(pool, worker_id, 1, start=True)
    now = await _db_now(pool)
    assert await store.jobs_expire_assignments(TIMEOUT_S, None, 100) == []
    assert await store.jobs_expire_assignments(TIMEOUT_S, now + timedelta(seconds=29), 100) == []

    moved = await store.jobs_expire_assignments(TIMEOUT_S, now + timedelta(seconds=31), 100)

    assert sorted(t.job_id for t in moved) == sorted(r.job_id for r in assigned)
    for t in moved:
        assert (t.from_status, t.to_status, t.reason) == (
            JobStatus.ASSIGNED,
            JobStatus.PENDING,
            Reason.ASSIGNMENT_TIMEOUT,
        )
        assert (t.worker_id, t.attempt, t.queue_name) == (worker_id, 1, "default")
        job = await jobs.job_get(t.job_id)
        assert (job.status, job.worker_id, job.retry_count, job.attempt, job.interruptions) == (
            JobStatus.PENDING,
            None,
            0,
            1,
            1,
        )
        last = (await PgJobEventStore(pool).job_events_list(t.job_id))[-1]
        assert (last.from_status, last.to_status, last.reason, last.worker_id, last.attempt) == (
            JobStatus.ASSIGNED,
            JobStatus.PENDING,
            Reason.ASSIGNMENT_TIMEOUT,
            worker_id,
            1,
        )
        assert last.detail == "not acknowledged within 30 s; interruption 1 of 3 allowed"
    assert await _status(pool, running.job_id) is JobStatus.RUNNING
    # The worker's late acknowledgement of the expired attempt is refused.
    [late] = (await jobs.jobs_start(assigned[:1])).results
    assert not late.accepted
    assert await _status(pool, assigned[0].job_id) is JobStatus.PENDING
    reclaimed = await _claim(pool, worker_id, 5)
    assert {r.attempt for r in reclaimed} == {2}


# --- TTL -------------------------------------------------------------------------------------


async def test_ttl_dead_letters_only_old_pending_jobs_of_queues_with_a_ttl(
    pool: asyncpg.Pool,
) -> None:
    queues, jobs, store = PgQueueStore(pool), PgJobStore(pool), PgMaintenanceStore(pool)
    await queues.queue_create("short", ttl_seconds=60)
    await queues.queue_create("long", ttl_seconds=3600)
    short = await _submit(pool, 3, "short")
    long = await _submit(pool, 1, "long")
    plain = await _submit(pool, 1)
    worker_id = await _worker(pool, ("short",))
    [assigned] = await _claim(pool, worker_id, 1, queue="short")
    [running] = await _claim(pool, worker_id, 1, start=True, queue="short")
    [pending] = set(short) - {assigned.job_id, running.job_id}
    now = await _db_now(pool)
    assert await store.jobs_expire_ttl(now + timedelta(seconds=59), 100) == []

    [t] = await store.jobs_expire_ttl(now + timedelta(seconds=120), 100)

    assert (t.job_id, t.from_status, t.to_status, t.reason, t.worker_id, t.queue_name) == (
        pending,
        JobStatus.PENDING,
        JobStatus.DEAD_LETTERED,
        Reason.TTL_EXPIRED,
        None,
        "short",
    )
    job = await jobs.job_get(pending)
    assert job.status is JobStatus.DEAD_LETTERED
    assert job.error_message == "TTL expired"
    assert job.completed_at is not None
    last = (await PgJobEventStore(pool).job_events_list(pending))[-1]
    assert (last.from_status, last.to_status, last.reason) == (
        JobStatus.PENDING,
        JobStatus.DEAD_LETTERED,
        Reason.TTL_EXPIRED,
    )
    assert last.detail == "pending longer than the queue's ttl of 60 s"
    assert await _status(pool, assigned.job_id) is JobStatus.ASSIGNED
    assert await _status(pool, running.job_id) is JobStatus.RUNNING
    assert await _status(pool, long[0]) is JobStatus.PENDING
    assert await _status(pool, plain[0]) is JobStatus.PENDING
    [t] = await store.jobs_expire_ttl(now + timedelta(days=365), 100)
    assert t.job_id == long[0]
    assert await _status(pool, plain[0]) is JobStatus.PENDING  # no TTL, never expires


# --- batches and concurrency -----------------------------------------------------------------


async def test_the_limit_bounds_every_batch(pool: asyncpg.Pool) -> None:
    store = PgMaintenanceStore(pool)
    await PgQueueStore(pool).queue_create("short", ttl_seconds=60)
    await _submit(pool, 5)
    await _submit(pool, 5, "short")
    worker_ids = [await _worker(pool) for _ in range(3)]
    await _claim(pool, worker_ids[0], 5)
    later = await _db_now(pool) + timedelta(hours=1)

    assert [len(await store.jobs_expire_assignments(TIMEOUT_S, later, 2)) for _ in range(4)] == [
        2,
        2,
        1,
        0,
    ]
    assert [len(await store.jobs_expire_ttl(later, 2)) for _ in range(4)] == [2, 2, 1, 0]
    assert [len(await store.workers_mark_lost(TIMEOUT_S, later, 2)) for _ in range(3)] == [2, 1, 0]
    with pytest.raises(ValueError, match="positive"):
        await store.jobs_expire_ttl(later, 0)


async def test_rows_another_replica_holds_are_skipped_not_waited_for(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    store = PgMaintenanceStore(pool)
    await PgQueueStore(pool).queue_create("short", ttl_seconds=60)
    busy_worker, free_worker = await _worker(pool), await _worker(pool)
    await _submit(pool, 4)
    [busy_assigned, free_assigned] = await _claim(pool, busy_worker, 2)
    busy_pending, free_pending = await _submit(pool, 2, "short")
    later = await _db_now(pool) + timedelta(hours=1)
    other = await asyncpg.connect(db_dsn)  # another replica, in the middle of a transaction
    try:
        async with other.transaction():
            await other.execute(
                "SELECT 1 FROM workers WHERE worker_id = $1 FOR UPDATE", busy_worker
            )
            await other.execute(
                "SELECT 1 FROM jobs WHERE job_id = ANY($1::uuid[]) FOR UPDATE",
                [busy_assigned.job_id, busy_pending],
            )
            # An operator changing the queue meanwhile must not hold up expiry of its jobs.
            await other.execute("UPDATE queues SET updated_at = now() WHERE name = 'short'")
            async with asyncio.timeout(5):  # waiting for the lock would hang here
                assert await store.workers_mark_lost(TIMEOUT_S, later, 10) == [free_worker]
                timed_out = await store.jobs_expire_assignments(TIMEOUT_S, later, 10)
                assert [t.job_id for t in timed_out] == [free_assigned.job_id]
                assert [t.job_id for t in await store.jobs_expire_ttl(later, 10)] == [free_pending]
    finally:
        await other.close()
    # Once the other transaction has ended, the rows it held are fair game again.
    assert await store.workers_mark_lost(TIMEOUT_S, later, 10) == [busy_worker]
    timed_out = await store.jobs_expire_assignments(TIMEOUT_S, later, 10)
    assert [t.job_id for t in timed_out] == [busy_assigned.job_id]
    assert [t.job_id for t in await store.jobs_expire_ttl(later, 10)] == [busy_pending]


@pytest.fixture
async def second_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """Another pool on the same database: a second jq-server replica."""
    created = await asyncpg.create_pool(db_dsn, min_size=1, max_size=4)
    assert created is not None
    try:
        yield created
    finally:
        await created.close()


async def test_two_replicas_move_each_row_exactly_once(
    pool: asyncpg.Pool, second_pool: asyncpg.Pool
) -> None:
    await PgQueueStore(pool).queue_create("short", ttl_seconds=60)
    to_time_out = await _submit(pool, 60)
    to_expire = await _submit(pool, 60, "short")
    worker_ids = [await _worker(pool) for _ in range(20)]
    for worker_id in worker_ids[:6]:
        await _claim(pool, worker_id, 10)
    later = await _db_now(pool) + timedelta(hours=1)
    replicas = [PgMaintenanceStore(pool), PgMaintenanceStore(second_pool)]

    async def sweep(store: PgMaintenanceStore) -> tuple[list[Transition], list[uuid.UUID]]:
        moved: list[Transition] = []
        lost: list[uuid.UUID] = []
        while True:
            batch = await store.jobs_expire_assignments(TIMEOUT_S, later, 3)
            batch += await store.jobs_expire_ttl(later, 3)
            marked = await store.workers_mark_lost(TIMEOUT_S, later, 2)
            if not batch and not marked:
                return moved, lost
            moved += batch
            lost += marked

    (moved_a, lost_a), (moved_b, lost_b) = await asyncio.gather(*(sweep(s) for s in replicas))

    moved_ids = [t.job_id for t in moved_a + moved_b]
    assert sorted(moved_ids) == sorted(to_time_out + to_expire)
    assert sorted(lost_a + lost_b) == sorted(worker_ids)
    timeouts = await _event_counts(pool, Reason.ASSIGNMENT_TIMEOUT)
    assert timeouts == dict.fromkeys(to_time_out, 1)
    expiries = await _event_counts(pool, Reason.TTL_EXPIRED)
    assert expiries == dict.fromkeys(to_expire, 1)
    # Both replicas did part of the work (otherwise this test would prove nothing).
    assert moved_a
    assert moved_b
