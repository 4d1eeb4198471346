"""Cancelling RUNNING jobs (V18): the request, then each way the attempt can end."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from jobq.domain.errors import InvalidTransition
from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptRef, Failure, NewJob, Success
from jobq.domain.retry import RetryPolicy
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore

POLICY = RetryPolicy(base_delay_s=5.0, max_delay_s=300.0, random_source=lambda: 0.0)
WHO = "token:ops"


async def _running(pool: asyncpg.Pool, max_retries: int = 3) -> AttemptRef:
    """A job RUNNING on a newly registered worker; its fencing token."""
    jobs = PgJobStore(pool)
    worker_id = uuid.uuid4()
    registration = await PgWorkerStore(pool).worker_register(worker_id, "test-host", 4, ["default"])
    job = NewJob(uuid7(), "default", b'{"command": ["sleep", "60"]}', max_retries=max_retries)
    await jobs.jobs_insert([job])
    [assignment] = await jobs.jobs_claim(
        worker_id, ["default"], 1, incarnation=registration.incarnation
    )
    await jobs.jobs_start([assignment.ref])
    return assignment.ref


async def _history(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[tuple[object, ...]]:
    return [
        (e.from_status, e.to_status, e.reason, e.detail)
        for e in await PgJobEventStore(pool).job_events_list(job_id)
    ]


async def test_a_running_job_gets_a_durable_request_and_a_notification(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    jobs = PgJobStore(pool)
    ref = await _running(pool)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(db_dsn)
    try:
        await listener.add_listener("jobq_jobs", lambda *args: heard.put_nowait(args[3]))
        change = await jobs.job_cancel(ref.job_id, WHO)
        assert change.requested
        assert change.was is JobStatus.RUNNING
        assert change.job.status is JobStatus.RUNNING
        assert change.job.cancelled_by == WHO
        assert change.job.cancel_requested_at is not None
        expected = f"cancel:{ref.worker_id}:{ref.job_id}:{ref.attempt}"
        assert await asyncio.wait_for(heard.get(), 5) == expected
        # Asked again (by someone else): the first canceller stays, no second event, but the
        # notification is repeated for a worker that missed it.
        again = await jobs.job_cancel(ref.job_id, "token:other")
        assert again.requested
        assert again.job.cancelled_by == WHO
        assert again.job.cancel_requested_at == change.job.cancel_requested_at
        assert await asyncio.wait_for(heard.get(), 5) == expected
    finally:
        await listener.close()
    job = await jobs.job_get(ref.job_id)
    assert (job.status, job.cancelled_by) == (JobStatus.RUNNING, WHO)
    assert (await _history(pool, ref.job_id))[-1] == (
        JobStatus.RUNNING,
        JobStatus.RUNNING,
        Reason.CANCEL_REQUESTED,
        f"by {WHO}",
    )
    assert [e.reason for e in await PgJobEventStore(pool).job_events_list(ref.job_id)].count(
        Reason.CANCEL_REQUESTED
    ) == 1
    assert await jobs.jobs_cancel_requested_for_worker(ref.worker_id) == [(ref.job_id, ref.attempt)]


async def test_the_workers_cancelled_report_dead_letters_the_job(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _running(pool)
    await jobs.job_cancel(ref.job_id, WHO)
    outcome = await jobs.jobs_finish_cancelled([ref], ["stopped: SIGTERM"])
    assert [r.accepted for r in outcome.results] == [True]
    assert [(t.from_status, t.to_status, t.reason) for t in outcome.transitions] == [
        (JobStatus.RUNNING, JobStatus.DEAD_LETTERED, Reason.CANCELLED)
    ]
    job = await jobs.job_get(ref.job_id)
    assert (job.status, job.error_message, job.retry_count) == (
        JobStatus.DEAD_LETTERED,
        f"cancelled by {WHO}",
        0,
    )
    assert job.completed_at is not None
    assert (await _history(pool, ref.job_id))[-1] == (
        JobStatus.RUNNING,
        JobStatus.DEAD_LETTERED,
        Reason.CANCELLED,
        "stopped: SIGTERM",
    )
    assert await jobs.jobs_cancel_requested_for_worker(ref.worker_id) == []
    # The same report again is an exact duplicate: accepted, nothing changes.
    duplicate = await jobs.jobs_finish_cancelled([ref], ["stopped: SIGTERM"])
    assert [(r.accepted, r.message) for r in duplicate.results] == [(True, "duplicate")]
    assert duplicate.transitions == []


async def test_a_cancelled_report_nobody_asked_for_is_refused(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _running(pool)
    outcome = await jobs.jobs_finish_cancelled([ref], [""])
    assert [r.accepted for r in outcome.results] == [False]
    assert (await jobs.job_get(ref.job_id)).status is JobStatus.RUNNING


async def test_a_lost_worker_does_not_put_a_cancelled_job_back(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _running(pool)
    await jobs.job_cancel(ref.job_id, WHO)
    transitions = await jobs.jobs_interrupt([ref], Reason.WORKER_LOST, "no heartbeat for 30s")
    assert [(t.from_status, t.to_status, t.reason) for t in transitions] == [
        (JobStatus.RUNNING, JobStatus.DEAD_LETTERED, Reason.CANCELLED)
    ]
    job = await jobs.job_get(ref.job_id)
    assert (job.status, job.error_message) == (JobStatus.DEAD_LETTERED, f"cancelled by {WHO}")
    assert (await _history(pool, ref.job_id))[-1] == (
        JobStatus.RUNNING,
        JobStatus.DEAD_LETTERED,
        Reason.CANCELLED,
        "no heartbeat for 30s (WORKER_LOST)",
    )


async def test_a_lost_worker_still_puts_an_uncancelled_job_back(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _running(pool)
    [transition] = await jobs.jobs_interrupt([ref], Reason.WORKER_LOST, "gone")
    assert (transition.to_status, transition.reason) == (JobStatus.PENDING, Reason.WORKER_LOST)


async def test_a_shutdown_release_does_not_put_a_cancelled_job_back(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _running(pool)
    await jobs.job_cancel(ref.job_id, WHO)
    outcome = await jobs.jobs_release([ref], Reason.WORKER_SHUTDOWN)
    assert [r.accepted for r in outcome.results] == [True]
    assert [(t.to_status, t.reason) for t in outcome.transitions] == [
        (JobStatus.DEAD_LETTERED, Reason.CANCELLED)
    ]
    job = await jobs.job_get(ref.job_id)
    assert (job.status, job.error_message) == (JobStatus.DEAD_LETTERED, f"cancelled by {WHO}")
    assert (await _history(pool, ref.job_id))[-1][2:] == (Reason.CANCELLED, "WORKER_SHUTDOWN")


async def test_a_failure_that_would_retry_ends_cancelled(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _running(pool, max_retries=5)
    await jobs.job_cancel(ref.job_id, WHO)
    failure = Failure(ref.job_id, ref.attempt, ref.worker_id, "exit 143", claim_id=ref.claim_id)
    outcome = await jobs.jobs_fail([failure], POLICY, datetime(2030, 1, 1, tzinfo=UTC))
    assert [r.accepted for r in outcome.results] == [True]
    assert [(t.from_status, t.to_status, t.reason) for t in outcome.transitions] == [
        (JobStatus.RUNNING, JobStatus.FAILED, Reason.FAILED),
        (JobStatus.FAILED, JobStatus.DEAD_LETTERED, Reason.CANCELLED),
    ]
    job = await jobs.job_get(ref.job_id)
    assert (job.status, job.retry_count, job.error_message, job.not_before) == (
        JobStatus.DEAD_LETTERED,
        0,
        f"cancelled by {WHO}",
        None,
    )
    assert (await _history(pool, ref.job_id))[-2][3] == "exit 143"


async def test_a_success_before_the_cancel_lands_ends_done(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _running(pool)
    await jobs.job_cancel(ref.job_id, WHO)
    success = Success(ref.job_id, ref.attempt, ref.worker_id, b"42", claim_id=ref.claim_id)
    outcome = await jobs.jobs_complete([success])
    assert [r.accepted for r in outcome.results] == [True]
    job = await jobs.job_get(ref.job_id)
    assert (job.status, job.result, job.cancelled_by) == (JobStatus.DONE, b"42", WHO)
    assert job.cancel_requested_at is not None
    # The worker's cancellation, arriving after, is stale.
    late = await jobs.jobs_finish_cancelled([ref], [""])
    assert [r.accepted for r in late.results] == [False]
    assert (await jobs.job_get(ref.job_id)).status is JobStatus.DONE


async def test_a_pending_cancel_records_the_canceller(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    job = NewJob(uuid7(), "default", b'{"command": ["id"]}')
    await jobs.jobs_insert([job])
    change = await jobs.job_cancel(job.job_id, WHO)
    assert not change.requested
    assert (change.job.status, change.job.cancelled_by, change.job.error_message) == (
        JobStatus.DEAD_LETTERED,
        WHO,
        f"cancelled by {WHO}",
    )
    with pytest.raises(InvalidTransition):
        await jobs.job_cancel(job.job_id, WHO)


async def test_a_manual_retry_forgets_the_cancel(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _running(pool)
    await jobs.job_cancel(ref.job_id, WHO)
    await jobs.jobs_finish_cancelled([ref], [""])
    retried = await jobs.job_retry_manual(ref.job_id)
    assert retried.job.status is JobStatus.PENDING
    job = await jobs.job_get(ref.job_id)
    assert (job.cancel_requested_at, job.cancelled_by) == (None, None)


async def test_a_stale_claim_cannot_request_or_finish_a_cancel(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _running(pool)
    await jobs.job_cancel(ref.job_id, WHO)
    stale = AttemptRef(ref.job_id, ref.attempt, ref.worker_id, uuid.uuid4())
    outcome = await jobs.jobs_finish_cancelled([stale], [""])
    assert [r.accepted for r in outcome.results] == [False]
    assert (await jobs.job_get(ref.job_id)).status is JobStatus.RUNNING
