"""Progress reports (V18): the latest one of the current RUNNING attempt, and nothing else."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptProgress, AttemptRef, Failure, NewJob
from jobq.domain.retry import RetryPolicy
from jobq.domain.states import JobStatus
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore

POLICY = RetryPolicy(base_delay_s=5.0, max_delay_s=300.0, random_source=lambda: 0.0)


async def _claimed(pool: asyncpg.Pool, *, start: bool = True) -> AttemptRef:
    jobs = PgJobStore(pool)
    worker_id = uuid.uuid4()
    registration = await PgWorkerStore(pool).worker_register(worker_id, "test-host", 4, ["default"])
    job = NewJob(uuid7(), "default", b'{"handler": "x:y"}', max_retries=3)
    await jobs.jobs_insert([job])
    [assignment] = await jobs.jobs_claim(
        worker_id, ["default"], 1, incarnation=registration.incarnation
    )
    if start:
        await jobs.jobs_start([assignment.ref])
    return assignment.ref


async def test_the_latest_progress_of_a_running_attempt_is_kept(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _claimed(pool)
    events_before = len(await PgJobEventStore(pool).job_events_list(ref.job_id))
    assert await jobs.jobs_record_progress([AttemptProgress(ref, 0.1, "one")]) == {
        (ref.job_id, ref.attempt)
    }
    await jobs.jobs_record_progress([AttemptProgress(ref, 0.42, "resized 42 of 100")])
    job = await jobs.job_get(ref.job_id)
    assert (job.progress, job.progress_message) == (0.42, "resized 42 of 100")
    assert job.progress_updated_at is not None
    assert job.status is JobStatus.RUNNING
    # Not a state change: no event.
    assert len(await PgJobEventStore(pool).job_events_list(ref.job_id)) == events_before
    await jobs.jobs_record_progress([AttemptProgress(ref, 0.5)])
    job = await jobs.job_get(ref.job_id)
    assert (job.progress, job.progress_message) == (0.5, None)


async def test_stale_and_unstarted_attempts_change_nothing(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _claimed(pool)
    stale = AttemptRef(ref.job_id, ref.attempt, ref.worker_id, uuid.uuid4())
    older = AttemptRef(ref.job_id, ref.attempt - 1, ref.worker_id, ref.claim_id)
    assigned = await _claimed(pool, start=False)
    applied = await jobs.jobs_record_progress(
        [AttemptProgress(stale, 0.9), AttemptProgress(older, 0.8), AttemptProgress(assigned, 0.7)]
    )
    assert applied == set()
    assert (await jobs.job_get(ref.job_id)).progress is None
    assert (await jobs.job_get(assigned.job_id)).progress is None


async def test_a_retried_job_starts_without_progress(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ref = await _claimed(pool)
    await jobs.jobs_record_progress([AttemptProgress(ref, 0.3, "a third")])
    failure = Failure(ref.job_id, ref.attempt, ref.worker_id, "boom", claim_id=ref.claim_id)
    await jobs.jobs_fail([failure], POLICY, datetime(2030, 1, 1, tzinfo=UTC))
    job = await jobs.job_get(ref.job_id)
    assert job.status is JobStatus.PENDING
    assert (job.progress, job.progress_message, job.progress_updated_at) == (None, None, None)
    # A finished job's progress report is ignored.
    assert await jobs.jobs_record_progress([AttemptProgress(ref, 0.9)]) == set()


async def test_the_database_bounds_progress(pool: asyncpg.Pool) -> None:
    ref = await _claimed(pool)
    with pytest.raises(asyncpg.CheckViolationError):
        await PgJobStore(pool).jobs_record_progress([AttemptProgress(ref, 1.5)])
    with pytest.raises(asyncpg.CheckViolationError):
        await PgJobStore(pool).jobs_record_progress([AttemptProgress(ref, 0.5, "x" * 201)])
