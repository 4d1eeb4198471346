"""Idempotency keys against a real PostgreSQL: a key held by a job (whatever its status) makes a
later submit of it return that job instead of creating one, enforced by the unique index
jobs_idempotency_key_idx (V13) rather than by a read before the write, so concurrent submits
of one key through two pools (two server replicas) still create one job."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob, Submitted, Success, Transition
from jobq.domain.states import JobStatus, Reason
from jobq.server.lifecycle import Lifecycle
from jobq.server.submission import Submitter
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore

ROUNDS = 20
KEYS = 100


def _job(key: str | None, queue: str = "default") -> NewJob:
    return NewJob(uuid7(), queue, b"{}", idempotency_key=key)


async def _count(pool: asyncpg.Pool, key: str) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM jobs WHERE idempotency_key = $1", key)
    return count


async def _reasons(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[Reason]:
    return [e.reason for e in await PgJobEventStore(pool).job_events_list(job_id)]


async def test_a_second_submit_of_a_key_returns_the_first_job(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    first, second = _job("order-42"), _job("order-42")
    [made] = await jobs.jobs_insert([first])
    [again] = await jobs.jobs_insert([second])
    assert made == Submitted(first.job_id, made.created_at, existing=False)
    assert again == Submitted(first.job_id, made.created_at, existing=True)
    assert await _count(pool, "order-42") == 1
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE job_id = $1", second.job_id) == 0
    assert await _reasons(pool, first.job_id) == [Reason.SUBMITTED]  # one event, the first's
    assert await pool.fetchval("SELECT count(*) FROM job_events") == 1


async def test_a_batch_mixes_new_held_and_keyless_jobs(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    [held] = await jobs.jobs_insert([_job("a")])
    batch = [_job(None), _job("a"), _job("b"), _job(None)]
    results = await jobs.jobs_insert(batch)
    assert [(r.job_id, r.existing) for r in results] == [
        (batch[0].job_id, False),
        (held.job_id, True),
        (batch[2].job_id, False),
        (batch[3].job_id, False),
    ]
    assert results[1].created_at == held.created_at
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 4
    assert await pool.fetchval("SELECT count(*) FROM job_events") == 4
    assert (
        await pool.fetchval("SELECT idempotency_key FROM jobs WHERE job_id = $1", batch[0].job_id)
        is None
    )


async def test_repeats_of_a_key_in_one_batch_resolve_to_its_first_job(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    batch = [_job("dup"), _job("other"), _job("dup"), _job("dup")]
    results = await jobs.jobs_insert(batch)
    first = results[0]
    assert (first.job_id, first.existing) == (batch[0].job_id, False)
    assert results[2] == results[3] == Submitted(first.job_id, first.created_at, existing=True)
    assert (results[1].job_id, results[1].existing) == (batch[1].job_id, False)
    assert await _count(pool, "dup") == 1
    # And when the key was already held, every repeat gets the holder.
    again = await jobs.jobs_insert([_job("dup"), _job("dup")])
    assert again == [Submitted(first.job_id, first.created_at, existing=True)] * 2


@pytest.mark.parametrize("status", [JobStatus.DONE, JobStatus.DEAD_LETTERED])
async def test_a_finished_job_still_holds_its_key(pool: asyncpg.Pool, status: JobStatus) -> None:
    jobs = PgJobStore(pool)
    job = _job("finished")
    await jobs.jobs_insert([job])
    if status is JobStatus.DONE:
        worker = uuid.uuid4()
        registration = await PgWorkerStore(pool).worker_register(worker, "h", 1, ["default"])
        [claim] = await jobs.jobs_claim(
            worker, ["default"], 1, incarnation=registration.incarnation
        )
        await jobs.jobs_complete(
            [Success(job.job_id, claim.job.attempt, worker, b"null", claim_id=claim.claim_id)]
        )
    else:
        await jobs.job_cancel(job.job_id)
    assert (await jobs.job_get(job.job_id)).status is status
    [again] = await jobs.jobs_insert([_job("finished")])
    assert (again.job_id, again.existing) == (job.job_id, True)
    assert await _count(pool, "finished") == 1


async def test_a_key_frees_up_when_its_job_is_deleted(pool: asyncpg.Pool) -> None:
    """The rule is the row's lifetime: a force-deleted queue takes its jobs, and their keys."""
    jobs = PgJobStore(pool)
    await pool.execute("INSERT INTO queues (name) VALUES ('gone')")
    [old] = await jobs.jobs_insert([_job("k", "gone")])
    await pool.execute("DELETE FROM queues WHERE name = 'gone'")
    [new] = await jobs.jobs_insert([_job("k")])
    assert not new.existing
    assert new.job_id != old.job_id


