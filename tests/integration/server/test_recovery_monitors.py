"""The heartbeat monitor and the reaper against a real database (SPEC §4, §6).

A lost worker's jobs and unacknowledged assignments are interruptions: back to PENDING at once
without using a retry, or dead-lettered as POISON once a job was interrupted more often than its
queue's max_interruptions. Time moves through the monitors' injected clock (or a backdated
heartbeat); no test sleeps for a timeout to pass.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import asyncpg
import pytest
import structlog

from jobq.domain.errors import WorkerNotFound
from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptRef, NewJob, Success, Transition
from jobq.domain.states import JobStatus, Reason, WorkerStatus
from jobq.server.heartbeat_monitor import HeartbeatMonitor
from jobq.server.lifecycle import Lifecycle
from jobq.server.reaper import Reaper, ReaperReport
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.workers import PgWorkerStore

TIMEOUT_S = 30.0
LOST = "no heartbeat for 30s"


async def _worker(pool: asyncpg.Pool, queues: tuple[str, ...] = ("default",)) -> uuid.UUID:
    worker_id = uuid.uuid4()
    await PgWorkerStore(pool).worker_register(worker_id, "test-host", 8, list(queues))
    return worker_id


async def _submit(pool: asyncpg.Pool, n: int = 1, queue: str = "default") -> list[uuid.UUID]:
    new = [NewJob(uuid7(), queue, b"{}") for _ in range(n)]
    await PgJobStore(pool).jobs_insert(new)
    return [j.job_id for j in new]


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


async def _db_now(pool: asyncpg.Pool) -> datetime:
    now: datetime = await pool.fetchval("SELECT now()")
    return now


async def _silence(pool: asyncpg.Pool, worker_id: uuid.UUID) -> None:
    """Pretend the worker last heartbeated an hour ago (test set-up only)."""
    await pool.execute(
        "UPDATE workers SET last_heartbeat = last_heartbeat - interval '1 hour'"
        " WHERE worker_id = $1",
        worker_id,
    )


async def _event_counts(pool: asyncpg.Pool, reason: Reason) -> dict[uuid.UUID, int]:
    rows = await pool.fetch(
        "SELECT job_id, count(*) AS n FROM job_events WHERE reason = $1 GROUP BY job_id",
        reason.value,
    )
    return {row["job_id"]: row["n"] for row in rows}


def _fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def _lifecycle(on_published: Callable[[list[Transition]], None] | None) -> Lifecycle:
    """A lifecycle stream whose transitions go to `on_published`."""
    lifecycle = Lifecycle()
    if on_published is not None:
        lifecycle.subscribe(lambda transitions: on_published(list(transitions)))
    return lifecycle


def _monitor(
    pool: asyncpg.Pool,
    clock: Callable[[], datetime] | None = None,
    published: list[Transition] | None = None,
) -> HeartbeatMonitor:
    return HeartbeatMonitor(
        PgMaintenanceStore(pool),
        PgJobStore(pool),
        timeout_s=TIMEOUT_S,
        interval_s=3600,
        lifecycle=_lifecycle(None if published is None else published.extend),
        clock=clock,
    )


def _reaper(
    pool: asyncpg.Pool,
    clock: Callable[[], datetime] | None,
    published: list[Transition] | None = None,
    batch_limit: int = 1000,
) -> Reaper:
    return Reaper(
        PgMaintenanceStore(pool),
        assignment_timeout_s=TIMEOUT_S,
        interval_s=3600,
        batch_limit=batch_limit,
        lifecycle=_lifecycle(None if published is None else published.extend),
        clock=clock,
    )


@pytest.fixture
async def second_pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """Another pool on the same database: a second jq-server replica."""
    created = await asyncpg.create_pool(db_dsn, min_size=1, max_size=4)
    assert created is not None
    try:
        yield created
    finally:
        await created.close()


# --- heartbeat monitor -----------------------------------------------------------------------


async def test_a_silent_worker_is_lost_and_its_jobs_go_back_at_once_without_a_retry(
    pool: asyncpg.Pool,
) -> None:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    await _submit(pool, 3)
    silent, fresh = await _worker(pool), await _worker(pool)
    [assigned] = await _claim(pool, silent, 1)
    [running] = await _claim(pool, silent, 1, start=True)
    [healthy] = await _claim(pool, fresh, 1, start=True)
    await _silence(pool, silent)
    published: list[Transition] = []

    with structlog.testing.capture_logs() as logs:
        report = await _monitor(pool, published=published).run_once()

    assert report.lost_workers == [silent]
    assert report.rescued_jobs == 2
    assert (await workers.worker_get(silent)).status is WorkerStatus.OFFLINE
    assert (await workers.worker_get(fresh)).status is WorkerStatus.ONLINE
    assert (await jobs.job_get(healthy.job_id)).status is JobStatus.RUNNING
    for ref, from_status in ((assigned, JobStatus.ASSIGNED), (running, JobStatus.RUNNING)):
        job = await jobs.job_get(ref.job_id)
        # An interruption, not a failure: no retry used, no backoff, the count grows.
        assert (job.status, job.retry_count, job.interruptions) == (JobStatus.PENDING, 0, 1)
        assert (job.not_before, job.worker_id, job.error_message) == (None, None, None)
        history = await PgJobEventStore(pool).job_events_list(ref.job_id)
        last = history[-1]
        assert (last.from_status, last.to_status, last.reason, last.worker_id) == (
            from_status,
            JobStatus.PENDING,
            Reason.WORKER_LOST,
            silent,
        )
        assert last.detail == f"{LOST}; interruption 1 of 3 allowed"
    assert published == report.transitions
    assert sorted((t.job_id, t.to_status) for t in published) == sorted(
        [(ref.job_id, JobStatus.PENDING) for ref in (assigned, running)]
    )
    lost_lines = [entry for entry in logs if entry.get("action") == "worker.lost"]
    assert [(e["worker_id"], e["held_jobs"]) for e in lost_lines] == [(str(silent), 2)]
    # A second run finds nothing left to do.
    again = await _monitor(pool).run_once()
    assert (again.lost_workers, again.rescued_jobs) == ([], 0)


async def test_a_rescued_job_is_due_at_once_whatever_the_clock(pool: asyncpg.Pool) -> None:
    """The injected clock judges staleness only: an interruption has no backoff."""
    jobs = PgJobStore(pool)
    [job_id] = await _submit(pool)
    worker_id = await _worker(pool)
    await _claim(pool, worker_id, 1, start=True)
    later = await _db_now(pool) + timedelta(hours=1)

    report = await _monitor(pool, _fixed(later)).run_once()

    assert report.lost_workers == [worker_id]
    job = await jobs.job_get(job_id)
    assert (job.status, job.not_before) == (JobStatus.PENDING, None)
    rescuer = await _worker(pool)
    assert [r.job_id for r in await _claim(pool, rescuer, 1)] == [job_id]


async def test_a_poison_job_that_kills_every_worker_ends_dead_lettered(pool: asyncpg.Pool) -> None:
    await PgQueueStore(pool).queue_create("poison", max_retries=5, max_interruptions=2)
    jobs = PgJobStore(pool)
    [job_id] = await _submit(pool, queue="poison")
    later = await _db_now(pool) + timedelta(hours=1)
    monitor = _monitor(pool, _fixed(later))
    for crash in range(3):
        worker_id = await _worker(pool, ("poison",))
        [ref] = await _claim(pool, worker_id, 1, start=True, queue="poison")
        assert ref.attempt == crash + 1
        report = await monitor.run_once()
        assert (report.lost_workers, report.rescued_jobs) == ([worker_id], 1)

    job = await jobs.job_get(job_id)
    # The third interruption is one more than the queue's max_interruptions of 2; the retries
    # (max_retries 5) were never touched.
    assert (job.status, job.retry_count, job.interruptions) == (JobStatus.DEAD_LETTERED, 0, 3)
    assert job.completed_at is not None
    assert job.error_message == (
        "poison: interrupted 3 times, more than the queue's max_interruptions of 2"
        " (last: WORKER_LOST)"
    )
    history = await PgJobEventStore(pool).job_events_list(job_id)
    assert [(e.from_status, e.to_status, e.reason, e.detail) for e in history[-2:]] == [
        (
            JobStatus.RUNNING,
            JobStatus.FAILED,
            Reason.WORKER_LOST,
            f"{LOST}; interruption 3, more than the 2 allowed",
        ),
        (
            JobStatus.FAILED,
            JobStatus.DEAD_LETTERED,
            Reason.POISON,
            "interrupted 3 times, more than the queue's max_interruptions of 2",
        ),
    ]
    assert [e.reason for e in history].count(Reason.WORKER_LOST) == 3
    assert [(t.to_status, t.reason) for t in report.transitions] == [
        (JobStatus.FAILED, Reason.WORKER_LOST),
        (JobStatus.DEAD_LETTERED, Reason.POISON),
    ]


async def test_a_late_report_from_the_lost_worker_is_rejected(pool: asyncpg.Pool) -> None:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    await _submit(pool, 2)
    lost = await _worker(pool)
    [assigned] = await _claim(pool, lost, 1)
    [running] = await _claim(pool, lost, 1, start=True)
    await _silence(pool, lost)
    await _monitor(pool).run_once()
    before = [await jobs.job_get(ref.job_id) for ref in (assigned, running)]
    events_before = await pool.fetchval("SELECT count(*) FROM job_events")

    late = Success(running.job_id, running.attempt, lost, b'"late"', claim_id=running.claim_id)
    [late_result] = (await jobs.jobs_complete([late])).results
    [late_ack] = (await jobs.jobs_start([assigned])).results

    assert not late_result.accepted
    assert not late_ack.accepted
    assert [await jobs.job_get(ref.job_id) for ref in (assigned, running)] == before
    assert await pool.fetchval("SELECT count(*) FROM job_events") == events_before
    incarnation = (await workers.worker_get(lost)).incarnation
    assert incarnation is not None
    with pytest.raises(WorkerNotFound):
        await workers.worker_heartbeat(lost, incarnation, 1)  # it must register again


async def test_jobs_left_on_an_offline_worker_by_an_interrupted_run_are_rescued(
    pool: asyncpg.Pool,
) -> None:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    await _submit(pool, 3)
    crashed_mid_run, deregistering = await _worker(pool), await _worker(pool)
    refs = await _claim(pool, crashed_mid_run, 2)
    [shutting_down] = await _claim(pool, deregistering, 1, start=True)
    await _silence(pool, crashed_mid_run)
    # A previous run marked the worker lost and stopped before rescuing its jobs.
    assert await PgMaintenanceStore(pool).workers_mark_lost(TIMEOUT_S, None, 10) == [
        crashed_mid_run
    ]
    # Deregister sets OFFLINE and then releases the jobs itself: not the monitor's business.
    await workers.worker_set_status(deregistering, WorkerStatus.OFFLINE)

    with structlog.testing.capture_logs() as logs:
        report = await _monitor(pool).run_once()

    assert (report.lost_workers, report.rescued_jobs) == ([], 2)
    for ref in refs:
        job = await jobs.job_get(ref.job_id)
        assert (job.status, job.retry_count, job.interruptions) == (JobStatus.PENDING, 0, 1)
    assert (await jobs.job_get(shutting_down.job_id)).status is JobStatus.RUNNING
    assert [e["jobs"] for e in logs if e.get("action") == "worker.lost_leftovers"] == [2]


async def test_two_monitors_rescue_each_job_exactly_once(
    pool: asyncpg.Pool, second_pool: asyncpg.Pool
) -> None:
    submitted = await _submit(pool, 24)
    lost = [await _worker(pool) for _ in range(8)]
    for worker_id in lost:
        await _claim(pool, worker_id, 1)
        await _claim(pool, worker_id, 2, start=True)
    later = await _db_now(pool) + timedelta(hours=1)
    monitors = [_monitor(pool, _fixed(later)), _monitor(second_pool, _fixed(later))]

    first, second = await asyncio.gather(*(m.run_once() for m in monitors))

    assert sorted(first.lost_workers + second.lost_workers) == sorted(lost)
    assert not set(first.lost_workers) & set(second.lost_workers)
    assert first.rescued_jobs + second.rescued_jobs == 24
    assert await _event_counts(pool, Reason.WORKER_LOST) == dict.fromkeys(submitted, 1)
    counted = await pool.fetch("SELECT interruptions, retry_count FROM jobs")
    assert {(r["interruptions"], r["retry_count"]) for r in counted} == {(1, 0)}


# --- reaper ----------------------------------------------------------------------------------


async def test_the_reaper_returns_stale_assignments_and_expires_old_pending_jobs(
    pool: asyncpg.Pool,
) -> None:
    jobs = PgJobStore(pool)
    await PgQueueStore(pool).queue_create("short", ttl_seconds=60)
    [expiring] = await _submit(pool, queue="short")
    await _submit(pool, 2)
    worker_id = await _worker(pool)
    [assigned] = await _claim(pool, worker_id, 1)
    [running] = await _claim(pool, worker_id, 1, start=True)
    later = await _db_now(pool) + timedelta(seconds=120)
    published: list[Transition] = []

    with structlog.testing.capture_logs() as logs:
        report = await _reaper(pool, _fixed(later), published).run_once()

    assert [(t.job_id, t.reason, t.worker_id) for t in report.timed_out] == [
        (assigned.job_id, Reason.ASSIGNMENT_TIMEOUT, worker_id)
    ]
    assert [(t.job_id, t.reason) for t in report.expired] == [(expiring, Reason.TTL_EXPIRED)]
    assert published == report.timed_out + report.expired
    assert not report.more
    job = await jobs.job_get(assigned.job_id)
    assert (job.status, job.retry_count, job.worker_id, job.interruptions) == (
        JobStatus.PENDING,
        0,
        None,
        1,
    )
    assert (await jobs.job_get(running.job_id)).status is JobStatus.RUNNING
    assert (await jobs.job_get(expiring)).status is JobStatus.DEAD_LETTERED
    [summary] = [e for e in logs if e.get("action") == "reaper.swept"]
    assert (summary["assignment_timeouts"], summary["ttl_expired"]) == (1, 1)
    # Without the injected clock nothing is stale yet.
    assert await _reaper(pool, None).run_once() == ReaperReport()


async def test_a_full_batch_makes_the_reaper_loop_run_again_at_once(pool: asyncpg.Pool) -> None:
    await _submit(pool, 7)
    worker_id = await _worker(pool)
    await _claim(pool, worker_id, 7)
    later = await _db_now(pool) + timedelta(hours=1)
    published: list[Transition] = []
    all_back = asyncio.Event()

    def on_transitions(transitions: list[Transition]) -> None:
        published.extend(transitions)
        if len(published) >= 7:
            all_back.set()

    reaper = Reaper(
        PgMaintenanceStore(pool),
        assignment_timeout_s=TIMEOUT_S,
        interval_s=3600,  # only the full-batch wake-up can finish the work in time
        batch_limit=3,
        lifecycle=_lifecycle(on_transitions),
        clock=_fixed(later),
    )
    reaper.start()
    try:
        async with asyncio.timeout(10):
            await all_back.wait()
    finally:
        await reaper.stop()
    assert len(published) == 7
    assert await _event_counts(pool, Reason.ASSIGNMENT_TIMEOUT) == dict.fromkeys(
        [t.job_id for t in published], 1
    )
