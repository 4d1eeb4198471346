"""Refused attempts: FAILED, then DEAD_LETTERED at once (REFUSED), fenced like every failure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from jobq.domain.ids import uuid7
from jobq.domain.records import Assignment, AttemptRef, Failure, NewJob
from jobq.domain.retry import RetryPolicy
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore

POLICY = RetryPolicy(base_delay_s=5.0, max_delay_s=300.0, random_source=lambda: 0.0)
REFUSAL = "command jobs are not allowed on this worker: worker.allowed_commands is empty"


async def _worker(pool: asyncpg.Pool) -> uuid.UUID:
    worker_id = uuid.uuid4()
    await PgWorkerStore(pool).worker_register(worker_id, "test-host", 4, ["default"])
    return worker_id


async def _claim(pool: asyncpg.Pool, worker_id: uuid.UUID) -> list[Assignment]:
    """One job for the worker's current process (its stream's incarnation)."""
    incarnation = (await PgWorkerStore(pool).worker_get(worker_id)).incarnation
    assert incarnation is not None
    return await PgJobStore(pool).jobs_claim(worker_id, ["default"], 1, incarnation=incarnation)


async def _submit(pool: asyncpg.Pool, max_retries: int | None = None) -> uuid.UUID:
    job = NewJob(uuid7(), "default", b'{"command": ["id"]}', max_retries=max_retries)
    await PgJobStore(pool).jobs_insert([job])
    return job.job_id


def _refusal(ref: AttemptRef, message: str = REFUSAL) -> Failure:
    return Failure(
        ref.job_id, ref.attempt, ref.worker_id, message, refused=True, claim_id=ref.claim_id
    )


async def _history(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[tuple[object, ...]]:
    return [
        (e.from_status, e.to_status, e.reason, e.detail, e.attempt)
        for e in await PgJobEventStore(pool).job_events_list(job_id)
    ]


async def test_a_refusal_of_a_running_attempt_dead_letters_it_at_once(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    job_id = await _submit(pool, max_retries=5)
    worker_id = await _worker(pool)
    # One ordinary failure first: the refusal keeps the retry_count it finds.
    [first] = await _claim(pool, worker_id)
    first_ref = first.ref
    await jobs.jobs_start([first_ref])
    boom = Failure(job_id, first_ref.attempt, worker_id, "boom", claim_id=first_ref.claim_id)
    await jobs.jobs_fail([boom], POLICY)
    await pool.execute("UPDATE jobs SET not_before = NULL WHERE job_id = $1", job_id)
    [second] = await _claim(pool, worker_id)
    ref = second.ref
    await jobs.jobs_start([ref])
    outcome = await jobs.jobs_fail([_refusal(ref)], POLICY, datetime(2030, 1, 1, tzinfo=UTC))
    assert [r.accepted for r in outcome.results] == [True]
    job = await jobs.job_get(job_id)
    assert (job.status, job.retry_count, job.error_message) == (
        JobStatus.DEAD_LETTERED,
        1,
        REFUSAL,
    )
    assert job.not_before is None
    assert job.completed_at is not None
    assert (await _history(pool, job_id))[-2:] == [
        (JobStatus.RUNNING, JobStatus.FAILED, Reason.FAILED, REFUSAL, ref.attempt),
        (JobStatus.FAILED, JobStatus.DEAD_LETTERED, Reason.REFUSED, None, ref.attempt),
    ]
    assert [(t.from_status, t.to_status, t.reason) for t in outcome.transitions] == [
        (JobStatus.RUNNING, JobStatus.FAILED, Reason.FAILED),
        (JobStatus.FAILED, JobStatus.DEAD_LETTERED, Reason.REFUSED),
    ]


async def test_a_refusal_applies_to_an_assigned_attempt_that_never_started(
    pool: asyncpg.Pool,
) -> None:
    jobs = PgJobStore(pool)
    job_id = await _submit(pool)
    worker_id = await _worker(pool)
    [a] = await _claim(pool, worker_id)
    ref = a.ref
    [result] = (await jobs.jobs_fail([_refusal(ref)], POLICY)).results
    assert result.accepted
    job = await jobs.job_get(job_id)
    assert (job.status, job.retry_count, job.started_at) == (JobStatus.DEAD_LETTERED, 0, None)
    assert [(f, t, r) for f, t, r, _, _ in await _history(pool, job_id)] == [
        (None, JobStatus.PENDING, Reason.SUBMITTED),
        (JobStatus.PENDING, JobStatus.ASSIGNED, Reason.ASSIGNED),
        (JobStatus.ASSIGNED, JobStatus.FAILED, Reason.FAILED),
        (JobStatus.FAILED, JobStatus.DEAD_LETTERED, Reason.REFUSED),
    ]


async def test_refusals_are_fenced_like_every_failure(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    job_id = await _submit(pool)
    holder, stranger = await _worker(pool), await _worker(pool)
    [a] = await _claim(pool, holder)
    await jobs.jobs_start([a.ref])
    before = await jobs.job_get(job_id)
    events_before = await _history(pool, job_id)
    stale = [
        AttemptRef(job_id, a.job.attempt, stranger, a.claim_id),  # another worker
        AttemptRef(job_id, a.job.attempt + 1, holder, a.claim_id),  # no such attempt
        AttemptRef(job_id, a.job.attempt, holder, uuid.uuid4()),  # another claim
        AttemptRef(job_id, a.job.attempt, holder, None),  # no claim id at all
    ]
    for ref in stale:
        [rejected] = (await jobs.jobs_fail([_refusal(ref)], POLICY)).results
        assert not rejected.accepted
    assert await jobs.job_get(job_id) == before
    assert await _history(pool, job_id) == events_before
    ref = a.ref
    [applied] = (await jobs.jobs_fail([_refusal(ref)], POLICY)).results
    assert applied.accepted
    after = await jobs.job_get(job_id)
    events_after = await _history(pool, job_id)
    # The same report again: an idempotent duplicate that changes nothing.
    [again] = (await jobs.jobs_fail([_refusal(ref)], POLICY)).results
    assert (again.accepted, again.message) == (True, "duplicate")
    assert await jobs.job_get(job_id) == after
    assert await _history(pool, job_id) == events_after


async def test_a_refusal_after_a_re_assignment_changes_nothing(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    job_id = await _submit(pool)
    lost, rescuer = await _worker(pool), await _worker(pool)
    [first] = await _claim(pool, lost)
    old = first.ref
    await jobs.jobs_interrupt([old], Reason.ASSIGNMENT_TIMEOUT, "not acknowledged")
    [second] = await _claim(pool, rescuer)
    before = await jobs.job_get(job_id)
    [late] = (await jobs.jobs_fail([_refusal(old)], POLICY)).results
    assert not late.accepted
    assert await jobs.job_get(job_id) == before
    assert before.status is JobStatus.ASSIGNED
    assert before.attempt == second.job.attempt


async def test_refusals_and_failures_are_not_mixed_in_one_call(pool: asyncpg.Pool) -> None:
    ref = AttemptRef(uuid.uuid4(), 1, uuid.uuid4(), uuid.uuid4())
    mixed = [_refusal(ref), Failure(ref.job_id, 2, ref.worker_id, "boom", claim_id=ref.claim_id)]
    with pytest.raises(ValueError, match="share their reason and refused flag"):
        await PgJobStore(pool).jobs_fail(mixed, POLICY)
