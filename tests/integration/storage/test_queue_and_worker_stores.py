"""PgQueueStore and PgWorkerStore against a real PostgreSQL."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from jobq.domain.errors import (
    QueueAlreadyExists,
    QueueNotEmpty,
    QueueNotFound,
    WorkerNotFound,
)
from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob
from jobq.domain.states import JobStatus, WorkerStatus
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.workers import PgWorkerStore


async def test_queue_create_get_list(pool: asyncpg.Pool) -> None:
    queues = PgQueueStore(pool)
    created = await queues.queue_create("emails", max_retries=5, ttl_seconds=60)
    assert (created.name, created.max_retries, created.ttl_seconds) == ("emails", 5, 60)
    assert await queues.queue_get("emails") == created
    assert [q.name for q in await queues.queue_list()] == ["default", "emails"]


async def test_queue_create_twice_is_already_exists_and_changes_nothing(
    pool: asyncpg.Pool,
) -> None:
    queues = PgQueueStore(pool)
    first = await queues.queue_create("q1", max_retries=1)
    with pytest.raises(QueueAlreadyExists, match="queue 'q1' already exists"):
        await queues.queue_create("q1", max_retries=9)
    assert await queues.queue_get("q1") == first


async def test_unknown_queue_is_not_found(pool: asyncpg.Pool) -> None:
    queues = PgQueueStore(pool)
    with pytest.raises(QueueNotFound):
        await queues.queue_get("nope")
    with pytest.raises(QueueNotFound):
        await queues.queue_delete("nope")
    with pytest.raises(QueueNotFound):
        await queues.queue_stats("nope")


async def test_queue_delete_refuses_unfinished_jobs_unless_forced(pool: asyncpg.Pool) -> None:
    queues, jobs = PgQueueStore(pool), PgJobStore(pool)
    await queues.queue_create("busy")
    await jobs.jobs_insert([NewJob(uuid7(), "busy", b"{}") for _ in range(3)])
    with pytest.raises(QueueNotEmpty, match="3 unfinished"):
        await queues.queue_delete("busy")
    assert (await queues.queue_get("busy")).name == "busy"
    assert await queues.queue_delete("busy", force=True) == 3
    with pytest.raises(QueueNotFound):
        await queues.queue_get("busy")
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE queue_name = 'busy'") == 0


async def test_queue_delete_of_an_empty_queue(pool: asyncpg.Pool) -> None:
    queues = PgQueueStore(pool)
    await queues.queue_create("idle")
    assert await queues.queue_delete("idle") == 0


async def test_queue_stats_counts_per_status(pool: asyncpg.Pool) -> None:
    queues, jobs = PgQueueStore(pool), PgJobStore(pool)
    ids = [uuid7() for _ in range(4)]
    await jobs.jobs_insert([NewJob(i, "default", b"{}") for i in ids])
    await jobs.job_cancel(ids[0])
    stats = await queues.queue_stats("default")
    assert stats.counts[JobStatus.PENDING] == 3
    assert stats.counts[JobStatus.DEAD_LETTERED] == 1
    assert stats.counts[JobStatus.DONE] == 0
    assert stats.oldest_pending_age_s >= 0.0
    assert stats.total_retries == 0


async def test_worker_register_is_an_upsert(pool: asyncpg.Pool) -> None:
    workers = PgWorkerStore(pool)
    worker_id = uuid.uuid4()
    first = await workers.worker_register(worker_id, "host-a", 4, ["default"])
    assert first.status is WorkerStatus.ONLINE
    assert first.queues == ("default",)
    await workers.worker_set_status(worker_id, WorkerStatus.OFFLINE)
    again = await workers.worker_register(worker_id, "host-b", 8, ["a", "b"])
    assert (again.hostname, again.concurrency, again.queues) == ("host-b", 8, ("a", "b"))
    assert again.status is WorkerStatus.ONLINE
    assert len(await workers.worker_list()) == 1


async def test_worker_heartbeat(pool: asyncpg.Pool) -> None:
    workers = PgWorkerStore(pool)
    worker_id = uuid.uuid4()
    registered = await workers.worker_register(worker_id, "h", 2, ["default"])
    beat = await workers.worker_heartbeat(worker_id, 2)
    assert beat.active_job_count == 2
    assert beat.last_heartbeat >= registered.last_heartbeat
    with pytest.raises(WorkerNotFound):
        await workers.worker_heartbeat(uuid.uuid4(), 0)
    # A worker declared OFFLINE must register again; its heartbeat does not revive it.
    await workers.worker_set_status(worker_id, WorkerStatus.OFFLINE)
    with pytest.raises(WorkerNotFound):
        await workers.worker_heartbeat(worker_id, 0)
    assert (await workers.worker_get(worker_id)).status is WorkerStatus.OFFLINE


async def test_worker_list_filters_by_status(pool: asyncpg.Pool) -> None:
    workers = PgWorkerStore(pool)
    a, b = uuid.uuid4(), uuid.uuid4()
    await workers.worker_register(a, "h", 1, ["default"])
    await workers.worker_register(b, "h", 1, ["default"])
    await workers.worker_set_status(b, WorkerStatus.DRAINING)
    assert [w.worker_id for w in await workers.worker_list(WorkerStatus.DRAINING)] == [b]
    assert [w.worker_id for w in await workers.worker_list(WorkerStatus.ONLINE)] == [a]
    with pytest.raises(WorkerNotFound):
        await workers.worker_set_status(uuid.uuid4(), WorkerStatus.DRAINING)