async def test_jobs_without_keys_are_unaffected(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    batch = [_job(None) for _ in range(3)]
    first = await jobs.jobs_insert(batch)
    second = await jobs.jobs_insert([_job(None) for _ in range(3)])
    assert [r.existing for r in first + second] == [False] * 6
    assert [r.job_id for r in first] == [j.job_id for j in batch]
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE idempotency_key IS NULL") == 6


async def test_the_database_refuses_keys_outside_1_to_255_characters(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    for key in ("", "x" * 256):
        with pytest.raises(asyncpg.CheckViolationError):
            await jobs.jobs_insert([_job(key)])
    [ok] = await jobs.jobs_insert([_job("x" * 255)])
    assert not ok.existing


# --- concurrency -------------------------------------------------------------------------------


async def test_racing_submits_of_a_key_on_two_replicas_make_one_job(
    replicas: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    one, two = PgJobStore(replicas[0]), PgJobStore(replicas[1])
    for round_ in range(ROUNDS):
        key = f"race-{round_}"
        a, b = _job(key), _job(key)
        [got_a], [got_b] = await asyncio.gather(one.jobs_insert([a]), two.jobs_insert([b]))
        assert got_a.job_id == got_b.job_id
        assert sorted([got_a.existing, got_b.existing]) == [False, True]
        assert got_a.created_at == got_b.created_at
        assert await _count(replicas[0], key) == 1
    events = await replicas[0].fetchval("SELECT count(*) FROM job_events")
    assert events == ROUNDS


async def test_racing_batches_with_shared_keys_make_one_job_per_key(
    replicas: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    """Batches naming the same keys in opposite orders: still one job per key, and no
    deadlock between them."""
    one, two = PgJobStore(replicas[0]), PgJobStore(replicas[1])
    for round_ in range(ROUNDS):
        keys = [f"r{round_}-{i}" for i in range(KEYS)]
        got_a, got_b = await asyncio.gather(
            one.jobs_insert([_job(k) for k in keys]),
            two.jobs_insert([_job(k) for k in reversed(keys)]),
        )
        assert [r.job_id for r in got_a] == [r.job_id for r in reversed(got_b)]
        for a, b in zip(got_a, reversed(got_b), strict=True):
            assert a.existing != b.existing
    total = await replicas[0].fetchval("SELECT count(*) FROM jobs")
    assert total == ROUNDS * KEYS


async def _wait_until_blocked(pool: asyncpg.Pool, blocker_pid: int) -> None:
    """Until some backend waits for a lock held by `blocker_pid` (deadline: 10 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline:
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            blocker_pid,
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the submit never waited for the holder's transaction")


@pytest.mark.parametrize("holder_commits", [True, False], ids=["commits", "rolls-back"])
async def test_a_holder_committed_while_the_submit_waited_is_returned(
    pool: asyncpg.Pool, db_dsn: str, holder_commits: bool
) -> None:
    """The submit's statement waits on the unique index for a transaction that inserted the
    key; once that commits, the holder is not in the statement's snapshot (it is older), yet
    the store must return it, not lose the job nor make a second one (ON CONFLICT ... DO UPDATE
    returns it). If the holder rolls back, the submit inserts its own job."""
    holder = await asyncpg.connect(db_dsn)
    try:
        transaction = holder.transaction()
        await transaction.start()
        holder_id = await holder.fetchval(
            "INSERT INTO jobs (queue_name, idempotency_key) VALUES ('default', 'contended')"
            " RETURNING job_id"
        )
        job = _job("contended")
        submit = asyncio.create_task(PgJobStore(pool).jobs_insert([job]))
        await _wait_until_blocked(pool, holder.get_server_pid())
        if holder_commits:
            await transaction.commit()
        else:
            await transaction.rollback()
        [result] = await asyncio.wait_for(submit, 10)
    finally:
        await holder.close()
    if holder_commits:
        assert (result.job_id, result.existing) == (holder_id, True)
    else:
        assert (result.job_id, result.existing) == (job.job_id, False)
    assert await _count(pool, "contended") == 1


# --- the submitter: what it publishes and wakes ------------------------------------------------


async def test_the_submitter_publishes_and_wakes_only_for_jobs_it_inserted(
    pool: asyncpg.Pool,
) -> None:
    lifecycle = Lifecycle()
    published: list[Transition] = []
    lifecycle.subscribe(published.extend)
    wakes: list[None] = []
    submitter = Submitter(
        PgJobStore(pool), lifecycle, max_batch=10, on_inserted=lambda: wakes.append(None)
    )
    notifications: asyncio.Queue[str] = asyncio.Queue()

    def heard(*args: object) -> None:
        notifications.put_nowait(str(args[3]))

    listener = await pool.acquire()
    await listener.add_listener("jobq_jobs", heard)
    try:
        first = await submitter.submit(_job("s"))
        assert await asyncio.wait_for(notifications.get(), 10) == ""
        assert [(t.job_id, t.reason) for t in published] == [(first.job_id, Reason.SUBMITTED)]
        assert len(wakes) == 1

        again = await submitter.submit(_job("s"))
        batch = await submitter.submit_batch([_job("s"), _job("s")])
        assert again == Submitted(first.job_id, first.created_at, existing=True)
        assert batch == [again, again]
        assert len(published) == 1
        assert len(wakes) == 1

        mixed = [_job("s"), _job(None)]
        results = await submitter.submit_batch(mixed)
        assert [r.existing for r in results] == [True, False]
        assert [t.job_id for t in published] == [first.job_id, mixed[1].job_id]
        assert len(wakes) == 2
        # Notifications arrive in commit order: up to a last one of our own, only the mixed
        # batch's (the submits that inserted nothing sent none).
        await pool.execute("NOTIFY jobq_jobs, 'end'")
        heard_since = [await asyncio.wait_for(notifications.get(), 10)]
        while heard_since[-1] != "end":
            heard_since.append(await asyncio.wait_for(notifications.get(), 10))
        assert heard_since == ["", "end"]
    finally:
        await listener.remove_listener("jobq_jobs", heard)
        await pool.release(listener)
        await submitter.drain()
