"""Claims, start acknowledgements, results, failures and releases, with fencing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from jobq.domain.ids import uuid7
from jobq.domain.records import Assignment, AttemptRef, Failure, NewJob, Success
from jobq.domain.retry import RetryPolicy
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.workers import PgWorkerStore

NO_JITTER = RetryPolicy(base_delay_s=5.0, max_delay_s=300.0, random_source=lambda: 0.0)


async def _worker(pool: asyncpg.Pool, queues: tuple[str, ...] = ("default",)) -> uuid.UUID:
    worker_id = uuid.uuid4()
    await PgWorkerStore(pool).worker_register(worker_id, "test-host", 4, list(queues))
    return worker_id


async def _claim(
    pool: asyncpg.Pool, worker_id: uuid.UUID, queues: list[str], limit: int
) -> list[Assignment]:
    """jobs_claim for the worker's current process (its stream's incarnation)."""
    incarnation = (await PgWorkerStore(pool).worker_get(worker_id)).incarnation
    assert incarnation is not None
    return await PgJobStore(pool).jobs_claim(worker_id, queues, limit, incarnation=incarnation)


async def _submit(pool: asyncpg.Pool, n: int = 1, **kwargs: object) -> list[uuid.UUID]:
    new = [NewJob(uuid7(), str(kwargs.get("queue", "default")), b"{}") for _ in range(n)]
    if "priority" in kwargs or "not_before" in kwargs:
        new = [
            NewJob(
                j.job_id,
                j.queue_name,
                j.payload,
                int(kwargs.get("priority", 0)),  # type: ignore[call-overload]
                None,
                kwargs.get("not_before"),  # type: ignore[arg-type]
            )
            for j in new
        ]
    await PgJobStore(pool).jobs_insert(new)
    return [j.job_id for j in new]


async def _reasons(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[Reason]:
    return [e.reason for e in await PgJobEventStore(pool).job_events_list(job_id)]


async def test_claim_follows_priority_then_age_and_records_assigned(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    low = await _submit(pool, 2, priority=0)
    high = await _submit(pool, 2, priority=9)
    mid = await _submit(pool, 1, priority=5)
    worker_id = await _worker(pool)
    claimed = await _claim(pool, worker_id, ["default"], 10)
    assert [a.job.job_id for a in claimed] == high + mid + low
    for assignment in claimed:
        job = await jobs.job_get(assignment.job.job_id)
        assert job.status is JobStatus.ASSIGNED
        assert job.worker_id == worker_id
        assert job.attempt == assignment.job.attempt == 1
        assert assignment.timeout_s is None
    history = await PgJobEventStore(pool).job_events_list(high[0])
    assert [(e.to_status, e.reason, e.worker_id, e.attempt) for e in history] == [
        (JobStatus.PENDING, Reason.SUBMITTED, None, None),
        (JobStatus.ASSIGNED, Reason.ASSIGNED, worker_id, 1),
    ]


async def test_claim_honours_limit_queues_and_not_before(pool: asyncpg.Pool) -> None:
    await PgQueueStore(pool).queue_create("other", ttl_seconds=30)
    later = await _submit(pool, 1, not_before=datetime.now(UTC) + timedelta(hours=1))
    due = await _submit(pool, 1, not_before=datetime.now(UTC) - timedelta(seconds=1))
    other = await _submit(pool, 2, queue="other")
    plain = await _submit(pool, 3)
    worker_id = await _worker(pool, ("default", "other"))
    first = await _claim(pool, worker_id, ["default"], 2)
    assert [a.job.job_id for a in first] == due + plain[:1]
    rest = await _claim(pool, worker_id, ["default"], 10)
    assert [a.job.job_id for a in rest] == plain[1:]
    assert later[0] not in {a.job.job_id for a in first + rest}
    from_other = await _claim(pool, worker_id, ["other"], 10)
    assert [a.job.job_id for a in from_other] == other
    assert {a.timeout_s for a in from_other} == {30}
    assert await _claim(pool, worker_id, ["default", "other"], 10) == []


async def test_a_claim_over_several_queues_merges_them_in_claim_order(pool: asyncpg.Pool) -> None:
    await PgQueueStore(pool).queue_create("other")
    default_low = await _submit(pool, 2, priority=1)
    other_high = await _submit(pool, 1, queue="other", priority=7)
    other_low = await _submit(pool, 2, queue="other", priority=1)
    default_high = await _submit(pool, 1, priority=7)
    backlog = await _submit(pool, 3, queue="other", priority=0)
    worker_id = await _worker(pool, ("default", "other"))
    # A queue named twice is one queue: no job comes back twice.
    first = await _claim(pool, worker_id, ["other", "default", "other"], 5)
    assert [a.job.job_id for a in first] == other_high + default_high + default_low + other_low[:1]
    rest = await _claim(pool, worker_id, ["default", "other"], 10)
    assert [a.job.job_id for a in rest] == other_low[1:] + backlog


async def test_concurrent_claims_never_share_a_job(pool: asyncpg.Pool) -> None:
    submitted = await _submit(pool, 200)
    workers = [await _worker(pool) for _ in range(4)]

    async def drain(worker_id: uuid.UUID) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        while batch := await _claim(pool, worker_id, ["default"], 7):
            got.extend(a.job.job_id for a in batch)
        return got

    results = await asyncio.gather(*(drain(w) for w in workers))
    flat = [job_id for result in results for job_id in result]
    assert sorted(flat) == sorted(submitted)
    assert len(set(flat)) == len(flat)


async def test_start_and_complete_happy_path(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    [job_id] = await _submit(pool)
    worker_id = await _worker(pool)
    [assignment] = await _claim(pool, worker_id, ["default"], 1)
    ref = assignment.ref
    start_outcome = await jobs.jobs_start([ref])
    [started] = start_outcome.results
    [transition] = start_outcome.transitions
    assert (transition.from_status, transition.to_status, transition.reason) == (
        JobStatus.ASSIGNED,
        JobStatus.RUNNING,
        Reason.STARTED,
    )
    assert (transition.queue_name, transition.worker_id, transition.attempt) == (
        "default",
        worker_id,
        ref.attempt,
    )
    assert transition.started_at is not None
    assert started.accepted
    assert started.message == ""
    running = await jobs.job_get(job_id)
    assert running.status is JobStatus.RUNNING
    assert running.started_at is not None
    [done] = (
        await jobs.jobs_complete(
            [Success(job_id, ref.attempt, worker_id, b'"ok"', claim_id=ref.claim_id)]
        )
    ).results
    assert done.accepted
    finished = await jobs.job_get(job_id)
    assert finished.status is JobStatus.DONE
    assert finished.result == b'"ok"'
    assert finished.completed_at is not None
    assert await _reasons(pool, job_id) == [
        Reason.SUBMITTED,
        Reason.ASSIGNED,
        Reason.STARTED,
        Reason.COMPLETED,
    ]


async def test_a_result_before_any_acknowledgement_records_start_and_completion(
    pool: asyncpg.Pool,
) -> None:
    jobs = PgJobStore(pool)
    [job_id] = await _submit(pool)
    worker_id, other = await _worker(pool), await _worker(pool)
    [assignment] = await _claim(pool, worker_id, ["default"], 1)
    attempt, claim_id = assignment.job.attempt, assignment.claim_id
    [intruder] = (
        await jobs.jobs_complete([Success(job_id, attempt, other, b"x", claim_id=claim_id)])
    ).results
    assert not intruder.accepted
    assert (await jobs.job_get(job_id)).status is JobStatus.ASSIGNED
    outcome = await jobs.jobs_complete(
        [Success(job_id, attempt, worker_id, b'"ok"', claim_id=claim_id)]
    )
    [done] = outcome.results
    assert done.accepted
    assert done.message == ""
    assert [(t.from_status, t.to_status, t.reason) for t in outcome.transitions] == [
        (JobStatus.ASSIGNED, JobStatus.RUNNING, Reason.STARTED),
        (JobStatus.RUNNING, JobStatus.DONE, Reason.COMPLETED),
    ]
    finished = await jobs.job_get(job_id)
    assert (finished.status, finished.result) == (JobStatus.DONE, b'"ok"')
    assert finished.started_at is not None
    assert finished.started_at == finished.completed_at
    history = await PgJobEventStore(pool).job_events_list(job_id)
    assert [(e.from_status, e.to_status, e.reason, e.worker_id, e.attempt) for e in history] == [
        (None, JobStatus.PENDING, Reason.SUBMITTED, None, None),
        (JobStatus.PENDING, JobStatus.ASSIGNED, Reason.ASSIGNED, worker_id, attempt),
        (JobStatus.ASSIGNED, JobStatus.RUNNING, Reason.STARTED, worker_id, attempt),
        (JobStatus.RUNNING, JobStatus.DONE, Reason.COMPLETED, worker_id, attempt),
    ]
    [dup] = (
        await jobs.jobs_complete([Success(job_id, attempt, worker_id, b"2", claim_id=claim_id)])
    ).results
    assert (dup.accepted, dup.message) == (True, "duplicate")
    assert len(await PgJobEventStore(pool).job_events_list(job_id)) == 4


async def test_duplicate_reports_are_idempotent(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    [job_id] = await _submit(pool)
    worker_id = await _worker(pool)
    [assignment] = await _claim(pool, worker_id, ["default"], 1)
    ref = assignment.ref
    await jobs.jobs_start([ref])
    [again] = (await jobs.jobs_start([ref])).results
    assert again.accepted
    assert again.message == "duplicate"
    success = Success(job_id, ref.attempt, worker_id, b"1", claim_id=ref.claim_id)
    await jobs.jobs_complete([success])
    [dup] = (
        await jobs.jobs_complete(
            [Success(job_id, ref.attempt, worker_id, b"2", claim_id=ref.claim_id)]
        )
    ).results
    assert dup.accepted
    assert dup.message == "duplicate"
    assert (await jobs.job_get(job_id)).result == b"1"  # the duplicate changed nothing
    assert await _reasons(pool, job_id) == [
        Reason.SUBMITTED,
        Reason.ASSIGNED,
        Reason.STARTED,
        Reason.COMPLETED,
    ]


async def test_reports_of_a_superseded_attempt_or_another_worker_are_rejected(
    pool: asyncpg.Pool,
) -> None:
    jobs = PgJobStore(pool)
    [job_id] = await _submit(pool)
    lost, rescuer = await _worker(pool), await _worker(pool)
    [first] = await _claim(pool, lost, ["default"], 1)
    await jobs.jobs_start([first.ref])
    # The heartbeat monitor declares `lost` dead: its claim is interrupted, the job is PENDING
    # again at once.
    [rescued] = await jobs.jobs_interrupt([first.ref], Reason.WORKER_LOST, "no heartbeat")
    assert (rescued.from_status, rescued.to_status) == (JobStatus.RUNNING, JobStatus.PENDING)
    [second] = await _claim(pool, rescuer, ["default"], 1)
    assert second.job.attempt == first.job.attempt + 1
    before = await jobs.job_get(job_id)
    events_before = await _reasons(pool, job_id)
    stale = Success(job_id, first.job.attempt, lost, b"late", claim_id=first.claim_id)
    [late] = (await jobs.jobs_complete([stale])).results
    assert not late.accepted
    wrong = AttemptRef(job_id, second.job.attempt, lost, second.claim_id)
    [wrong_worker] = (await jobs.jobs_start([wrong])).results
    assert not wrong_worker.accepted
    late_failure = Failure(job_id, first.job.attempt, lost, "late", claim_id=first.claim_id)
    [late_fail] = (await jobs.jobs_fail([late_failure], NO_JITTER)).results
    assert not late_fail.accepted
    assert await jobs.jobs_interrupt([first.ref], Reason.WORKER_LOST, "again") == []
    assert await jobs.job_get(job_id) == before
    assert await _reasons(pool, job_id) == events_before
    assert events_before[-2:] == [Reason.WORKER_LOST, Reason.ASSIGNED]


async def test_failure_retries_with_backoff_then_dead_letters(pool: asyncpg.Pool) -> None:
    await PgQueueStore(pool).queue_create("flaky", max_retries=2)
    jobs = PgJobStore(pool)
    [job_id] = await _submit(pool, queue="flaky")
    worker_id = await _worker(pool, ("flaky",))
    now = datetime(2030, 1, 1, tzinfo=UTC)
    expected_delays = [10.0, 20.0]  # base 5 · 2^retry_count, retry_count 1 then 2
    for delay in expected_delays:
        await pool.execute("UPDATE jobs SET not_before = NULL WHERE job_id = $1", job_id)
        [a] = await _claim(pool, worker_id, ["flaky"], 1)
        await jobs.jobs_start([a.ref])
        failure = Failure(job_id, a.job.attempt, worker_id, "boom", claim_id=a.claim_id)
        [r] = (await jobs.jobs_fail([failure], NO_JITTER, now)).results
        assert r.accepted
        job = await jobs.job_get(job_id)
        assert job.status is JobStatus.PENDING
        assert job.not_before == now + timedelta(seconds=delay)
        assert job.error_message == "boom"
        assert job.worker_id == worker_id
    await pool.execute("UPDATE jobs SET not_before = NULL WHERE job_id = $1", job_id)
    [a] = await _claim(pool, worker_id, ["flaky"], 1)
    await jobs.jobs_start([a.ref])
    final = Failure(job_id, a.job.attempt, worker_id, "final", claim_id=a.claim_id)
    await jobs.jobs_fail([final], NO_JITTER, now)
    job = await jobs.job_get(job_id)
    assert job.status is JobStatus.DEAD_LETTERED
    assert job.retry_count == 2
    assert job.completed_at is not None
    history = await PgJobEventStore(pool).job_events_list(job_id)
    tail = [(e.from_status, e.to_status, e.reason) for e in history[-2:]]
    assert tail == [
        (JobStatus.RUNNING, JobStatus.FAILED, Reason.FAILED),
        (JobStatus.FAILED, JobStatus.DEAD_LETTERED, Reason.RETRIES_EXHAUSTED),
    ]
    assert history[-2].detail == "final"
    assert [e.id for e in history] == sorted(e.id for e in history)


async def test_worker_lost_rescues_assigned_jobs_too(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    [job_id] = await _submit(pool)
    worker_id = await _worker(pool)
    [a] = await _claim(pool, worker_id, ["default"], 1)
    # A worker's own FAILED report needs a RUNNING job; the rescue takes ASSIGNED ones as well.
    own = Failure(job_id, a.job.attempt, worker_id, "x", claim_id=a.claim_id)
    [refused] = (await jobs.jobs_fail([own], NO_JITTER)).results
    assert not refused.accepted
    [rescued] = await jobs.jobs_interrupt([a.ref], Reason.WORKER_LOST, "no heartbeat for 30s")
    assert (rescued.from_status, rescued.to_status, rescued.reason) == (
        JobStatus.ASSIGNED,
        JobStatus.PENDING,
        Reason.WORKER_LOST,
    )
    job = await jobs.job_get(job_id)
    # An interruption, not a failure: no retry used.
    assert (job.status, job.retry_count, job.interruptions) == (JobStatus.PENDING, 0, 1)
    history = await PgJobEventStore(pool).job_events_list(job_id)
    assert [(e.from_status, e.to_status, e.reason, e.detail) for e in history[-1:]] == [
        (
            JobStatus.ASSIGNED,
            JobStatus.PENDING,
            Reason.WORKER_LOST,
            "no heartbeat for 30s; interruption 1 of 3 allowed",
        ),
    ]


async def test_release_returns_jobs_without_consuming_a_retry(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ids = await _submit(pool, 2)
    worker_id = await _worker(pool)
    claimed = await _claim(pool, worker_id, ["default"], 2)
    refs = [a.ref for a in claimed]
    await jobs.jobs_start(refs[:1])
    assert sorted(await jobs.jobs_held_by_worker(worker_id), key=lambda r: r.job_id) == sorted(
        refs, key=lambda r: r.job_id
    )
    results = (await jobs.jobs_release(refs, Reason.WORKER_SHUTDOWN)).results
    assert all(r.accepted for r in results)
    for job_id in ids:
        job = await jobs.job_get(job_id)
        assert (job.status, job.retry_count, job.worker_id) == (JobStatus.PENDING, 0, None)
    assert (await _reasons(pool, ids[0]))[-1] is Reason.WORKER_SHUTDOWN
    assert await jobs.jobs_held_by_worker(worker_id) == []
    events_before = await _reasons(pool, ids[0])
    # The same report again is an idempotent duplicate; another worker's is refused.
    [again] = (await jobs.jobs_release(refs[:1], Reason.WORKER_SHUTDOWN)).results
    assert again.accepted
    assert again.message == "duplicate"
    assert await _reasons(pool, ids[0]) == events_before
    stranger = AttemptRef(refs[0].job_id, refs[0].attempt, uuid.uuid4(), refs[0].claim_id)
    [refused] = (await jobs.jobs_release([stranger], Reason.WORKER_SHUTDOWN)).results
    assert not refused.accepted
    reclaimed = await _claim(pool, worker_id, ["default"], 2)
    assert {a.job.attempt for a in reclaimed} == {2}


async def test_failures_of_one_call_share_a_reason(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    mixed = [
        Failure(uuid.uuid4(), 1, uuid.uuid4(), "a", Reason.FAILED, claim_id=None),
        Failure(uuid.uuid4(), 1, uuid.uuid4(), "b", Reason.WORKER_LOST, claim_id=None),
    ]
    with pytest.raises(ValueError, match="share their reason"):
        await jobs.jobs_fail(mixed, NO_JITTER)
