"""V22's side tables (ready_jobs, held_jobs, waiting_jobs) agree with jobs after every kind of
state change, whoever writes it: the statements of jq-server, an application's transactional
enqueue, a schedule, a queue's deletion, an UPDATE by hand. The triggers on jobs are the one
place that keeps them; side_tables.py compares them with jobs column for column."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from support.side_tables import assert_side_tables_match, side_table_counts, side_table_mismatches

from jobq.domain.flow_limits import FlowChange
from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptProgress, AttemptRef, Failure, NewJob, Success
from jobq.domain.retry import RetryPolicy
from jobq.domain.schedules import NewSchedule, Schedule, TickPlan, Timing
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.caller_transaction import job_insert_in_transaction
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.schedules import PgScheduleStore
from jobq.storage.postgres.workers import PgWorkerStore

POLICY = RetryPolicy(base_delay_s=5.0, max_delay_s=300.0, random_source=lambda: 0.0)
LATER = datetime(2100, 1, 1, tzinfo=UTC)
"""A `now` far enough ahead that every assignment, heartbeat and TTL is stale."""


class World:
    """The stores over one database and a worker to claim with."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.jobs = PgJobStore(pool)
        self.maintenance = PgMaintenanceStore(pool)
        self.queues = PgQueueStore(pool)
        self.workers = PgWorkerStore(pool)

    async def worker(self, queues: list[str], slots: int = 100) -> tuple[uuid.UUID, uuid.UUID]:
        worker_id = uuid.uuid4()
        registration = await self.workers.worker_register(worker_id, "host", slots, queues)
        return worker_id, registration.incarnation

    async def submit(self, n: int = 1, queue: str = "default", **fields: object) -> list[uuid.UUID]:
        jobs = [NewJob(uuid7(), queue, b"{}", **fields) for _ in range(n)]  # type: ignore[arg-type]
        await self.jobs.jobs_insert(jobs)
        return [j.job_id for j in jobs]

    async def claim(
        self, worker: tuple[uuid.UUID, uuid.UUID], n: int, queue: str = "default"
    ) -> list[AttemptRef]:
        claimed = await self.jobs.jobs_claim(worker[0], [queue], n, incarnation=worker[1])
        return [a.ref for a in claimed]

    async def status(self, job_id: uuid.UUID) -> JobStatus:
        return (await self.jobs.job_get(job_id)).status

    async def check(self) -> tuple[int, int, int]:
        await assert_side_tables_match(self.pool)
        return await side_table_counts(self.pool)


@pytest.fixture
async def w(pool: asyncpg.Pool) -> World:
    return World(pool)


async def test_the_check_itself_fails_on_a_missing_extra_or_stale_row(w: World) -> None:
    """The comparison can fail: rows removed, added or changed behind the triggers' back."""
    [a, b] = await w.submit(2)
    assert await w.check() == (2, 0, 0)
    with pytest.raises(_RollBack):
        await _damage_and_check(w.pool, a, b)
    assert await w.check() == (2, 0, 0)


class _RollBack(Exception):
    """Raised to roll a test's deliberate damage back."""


