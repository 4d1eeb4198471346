"""The limited claim (issue 18): paused queues, concurrency and rate limits per queue and per
key, on a real PostgreSQL, with claims racing from several connections."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import pytest

from jobq.domain.errors import QueueNotFound
from jobq.domain.flow_limits import FlowChange, Rate
from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptRef, NewJob, Success
from jobq.domain.states import JobStatus
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.workers import PgWorkerStore


@dataclass(frozen=True)
class _Worker:
    worker_id: uuid.UUID
    incarnation: uuid.UUID


async def _worker(pool: asyncpg.Pool, queue: str = "default") -> _Worker:
    registration = await PgWorkerStore(pool).worker_register(uuid.uuid4(), "h", 100, [queue])
    return _Worker(registration.worker.worker_id, registration.incarnation)


async def _submit(pool: asyncpg.Pool, *keys: str | None, queue: str = "default") -> list[uuid.UUID]:
    jobs = [NewJob(uuid7(), queue, b'{"handler": "m:f"}', concurrency_key=k) for k in keys]
    await PgJobStore(pool).jobs_insert(jobs)
    return [job.job_id for job in jobs]


async def _claim(pool: asyncpg.Pool, worker: _Worker, want: int, queue: str = "default") -> list:
    claim = await PgJobStore(pool).jobs_claim_limited(
        worker.worker_id, queue, want, incarnation=worker.incarnation
    )
    return claim.assignments


async def _complete(pool: asyncpg.Pool, assignments: list) -> None:
    jobs = PgJobStore(pool)
    refs = [a.ref for a in assignments]
    await jobs.jobs_start(refs)
    await jobs.jobs_complete(
        [Success(r.job_id, r.attempt, r.worker_id, b"", claim_id=r.claim_id) for r in refs]
    )


async def test_a_paused_queue_accepts_submits_and_dispatches_nothing_until_resumed(
    pool: asyncpg.Pool,
) -> None:
    queues, jobs = PgQueueStore(pool), PgJobStore(pool)
    worker = await _worker(pool)
    paused = await queues.queue_set_flow("default", FlowChange(paused=True))
    assert paused.flow.paused
    assert paused.flow.limited
    assert await queues.queues_flow_limited() == {"default"}
    ids = await _submit(pool, None, None)
    # Neither the ordinary claim, nor the limited one, nor the assignment at submit takes them.
    assert (
        await jobs.jobs_claim(worker.worker_id, ["default"], 10, incarnation=worker.incarnation)
        == []
    )
    assert await _claim(pool, worker, 10) == []
    direct = await jobs.job_insert_assigned(
        NewJob(uuid7(), "default", b'{"handler": "m:f"}'),
        worker.worker_id,
        incarnation=worker.incarnation,
    )
    assert direct is not None
    assert direct.assignment is None
    stats = await queues.queue_stats("default")
    assert stats.counts[JobStatus.PENDING] == 3
    assert stats.queue is not None
    assert stats.queue.flow.paused

    resumed = await queues.queue_set_flow("default", FlowChange(paused=False))
    assert not resumed.flow.limited
    assert await queues.queues_flow_limited() == set()
    claimed = await jobs.jobs_claim(
        worker.worker_id, ["default"], 10, incarnation=worker.incarnation
    )
    assert {a.job.job_id for a in claimed} >= set(ids)


async def test_max_running_caps_what_the_queue_holds_and_frees_with_completions(
    pool: asyncpg.Pool,
) -> None:
    await PgQueueStore(pool).queue_set_flow("default", FlowChange(max_running=3))
    worker = await _worker(pool)
    await _submit(pool, *([None] * 10))
    first = await _claim(pool, worker, 10)
    assert len(first) == 3
    assert await _claim(pool, worker, 10) == []
    # The ordinary claim leaves a limited queue alone.
    assert (
        await PgJobStore(pool).jobs_claim(
            worker.worker_id, ["default"], 10, incarnation=worker.incarnation
        )
        == []
    )
    await _complete(pool, first[:2])
    assert len(await _claim(pool, worker, 10)) == 2


async def test_each_key_gets_its_own_room_and_jobs_without_a_key_only_the_queue_limit(
    pool: asyncpg.Pool,
) -> None:
    await PgQueueStore(pool).queue_set_flow("default", FlowChange(key_max_running=1))
    worker = await _worker(pool)
    ids = await _submit(pool, "a", "a", "b", None, "b", None, "c")
    first = await _claim(pool, worker, 10)
    assert [a.job.job_id for a in first] == [ids[0], ids[2], ids[3], ids[5], ids[6]]
    assert [a.job.concurrency_key for a in first] == ["a", "b", None, None, "c"]
    assert await _claim(pool, worker, 10) == []  # a and b are held, the rest waits behind them
    await _complete(pool, [first[0]])  # a's job ends: a's next one may start
    assert [a.job.job_id for a in await _claim(pool, worker, 10)] == [ids[1]]


async def test_racing_claims_from_many_workers_never_exceed_the_limits(
    pool: asyncpg.Pool, db_dsn: str
) -> None:
    await PgQueueStore(pool).queue_set_flow(
        "default", FlowChange(max_running=12, key_max_running=2)
    )
    keys = [f"k{i % 5}" for i in range(200)]
    await _submit(pool, *keys)
    # Two pools stand for two replicas; eight workers claim at once, again and again.
    other = await asyncpg.create_pool(db_dsn, min_size=4, max_size=4)
    try:
        workers = [await _worker(pool) for _ in range(8)]

        async def claims(worker: _Worker, p: asyncpg.Pool) -> None:
            for _ in range(5):
                await _claim(p, worker, 5)

        await asyncio.gather(*(claims(w, pool if i % 2 else other) for i, w in enumerate(workers)))
    finally:
        await other.close()
    held = await pool.fetch(
        "SELECT concurrency_key, count(*) AS n FROM jobs"
        " WHERE status IN ('ASSIGNED', 'RUNNING') GROUP BY concurrency_key"
    )
    per_key = {r["concurrency_key"]: r["n"] for r in held}
    assert sum(per_key.values()) == 10  # five keys of two: the queue's 12 are never reached
    assert max(per_key.values()) == 2


async def test_a_rate_limit_holds_starts_to_its_window_and_says_when_it_frees(
    pool: asyncpg.Pool,
) -> None:
    await PgQueueStore(pool).queue_set_flow("default", FlowChange(rate=Rate(3, 0.4)))
    worker = await _worker(pool)
    await _submit(pool, *([None] * 8))
    jobs = PgJobStore(pool)
    first = await jobs.jobs_claim_limited(
        worker.worker_id, "default", 10, incarnation=worker.incarnation
    )
    assert len(first.assignments) == 3
    assert first.retry_after_s is not None
    assert 0 < first.retry_after_s <= 0.4
    held_back = await jobs.jobs_claim_limited(
        worker.worker_id, "default", 10, incarnation=worker.incarnation
    )
    assert held_back.assignments == []
    assert held_back.retry_after_s is not None
    assert held_back.retry_after_s <= 0.4
    # Claim as the window frees until every job started, then check every window of the
    # period, from the jobs' own ASSIGNED events.
    deadline = asyncio.get_running_loop().time() + 10
    while await pool.fetchval("SELECT count(*) FROM jobs WHERE status = 'PENDING'"):
        assert asyncio.get_running_loop().time() < deadline
        claim = await jobs.jobs_claim_limited(
            worker.worker_id, "default", 10, incarnation=worker.incarnation
        )
        if not claim.assignments:
            await asyncio.sleep(claim.retry_after_s or 0.05)
    starts = [
        r["occurred_at"]
        for r in await pool.fetch(
            "SELECT occurred_at FROM job_events WHERE reason = 'ASSIGNED' ORDER BY occurred_at"
        )
    ]
    assert len(starts) == 8
    period = timedelta(seconds=0.4)
    for end in starts:
        assert sum(1 for t in starts if end - period < t <= end) <= 3
    # The window table keeps about one period of starts.
    assert await pool.fetchval("SELECT count(*) FROM queue_starts") <= 8


async def test_per_key_rates_and_unknown_queues(pool: asyncpg.Pool) -> None:
    queues = PgQueueStore(pool)
    await queues.queue_set_flow("default", FlowChange(key_rate=Rate(1, 60.0)))
    worker = await _worker(pool)
    ids = await _submit(pool, "a", "a", "b", None)
    assert [a.job.job_id for a in await _claim(pool, worker, 10)] == [ids[0], ids[2], ids[3]]
    held_back = await PgJobStore(pool).jobs_claim_limited(
        worker.worker_id, "default", 10, incarnation=worker.incarnation
    )
    assert held_back.assignments == []
    assert held_back.retry_after_s is not None
    assert 59 < held_back.retry_after_s <= 60
    with pytest.raises(QueueNotFound):
        await queues.queue_set_flow("nope", FlowChange(paused=True))
    assert await _claim(pool, worker, 10, queue="nope") == []
    cleared = await queues.queue_set_flow("default", FlowChange(key_rate=Rate(0, 1.0)))
    assert not cleared.flow.limited


async def test_a_claim_for_a_worker_that_is_not_online_takes_nothing(pool: asyncpg.Pool) -> None:
    await PgQueueStore(pool).queue_set_flow("default", FlowChange(max_running=5))
    worker = await _worker(pool)
    await _submit(pool, None)
    stale = _Worker(worker.worker_id, uuid.uuid4())  # another incarnation
    assert await _claim(pool, stale, 5) == []
    got = await _claim(pool, worker, 5)
    assert len(got) == 1
    assert isinstance(got[0].ref, AttemptRef)
