"""job_insert_assigned: a lone job written straight to a worker, as a claim would leave it, and
only when a claim would have given it to that worker at once (issue 17)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from jobq.domain.errors import QueueNotFound
from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptRef, NewJob, Success
from jobq.domain.states import JobStatus
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore


@dataclass(frozen=True)
class _Worker:
    worker_id: uuid.UUID
    incarnation: uuid.UUID


async def _worker(pool: asyncpg.Pool) -> _Worker:
    """A worker registered ONLINE for the default queue, as its process `incarnation`."""
    registration = await PgWorkerStore(pool).worker_register(uuid.uuid4(), "h", 4, ["default"])
    return _Worker(registration.worker.worker_id, registration.incarnation)


async def _events(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT from_status, to_status, reason, worker_id, attempt, claim_id, occurred_at"
        " FROM job_events WHERE job_id = $1 ORDER BY id",
        job_id,
    )
    return [dict(r) for r in rows]


async def test_a_job_is_written_assigned_as_a_claim_would_leave_it(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    worker = await _worker(pool)
    job = NewJob(uuid7(), "default", b'{"handler": "m:f"}', priority=3, correlation_id="c-1")
    direct = await jobs.job_insert_assigned(job, worker.worker_id, incarnation=worker.incarnation)
    assert direct is not None
    assert direct.assignment is not None
    assert direct.submitted.job_id == job.job_id
    assert not direct.submitted.existing
    assignment = direct.assignment
    stored = assignment.job
    assert (stored.status, stored.worker_id, stored.attempt) == (
        JobStatus.ASSIGNED,
        worker.worker_id,
        1,
    )
    assert (stored.priority, stored.payload, stored.max_retries) == (3, job.payload, 3)
    assert assignment.claim_id is not None
    row = await pool.fetchrow(
        "SELECT claim_id, assigned_at, correlation_id, status FROM jobs WHERE job_id = $1",
        job.job_id,
    )
    assert row["claim_id"] == assignment.claim_id
    assert row["assigned_at"] is not None
    assert row["correlation_id"] == "c-1"
    events = await _events(pool, job.job_id)
    assert [(e["from_status"], e["to_status"], e["reason"]) for e in events] == [
        (None, "PENDING", "SUBMITTED"),
        ("PENDING", "ASSIGNED", "ASSIGNED"),
    ]
    assigned = events[1]
    assert (assigned["worker_id"], assigned["attempt"], assigned["claim_id"]) == (
        worker.worker_id,
        1,
        assignment.claim_id,
    )
    assert events[0]["occurred_at"] <= assigned["occurred_at"]
    # Fenced like any claim: the worker's start and result are accepted, a stale claim id's not.
    stale = AttemptRef(job.job_id, 1, worker.worker_id, uuid.uuid4())
    assert not (await jobs.jobs_start([stale])).results[0].accepted
    assert (await jobs.jobs_start([assignment.ref])).results[0].accepted
    ref = assignment.ref
    success = Success(ref.job_id, ref.attempt, ref.worker_id, b'"ok"', claim_id=ref.claim_id)
    done = await jobs.jobs_complete([success])
    assert done.results[0].accepted
    assert (await jobs.job_get(job.job_id)).status is JobStatus.DONE


@pytest.mark.parametrize("waiting", ["due", "delayed"])
async def test_a_job_waits_its_turn_behind_the_queues_pending_jobs(
    pool: asyncpg.Pool, waiting: str
) -> None:
    """Claim order would put any pending job first (a delayed one too, once due): the new job is
    written PENDING, with its SUBMITTED event only, and nothing is assigned."""
    jobs = PgJobStore(pool)
    later = datetime.now(UTC) + timedelta(hours=1) if waiting == "delayed" else None
    await jobs.jobs_insert([NewJob(uuid7(), "default", b"{}", not_before=later)])
    worker = await _worker(pool)
    job = NewJob(uuid7(), "default", b"{}")
    direct = await jobs.job_insert_assigned(job, worker.worker_id, incarnation=worker.incarnation)
    assert direct is not None
    assert direct.assignment is None
    stored = await jobs.job_get(job.job_id)
    assert (stored.status, stored.worker_id, stored.attempt) == (JobStatus.PENDING, None, 0)
    assert [e["reason"] for e in await _events(pool, job.job_id)] == ["SUBMITTED"]


async def test_another_queues_pending_jobs_do_not_hold_it_back(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    await pool.execute("INSERT INTO queues (name) VALUES ('other')")
    await jobs.jobs_insert([NewJob(uuid7(), "other", b"{}")])
    worker = await _worker(pool)
    direct = await jobs.job_insert_assigned(
        NewJob(uuid7(), "default", b"{}"), worker.worker_id, incarnation=worker.incarnation
    )
    assert direct is not None
    assert direct.assignment is not None


@pytest.mark.parametrize("change", ["superseded", "lost", "draining"])
async def test_a_worker_not_online_as_that_process_gets_nothing(
    pool: asyncpg.Pool, change: str
) -> None:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    worker = await _worker(pool)
    if change == "superseded":  # another process registered under the id since
        await workers.worker_register(worker.worker_id, "h", 4, ["default"])
    else:
        status = "OFFLINE" if change == "lost" else "DRAINING"
        await pool.execute(
            "UPDATE workers SET status = $2 WHERE worker_id = $1", worker.worker_id, status
        )
    job = NewJob(uuid7(), "default", b"{}")
    direct = await jobs.job_insert_assigned(job, worker.worker_id, incarnation=worker.incarnation)
    assert direct is not None
    assert direct.assignment is None
    assert (await jobs.job_get(job.job_id)).status is JobStatus.PENDING


async def test_a_taken_id_or_key_writes_nothing(pool: asyncpg.Pool) -> None:
    """The caller then goes through jobs_insert, which says who holds it."""
    jobs = PgJobStore(pool)
    worker = await _worker(pool)
    first = NewJob(uuid7(), "default", b"{}", idempotency_key="k")
    [held] = await jobs.jobs_insert([first])
    before = await pool.fetchval("SELECT count(*) FROM job_events")
    again_key = NewJob(uuid7(), "default", b"{}", idempotency_key="k")
    again_id = NewJob(first.job_id, "default", b"{}", id_from_client=True)
    for job in (again_key, again_id):
        assert (
            await jobs.job_insert_assigned(job, worker.worker_id, incarnation=worker.incarnation)
            is None
        )
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 1
    assert await pool.fetchval("SELECT count(*) FROM job_events") == before
    assert (await jobs.job_get(held.job_id)).status is JobStatus.PENDING


async def test_an_unknown_queue_is_named(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    worker = await _worker(pool)
    for max_retries in (None, 2):  # NULL max_retries, or the queue's foreign key
        with pytest.raises(QueueNotFound, match="nope"):
            await jobs.job_insert_assigned(
                NewJob(uuid7(), "nope", b"{}", max_retries=max_retries),
                worker.worker_id,
                incarnation=worker.incarnation,
            )
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_a_delayed_job_is_refused(pool: asyncpg.Pool) -> None:
    worker = await _worker(pool)
    later = datetime.now(UTC) + timedelta(minutes=1)
    with pytest.raises(ValueError, match="not_before"):
        await PgJobStore(pool).job_insert_assigned(
            NewJob(uuid7(), "default", b"{}", not_before=later),
            worker.worker_id,
            incarnation=worker.incarnation,
        )
