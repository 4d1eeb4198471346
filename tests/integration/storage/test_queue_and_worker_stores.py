"""PgQueueStore and PgWorkerStore against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from jobq.domain.errors import (
    QueueAlreadyExists,
    QueueNotEmpty,
    QueueNotFound,
    QueueServedByLiveWorkers,
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
    with pytest.raises(QueueNotEmpty, match="3 job\\(s\\), 3 unfinished") as refused:
        await queues.queue_delete("busy")
    assert (refused.value.jobs, refused.value.unfinished) == (3, 3)
    assert (await queues.queue_get("busy")).name == "busy"
    assert await queues.queue_delete("busy", force=True) == 3
    with pytest.raises(QueueNotFound):
        await queues.queue_get("busy")
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE queue_name = 'busy'") == 0


async def test_queue_delete_refuses_finished_jobs_too_unless_forced(pool: asyncpg.Pool) -> None:
    """The finding: five finished jobs' history went with an unforced delete."""
    queues, jobs = PgQueueStore(pool), PgJobStore(pool)
    await queues.queue_create("history")
    ids = [uuid7() for _ in range(5)]
    await jobs.jobs_insert([NewJob(job_id, "history", b"{}") for job_id in ids])
    for job_id in ids:
        await jobs.job_cancel(job_id)  # DEAD_LETTERED: finished
    with pytest.raises(QueueNotEmpty) as refused:
        await queues.queue_delete("history")
    assert str(refused.value) == (
        "queue 'history' holds 5 job(s), 0 unfinished; deleting it deletes them and their "
        "history: use --force (DeleteQueue force=true)"
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM job_events e JOIN jobs j USING (job_id)"
            " WHERE j.queue_name = 'history'"
        )
        == 10
    )
    (bystander,) = await jobs.jobs_insert([NewJob(uuid7(), "default", b"{}")])
    assert await queues.queue_delete("history", force=True) == 5
    # Their events went with them (queue_delete deletes them: no reference cascades since
    # V16), and only theirs.
    events = await pool.fetch("SELECT job_id, reason FROM job_events")
    assert [(r["job_id"], r["reason"]) for r in events] == [(bystander.job_id, "SUBMITTED")]


async def test_queue_delete_of_an_empty_queue(pool: asyncpg.Pool) -> None:
    queues = PgQueueStore(pool)
    await queues.queue_create("idle")
    assert await queues.queue_delete("idle") == 0


@pytest.mark.parametrize("status", [WorkerStatus.ONLINE, WorkerStatus.DRAINING])
async def test_queue_delete_refuses_a_queue_live_workers_serve_even_forced(
    pool: asyncpg.Pool, status: WorkerStatus
) -> None:
    queues, workers = PgQueueStore(pool), PgWorkerStore(pool)
    await queues.queue_create("served")
    serving = sorted([uuid.uuid4(), uuid.uuid4()])
    for worker_id in serving:
        await workers.worker_register(worker_id, "h", 1, ["default", "served"])
        await workers.worker_set_status(worker_id, status)
    await workers.worker_register(uuid.uuid4(), "h", 1, ["default"])  # serves another queue
    for force in (False, True):
        with pytest.raises(QueueServedByLiveWorkers) as refused:
            await queues.queue_delete("served", force=force)
        assert refused.value.worker_ids == tuple(serving)
        message = str(refused.value)
        assert message.startswith("queue 'served' is served by 2 live worker(s) (")
        assert all(str(worker_id) in message for worker_id in serving)
        assert "stop them" in message
    assert (await queues.queue_get("served")).name == "served"


async def test_queue_delete_ignores_offline_workers(pool: asyncpg.Pool) -> None:
    queues, workers = PgQueueStore(pool), PgWorkerStore(pool)
    await queues.queue_create("old")
    worker_id = uuid.uuid4()
    await workers.worker_register(worker_id, "h", 1, ["old"])
    await workers.worker_set_status(worker_id, WorkerStatus.OFFLINE)
    assert await queues.queue_delete("old") == 0


async def test_queue_served_by_many_workers_names_the_first_five(pool: asyncpg.Pool) -> None:
    queues, workers = PgQueueStore(pool), PgWorkerStore(pool)
    ids = sorted(uuid.uuid4() for _ in range(7))
    for worker_id in ids:
        await workers.worker_register(worker_id, "h", 1, ["default"])
    with pytest.raises(QueueServedByLiveWorkers) as refused:
        await queues.queue_delete("default", force=True)
    message = str(refused.value)
    assert "7 live worker(s)" in message
    assert f"{ids[4]} and 2 more" in message
    assert str(ids[5]) not in message


async def _wait_for_a_lock_wait(pool: asyncpg.Pool, within: float = 10) -> None:
    """Wait until some session of this database waits for a lock."""
    deadline = asyncio.get_running_loop().time() + within
    while not await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ):
        assert asyncio.get_running_loop().time() < deadline, "nothing waited for a lock"
        await asyncio.sleep(0.01)


async def test_queue_delete_and_a_submit_to_it_do_not_interleave(pool: asyncpg.Pool) -> None:
    """The checks and the delete hold the queue's row lock: a submit that races a forced
    delete either lands before it (and is deleted with it, counted) or fails as not found."""
    queues, jobs = PgQueueStore(pool), PgJobStore(pool)
    await queues.queue_create("race")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM queues WHERE name = 'race' FOR UPDATE")
        deleting = asyncio.create_task(queues.queue_delete("race", force=True))
        await _wait_for_a_lock_wait(pool)
        assert not deleting.done()
        await conn.execute("INSERT INTO jobs (queue_name) VALUES ('race')")  # got in first
    assert await deleting == 1
    with pytest.raises(QueueNotFound):
        await jobs.jobs_insert([NewJob(uuid7(), "race", b"{}")])


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
    first = (await workers.worker_register(worker_id, "host-a", 4, ["default"])).worker
    assert first.status is WorkerStatus.ONLINE
    assert first.queues == ("default",)
    await workers.worker_set_status(worker_id, WorkerStatus.OFFLINE)
    again = (await workers.worker_register(worker_id, "host-b", 8, ["a", "b"])).worker
    assert (again.hostname, again.concurrency, again.queues) == ("host-b", 8, ("a", "b"))
    assert again.status is WorkerStatus.ONLINE
    assert len(await workers.worker_list()) == 1


async def test_worker_heartbeat(pool: asyncpg.Pool) -> None:
    workers = PgWorkerStore(pool)
    worker_id = uuid.uuid4()
    registration = await workers.worker_register(worker_id, "h", 2, ["default"])
    registered, incarnation = registration.worker, registration.incarnation
    beat = await workers.worker_heartbeat(worker_id, incarnation, 2)
    assert beat.active_job_count == 2
    assert beat.last_heartbeat >= registered.last_heartbeat
    with pytest.raises(WorkerNotFound):
        await workers.worker_heartbeat(uuid.uuid4(), incarnation, 0)
    # A worker declared OFFLINE must register again; its heartbeat does not revive it.
    await workers.worker_set_status(worker_id, WorkerStatus.OFFLINE)
    with pytest.raises(WorkerNotFound):
        await workers.worker_heartbeat(worker_id, incarnation, 0)
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