async def _damage_and_check(pool: asyncpg.Pool, a: uuid.UUID, b: uuid.UUID) -> None:
    """In a transaction rolled back at the end: a ready row removed, one made stale and a held
    row for no job added; the comparison names each."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM ready_jobs WHERE job_id = $1", a)
        await conn.execute("UPDATE ready_jobs SET priority = 7 WHERE job_id = $1", b)
        await conn.execute(
            "INSERT INTO held_jobs (job_id, worker_id, queue_name, status, suspect,"
            " cancel_requested) VALUES ($1, $1, 'default', 'RUNNING', false, false)",
            uuid.uuid4(),
        )
        problems = {p for p, _ in await side_table_mismatches(conn)}
        assert problems == {
            "ready_jobs missing or stale",
            "ready_jobs extra or stale",
            "held_jobs extra or stale",
        }
        raise _RollBack


async def test_submits_of_every_kind(w: World) -> None:
    await w.submit(3)
    await w.submit(2, idempotency_key=None, concurrency_key="k", priority=4)
    keyed = NewJob(uuid7(), "default", b"{}", idempotency_key="once")
    await w.jobs.jobs_insert([keyed])
    # the same key again: the holder's no-op update, no second row
    await w.jobs.jobs_insert([NewJob(uuid7(), "default", b"{}", idempotency_key="once")])
    by_id = NewJob(uuid7(), "default", b"{}", id_from_client=True)
    await w.jobs.jobs_insert([by_id])
    await w.jobs.jobs_insert([by_id])  # a client's retry: the primary key's no-op update
    await w.submit(2, not_before=datetime.now(UTC) + timedelta(hours=1))
    assert await w.check() == (9, 0, 0)


async def test_insert_assigned_claim_start_complete(w: World) -> None:
    worker = await w.worker(["default"])
    direct = await w.jobs.job_insert_assigned(
        NewJob(uuid7(), "default", b"{}"), worker[0], incarnation=worker[1]
    )
    assert direct is not None
    assert await w.check() == (0, 1, 0)
    await w.submit(4)
    # behind a backlog a direct submit is written PENDING
    behind = await w.jobs.job_insert_assigned(
        NewJob(uuid7(), "default", b"{}"), worker[0], incarnation=worker[1]
    )
    assert behind is not None
    assert await w.check() == (5, 1, 0)
    refs = await w.claim(worker, 3)
    assert await w.check() == (2, 4, 0)
    await w.jobs.jobs_start(refs[:2])
    assert await w.check() == (2, 4, 0)
    await w.jobs.jobs_complete(
        [Success(r.job_id, r.attempt, r.worker_id, b"null", claim_id=r.claim_id) for r in refs]
    )
    assert await w.check() == (2, 1, 0)
    # a progress report changes no side row
    [ref] = await w.claim(worker, 1)
    await w.jobs.jobs_start([ref])
    applied = await w.jobs.jobs_record_progress([AttemptProgress(ref, 0.5, "half")])
    assert applied
    assert await w.check() == (1, 2, 0)


async def test_failures_retries_dead_letters_and_releases(w: World) -> None:
    worker = await w.worker(["default"])
    [retried, dead] = await w.submit(1) + await w.submit(1, max_retries=0)
    refs = await w.claim(worker, 2)
    await w.jobs.jobs_start(refs)
    await w.jobs.jobs_fail(
        [Failure(r.job_id, r.attempt, r.worker_id, "boom", claim_id=r.claim_id) for r in refs],
        POLICY,
    )
    assert await w.status(retried) is JobStatus.PENDING  # with a backoff
    assert await w.status(dead) is JobStatus.DEAD_LETTERED
    assert await w.check() == (1, 0, 0)
    await w.submit(2)
    refs = await w.claim(worker, 10, "default")  # the backoff keeps the retry out
    assert len(refs) == 2
    await w.jobs.jobs_start(refs[:1])
    await w.jobs.jobs_release(refs, Reason.WORKER_SHUTDOWN)
    assert await w.check() == (3, 0, 0)
    # manual retry of the dead letter
    await w.jobs.job_retry_manual(dead)
    assert await w.check() == (4, 0, 0)


async def test_interruptions_suspects_and_poison(w: World) -> None:
    await w.queues.queue_create("fragile", max_interruptions=2)
    worker = await w.worker(["fragile"])
    [job] = await w.submit(1, "fragile")
    for _ in range(2):
        [ref] = await w.claim(worker, 1, "fragile")
        await w.jobs.jobs_interrupt([ref], Reason.WORKER_LOST, "lost")
        await w.check()
    row = await w.pool.fetchrow("SELECT suspect FROM ready_jobs WHERE job_id = $1", job)
    assert row is not None
    assert row["suspect"]  # interrupted twice: a suspect
    [ref] = await w.claim(worker, 1, "fragile")  # the suspect branch takes it
    assert await w.check() == (0, 1, 0)
    held = await w.pool.fetchval("SELECT suspect FROM held_jobs WHERE job_id = $1", job)
    assert held is True
    await w.jobs.jobs_start([ref])
    await w.jobs.jobs_interrupt([ref], Reason.WORKER_LOST, "lost")  # third: POISON
    assert await w.status(job) is JobStatus.DEAD_LETTERED
    assert await w.check() == (0, 0, 0)


async def test_the_limited_claim(w: World) -> None:
    await w.queues.queue_create("limited")
    await w.queues.queue_set_flow("limited", FlowChange(max_running=2))
    worker = await w.worker(["limited"])
    await w.submit(3, "limited", concurrency_key="k")
    claimed = await w.jobs.jobs_claim_limited(worker[0], "limited", 5, incarnation=worker[1])
    assert len(claimed.assignments) == 2
    assert await w.check() == (1, 2, 0)


async def test_cancels_of_every_status(w: World) -> None:
    worker = await w.worker(["default"])
    cancels = w.jobs
    [first, second, pending] = await w.submit(3)
    [a_ref, r_ref] = await w.claim(worker, 2)
    assert {a_ref.job_id, r_ref.job_id} == {first, second}
    await w.jobs.jobs_start([r_ref])  # one ASSIGNED, one RUNNING, one PENDING
    await w.submit(1)
    [prereq] = await w.submit(1)
    waiting = NewJob(uuid7(), "default", b"{}", depends_on=(prereq,))
    await w.jobs.jobs_insert([waiting])
    assert await w.check() == (3, 2, 1)
    for job_id in (pending, a_ref.job_id, waiting.job_id):
        change = await cancels.job_cancel(job_id, "token:ops")
        assert change.job.status is JobStatus.DEAD_LETTERED
        await w.check()
    # RUNNING: a request first (the held row says so), then the worker's report
    change = await cancels.job_cancel(r_ref.job_id, "token:ops")
    assert change.requested
    assert await cancels.jobs_cancel_requested_for_worker(worker[0]) == [
        (r_ref.job_id, r_ref.attempt)
    ]
    assert await w.check() == (2, 1, 0)
    await cancels.jobs_finish_cancelled([r_ref], ["stopped"])
    assert await w.status(r_ref.job_id) is JobStatus.DEAD_LETTERED
    assert await w.check() == (2, 0, 0)


async def test_ttl_expiry_and_expired_assignments_and_lost_workers(w: World) -> None:
    await w.queues.queue_create("short", ttl_seconds=60)
    worker = await w.worker(["short", "default"])
    await w.submit(3, "short")
    await w.submit(2)
    refs = await w.claim(worker, 2)
    await w.jobs.jobs_start(refs[:1])
    expired = await w.maintenance.jobs_expire_ttl(LATER)
    assert len(expired) == 3
    assert await w.check() == (0, 2, 0)
    moved = await w.maintenance.jobs_expire_assignments(30, LATER)
    assert len(moved) == 1  # the ASSIGNED one back to PENDING
    assert await w.check() == (1, 1, 0)
    lost = await w.maintenance.workers_mark_lost(30, LATER)
    assert lost == [worker[0]]
    held = await w.maintenance.jobs_held_by_offline_workers(30, LATER)
    assert held == refs[:1]
    await w.jobs.jobs_interrupt(held, Reason.WORKER_LOST, "lost")
    assert await w.check() == (2, 0, 0)


async def test_dependencies_wait_then_resolve_or_fail(w: World) -> None:
    worker = await w.worker(["default"])
    [ok, bad] = await w.submit(2)
    good = NewJob(uuid7(), "default", b"{}", depends_on=(ok,))
    doomed = NewJob(uuid7(), "default", b"{}", depends_on=(bad,))
    await w.jobs.jobs_insert([good, doomed])
    assert await w.check() == (2, 0, 2)
    refs = {r.job_id: r for r in await w.claim(worker, 2)}
    r = refs[ok]
    await w.jobs.jobs_complete([Success(ok, r.attempt, r.worker_id, b"1", claim_id=r.claim_id)])
    r = refs[bad]
    await w.jobs.jobs_fail(
        [Failure(bad, r.attempt, r.worker_id, "no", refused=True, claim_id=r.claim_id)], POLICY
    )
    assert await w.check() == (0, 0, 2)
    moved = await w.jobs.dependants_resolve([ok, bad], 100)
    assert {(t.job_id, t.to_status) for t in moved} == {
        (good.job_id, JobStatus.PENDING),
        (doomed.job_id, JobStatus.DEAD_LETTERED),
    }
    assert await w.check() == (1, 0, 0)


async def test_transactional_enqueue_schedule_and_queue_deletion(w: World) -> None:
    await w.queues.queue_create("doomed")
    async with w.pool.acquire() as conn, conn.transaction():
        for _ in range(3):
            await job_insert_in_transaction(conn, NewJob(uuid7(), "doomed", b"{}"), "public")
    assert await w.check() == (3, 0, 0)
    schedules = PgScheduleStore(w.pool)
    t0 = datetime(2026, 3, 28, 12, tzinfo=UTC)
    await schedules.schedule_create(
        NewSchedule("tick", Timing(None, "UTC", 60), "doomed", b"{}"), t0
    )

    def plan(schedule: Schedule) -> TickPlan:
        return TickPlan(t0, t0 + timedelta(seconds=60), True)

    fired = await schedules.schedule_fire_due(t0 + timedelta(seconds=1), plan, uuid7())
    assert fired is not None
    assert fired[2] is not None
    assert await w.check() == (4, 0, 0)
    worker = await w.worker(["doomed"])
    await w.claim(worker, 1, "doomed")
    assert await w.check() == (3, 1, 0)
    await w.pool.execute("UPDATE workers SET status = 'OFFLINE'")  # no live worker serves it
    assert await w.queues.queue_delete("doomed", force=True) == 4
    assert await w.check() == (0, 0, 0)


async def test_updates_by_hand_and_deletes_by_cascade(w: World) -> None:
    """Any writer: an operator's UPDATE of a PENDING job's priority or status, a DELETE, a
    TRUNCATE."""
    worker = await w.worker(["default"])
    [a, b, c] = await w.submit(3)
    await w.pool.execute("UPDATE jobs SET priority = 9 WHERE job_id = $1", a)
    assert await w.check() == (3, 0, 0)
    [ref] = await w.claim(worker, 1)
    assert ref.job_id == a  # the new priority counts
    await w.pool.execute("UPDATE jobs SET interruptions = 2 WHERE job_id = ANY($1)", [a, b])
    assert await w.check() == (2, 1, 0)
    await w.pool.execute(
        "UPDATE jobs SET status = 'DONE', completed_at = now() WHERE job_id = ANY($1)", [a, c]
    )
    assert await w.check() == (1, 0, 0)
    await w.pool.execute("DELETE FROM jobs WHERE job_id = ANY($1)", [a, b])
    assert await w.check() == (0, 0, 0)
    await w.submit(2)
    await w.claim(worker, 1)
    assert await w.check() == (1, 1, 0)
    await w.pool.execute("TRUNCATE jobs CASCADE")  # enqueued_jobs refers to it
    assert await w.check() == (0, 0, 0)
