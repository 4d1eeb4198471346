"""PgJobStore submit, read, list, cancel and manual retry against a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from jobq.domain.errors import InvalidArgument, InvalidTransition, JobNotFound, QueueNotFound
from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.queues import PgQueueStore


async def test_insert_writes_jobs_and_submitted_events(pool: asyncpg.Pool) -> None:
    jobs, events = PgJobStore(pool), PgJobEventStore(pool)
    new = [NewJob(uuid7(), "default", f'{{"n": {i}}}'.encode(), priority=i % 10) for i in range(5)]
    inserted = await jobs.jobs_insert(new)
    assert [(s.job_id, s.existing) for s in inserted] == [(n.job_id, False) for n in new]
    for n in new:
        job = await jobs.job_get(n.job_id)
        assert job.status is JobStatus.PENDING
        assert job.payload == n.payload
        assert job.priority == n.priority
        assert job.max_retries == 3  # the default queue's
        assert job.retry_count == 0
        assert job.attempt == 0
        history = await events.job_events_list(n.job_id)
        assert [(e.from_status, e.to_status, e.reason) for e in history] == [
            (None, JobStatus.PENDING, Reason.SUBMITTED)
        ]
        assert history[0].queue_name == "default"


async def test_insert_takes_max_retries_from_the_queue_unless_given(pool: asyncpg.Pool) -> None:
    await PgQueueStore(pool).queue_create("q7", max_retries=7)
    jobs = PgJobStore(pool)
    a, b = uuid7(), uuid7()
    await jobs.jobs_insert([NewJob(a, "q7", b""), NewJob(b, "q7", b"", max_retries=0)])
    assert (await jobs.job_get(a)).max_retries == 7
    assert (await jobs.job_get(b)).max_retries == 0


async def test_insert_into_an_unknown_queue_inserts_nothing(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    batch = [NewJob(uuid7(), "default", b""), NewJob(uuid7(), "missing", b"")]
    with pytest.raises(QueueNotFound, match="queue 'missing' not found"):
        await jobs.jobs_insert(batch)
    batch_with_retries = [NewJob(uuid7(), "default", b""), NewJob(uuid7(), "gone", b"", 1, 2)]
    with pytest.raises(QueueNotFound, match="queue 'gone' not found"):
        await jobs.jobs_insert(batch_with_retries)
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0
    assert await pool.fetchval("SELECT count(*) FROM job_events") == 0


async def test_unknown_job_is_not_found(pool: asyncpg.Pool) -> None:
    jobs, events = PgJobStore(pool), PgJobEventStore(pool)
    missing = uuid.uuid4()
    with pytest.raises(JobNotFound, match=str(missing)):
        await jobs.job_get(missing)
    with pytest.raises(JobNotFound):
        await events.job_events_list(missing)
    with pytest.raises(JobNotFound):
        await jobs.job_cancel(missing)
    with pytest.raises(JobNotFound):
        await jobs.job_retry_manual(missing)


async def test_list_pages_with_keyset_tokens_newest_first(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    ids = []
    # Separate statements give distinct created_at values; a batch shares one.
    for _ in range(3):
        batch = [NewJob(uuid7(), "default", b"") for _ in range(4)]
        await jobs.jobs_insert(batch)
        ids.extend(n.job_id for n in batch)
    seen: list[uuid.UUID] = []
    token = ""
    pages = 0
    while True:
        page = await jobs.jobs_list(limit=5, page_token=token)
        seen.extend(job.job_id for job in page.jobs)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == sorted(ids)
    assert len(set(seen)) == len(ids)
    expected_order = sorted(ids, key=lambda i: i, reverse=True)  # uuid7 grows with time
    created = {i: (await jobs.job_get(i)).created_at for i in ids}
    assert seen == sorted(expected_order, key=lambda i: created[i], reverse=True)


async def test_list_filters_by_queue_and_status(pool: asyncpg.Pool) -> None:
    await PgQueueStore(pool).queue_create("other")
    jobs = PgJobStore(pool)
    a, b, c = uuid7(), uuid7(), uuid7()
    await jobs.jobs_insert([NewJob(a, "default", b""), NewJob(b, "other", b"")])
    await jobs.jobs_insert([NewJob(c, "other", b"")])
    await jobs.job_cancel(c)
    assert {j.job_id for j in (await jobs.jobs_list(queue_name="other")).jobs} == {b, c}
    dead = await jobs.jobs_list(status=JobStatus.DEAD_LETTERED)
    assert [j.job_id for j in dead.jobs] == [c]
    pending_other = await jobs.jobs_list(queue_name="other", status=JobStatus.PENDING)
    assert [j.job_id for j in pending_other.jobs] == [b]


@pytest.mark.parametrize("token", ["garbage", "eyJjIjogMX0", "x" * 300])
async def test_list_rejects_a_forged_page_token(pool: asyncpg.Pool, token: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid page token"):
        await PgJobStore(pool).jobs_list(page_token=token)


async def test_cancel_pending_dead_letters_with_an_event(pool: asyncpg.Pool) -> None:
    jobs, events = PgJobStore(pool), PgJobEventStore(pool)
    job_id = uuid7()
    await jobs.jobs_insert([NewJob(job_id, "default", b"")])
    change = await jobs.job_cancel(job_id)
    cancelled = change.job
    assert (change.was, change.unannounced) == (JobStatus.PENDING, False)
    assert cancelled.status is JobStatus.DEAD_LETTERED
    assert cancelled.completed_at is not None
    history = await events.job_events_list(job_id)
    assert (history[-1].from_status, history[-1].to_status, history[-1].reason) == (
        JobStatus.PENDING,
        JobStatus.DEAD_LETTERED,
        Reason.CANCELLED,
    )


async def test_cancel_of_a_finished_job_is_refused_and_changes_nothing(pool: asyncpg.Pool) -> None:
    jobs, events = PgJobStore(pool), PgJobEventStore(pool)
    job_id = uuid7()
    await jobs.jobs_insert([NewJob(job_id, "default", b"")])
    await jobs.job_cancel(job_id)
    before = await jobs.job_get(job_id)
    with pytest.raises(InvalidTransition, match=r"cannot cancel job .* it is DEAD_LETTERED"):
        await jobs.job_cancel(job_id)
    assert await jobs.job_get(job_id) == before
    assert len(await events.job_events_list(job_id)) == 2


async def test_manual_retry_of_a_dead_lettered_job(pool: asyncpg.Pool) -> None:
    jobs, events = PgJobStore(pool), PgJobEventStore(pool)
    job_id = uuid7()
    await jobs.jobs_insert([NewJob(job_id, "default", b"")])
    with pytest.raises(InvalidTransition, match="cannot retry"):
        await jobs.job_retry_manual(job_id)
    await jobs.job_cancel(job_id)
    change = await jobs.job_retry_manual(job_id)
    retried = change.job
    assert change.was is JobStatus.DEAD_LETTERED
    assert retried.status is JobStatus.PENDING
    assert retried.retry_count == 0
    assert retried.completed_at is None
    assert retried.not_before is not None
    assert retried.not_before <= datetime.now(UTC) + timedelta(seconds=1)
    reasons = [e.reason for e in await events.job_events_list(job_id)]
    assert reasons == [Reason.SUBMITTED, Reason.CANCELLED, Reason.MANUAL_RETRY]
