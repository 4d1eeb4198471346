"""At most one suspect per worker: the claim's defence of the bystanders of a poison job.

A suspect is a job interrupted twice or more. A worker holding one (ASSIGNED or RUNNING) is
given no other; a worker holding none is given at most one per claim, merged with the ordinary
jobs in claim order. A poison job that kills its worker then stops taking the jobs beside it
down with it to POISON (see the comment on jobs_claim for why the rule suffices).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg
import pytest

from jobq.domain.ids import uuid7
from jobq.domain.records import Assignment, NewJob, Success
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.workers import PgWorkerStore
from jobq.storage.queries import query

SUSPECT = 2
"""Interruptions that make a job a suspect (the literal 2 of jobs_claim)."""

Process = tuple[uuid.UUID, uuid.UUID]  # a worker id and the incarnation of its process


async def _submit(
    pool: asyncpg.Pool, priority: int = 0, queue: str = "default", interruptions: int = 0
) -> uuid.UUID:
    """One job; its interruptions are set directly (what earlier lost workers would have left)."""
    job = NewJob(uuid7(), queue, b"{}", priority=priority)
    await PgJobStore(pool).jobs_insert([job])
    if interruptions:
        await pool.execute(
            "UPDATE jobs SET interruptions = $2 WHERE job_id = $1", job.job_id, interruptions
        )
    return job.job_id


async def _suspect(pool: asyncpg.Pool, priority: int = 0, queue: str = "default") -> uuid.UUID:
    return await _submit(pool, priority, queue, interruptions=SUSPECT)


async def _process(
    pool: asyncpg.Pool, queues: Sequence[str] = ("default",), worker_id: uuid.UUID | None = None
) -> Process:
    """A new worker process registered under `worker_id` (a new id when None)."""
    worker_id = worker_id or uuid.uuid4()
    registration = await PgWorkerStore(pool).worker_register(worker_id, "h", 8, list(queues))
    return worker_id, registration.incarnation


async def _claim(
    pool: asyncpg.Pool, process: Process, n: int, queues: Sequence[str] = ("default",)
) -> list[uuid.UUID]:
    """The ids claimed, in the order the claim returned them."""
    worker_id, incarnation = process
    claimed = await PgJobStore(pool).jobs_claim(worker_id, queues, n, incarnation=incarnation)
    return [a.job.job_id for a in claimed]


# --- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("started", [False, True], ids=["assigned", "running"])
async def test_a_worker_holding_a_suspect_gets_ordinary_jobs_but_no_second_suspect(
    pool: asyncpg.Pool, started: bool
) -> None:
    jobs = PgJobStore(pool)
    held = await _suspect(pool, priority=9)
    process = await _process(pool)
    [assignment] = await jobs.jobs_claim(process[0], ["default"], 1, incarnation=process[1])
    assert assignment.job.job_id == held
    if started:
        await jobs.jobs_start([assignment.ref])
    second = await _suspect(pool, priority=9)  # better than the ordinary jobs
    ordinary = [await _submit(pool) for _ in range(2)]

    assert await _claim(pool, process, 5) == ordinary
    assert (await jobs.job_get(second)).status is JobStatus.PENDING
    assert await _claim(pool, process, 5) == []  # still holding its suspect
    # Another worker takes it; once the first suspect is done, the worker may have one again.
    other = await _process(pool)
    assert await _claim(pool, other, 5) == [second]
    done = Success(held, assignment.job.attempt, process[0], b"null", claim_id=assignment.claim_id)
    assert (await jobs.jobs_complete([done])).results[0].accepted
    third = await _suspect(pool)
    assert await _claim(pool, process, 5) == [third]


async def test_a_worker_holding_no_suspect_gets_one_per_claim_in_claim_order(
    pool: asyncpg.Pool,
) -> None:
    high = await _submit(pool, priority=9)
    best_suspect = await _suspect(pool, priority=5)
    other_suspect = await _suspect(pool, priority=5)  # same priority, created later
    low_suspect = await _suspect(pool, priority=0)
    low = [await _submit(pool, priority=0) for _ in range(2)]
    process = await _process(pool)

    assert await _claim(pool, process, 10) == [high, best_suspect, *low]
    for job_id in (other_suspect, low_suspect):
        assert (await PgJobStore(pool).job_get(job_id)).status is JobStatus.PENDING
    # Holding one now, the worker gets none of the others.
    assert await _claim(pool, process, 10) == []


async def test_a_claim_of_one_takes_the_better_of_an_ordinary_job_and_a_suspect(
    pool: asyncpg.Pool,
) -> None:
    process = await _process(pool)
    suspect = await _suspect(pool, priority=5)
    ordinary = await _submit(pool, priority=1)
    assert await _claim(pool, process, 1) == [suspect]
    later_suspect = await _suspect(pool, priority=5)
    assert await _claim(pool, process, 1) == [ordinary]  # holding a suspect: the ordinary job
    # An ordinary job beats the suspect; the suspect, locked on the way, is free again after.
    other = await _process(pool)
    better = await _submit(pool, priority=9)
    assert await _claim(pool, other, 1) == [better]
    assert await _claim(pool, other, 1) == [later_suspect]


async def test_one_suspect_per_claim_over_several_queues(pool: asyncpg.Pool) -> None:
    await PgQueueStore(pool).queue_create("other")
    first = await _suspect(pool, priority=3, queue="other")
    second = await _suspect(pool, priority=3)
    ordinary = await _submit(pool, priority=0, queue="other")
    process = await _process(pool, ["default", "other"])
    assert await _claim(pool, process, 10, ["default", "other"]) == [first, ordinary]
    assert (await PgJobStore(pool).job_get(second)).status is JobStatus.PENDING


async def test_a_suspect_that_is_not_due_or_a_worker_that_is_not_online_gets_none(
    pool: asyncpg.Pool,
) -> None:
    waiting = await _suspect(pool, priority=9)
    await pool.execute(
        "UPDATE jobs SET not_before = now() + interval '1 hour' WHERE job_id = $1", waiting
    )
    due, later = await _suspect(pool), await _suspect(pool)
    superseded = await _process(pool)
    await _process(pool, worker_id=superseded[0])  # a new process registered since
    assert await _claim(pool, superseded, 5) == []
    process = await _process(pool)
    assert await _claim(pool, process, 5) == [due]
    assert (await PgJobStore(pool).job_get(later)).status is JobStatus.PENDING


async def test_two_workers_each_get_one_of_two_suspects(pool: asyncpg.Pool) -> None:
    suspects = [await _suspect(pool) for _ in range(2)]
    first, second = await _process(pool), await _process(pool)
    assert await _claim(pool, first, 5) == suspects[:1]
    assert await _claim(pool, second, 5) == suspects[1:]


async def test_two_workers_claiming_at_once_each_get_one_of_two_suspects(
    pool: asyncpg.Pool,
) -> None:
    """The suspect a claim in flight has locked is skipped, not waited for: the other worker
    takes the next one."""
    suspects = [await _suspect(pool) for _ in range(2)]
    first, second = await _process(pool), await _process(pool)
    async with pool.acquire() as claiming:
        transaction = claiming.transaction()
        await transaction.start()
        rows = await claiming.fetch(query("jobs_claim"), first[0], ["default"], 5, first[1], 0)
        assert [r["job_id"] for r in rows] == suspects[:1]
        assert await asyncio.wait_for(_claim(pool, second, 5), timeout=10) == suspects[1:]
        await transaction.commit()


# --- the reasoning, played out -----------------------------------------------------------------

WORKERS = 2
CONCURRENCY = 4
BYSTANDERS = 6
ROUNDS = 30


async def _lose(pool: asyncpg.Pool, worker_id: uuid.UUID) -> None:
    """The worker's process dies with everything it holds: the heartbeat monitor marks it lost
    and interrupts its claims (WORKER_LOST), as HeartbeatMonitor.run_once does."""
    await pool.execute(
        "UPDATE workers SET last_heartbeat = now() - interval '1 hour' WHERE worker_id = $1",
        worker_id,
    )
    assert await PgMaintenanceStore(pool).workers_mark_lost(30.0) == [worker_id]
    jobs = PgJobStore(pool)
    await jobs.jobs_interrupt(await jobs.jobs_held_by_worker(worker_id), Reason.WORKER_LOST, "gone")


@pytest.mark.parametrize("poison_at", [0, BYSTANDERS // 2, BYSTANDERS], ids=lambda i: f"at-{i}")
async def test_a_poison_job_is_dead_lettered_alone_and_its_bystanders_survive(
    pool: asyncpg.Pool, poison_at: int
) -> None:
    """Rounds of: every worker fills its free slots; a worker that got the poison job dies with
    everything it holds and starts again under its id; the others finish their jobs. With the
    default max_interruptions (3), the poison job must end DEAD_LETTERED (POISON) and every
    bystander with at most 2 interruptions, none of them POISON. Without the rule, the jobs
    that shared the poison job's worker were re-claimed with it and died with it."""
    jobs = PgJobStore(pool)
    ids = [await _submit(pool) for _ in range(BYSTANDERS + 1)]  # in claim order
    poison = ids[poison_at]
    processes = [await _process(pool) for _ in range(WORKERS)]
    held: dict[uuid.UUID, list[Assignment]] = {p[0]: [] for p in processes}
    for round_ in range(ROUNDS):
        if (await jobs.job_get(poison)).status is JobStatus.DEAD_LETTERED:
            break
        order = processes if round_ % 2 == 0 else processes[::-1]  # who claims first varies
        for worker_id, incarnation in order:
            free = CONCURRENCY - len(held[worker_id])
            held[worker_id] += await jobs.jobs_claim(
                worker_id, ["default"], free, incarnation=incarnation
            )
            await jobs.jobs_start([a.ref for a in held[worker_id]])
        for index, (worker_id, _) in enumerate(processes):
            if any(a.job.job_id == poison for a in held[worker_id]):
                await _lose(pool, worker_id)
                processes[index] = await _process(pool, worker_id=worker_id)
            else:
                finished = [
                    Success(a.job.job_id, a.job.attempt, worker_id, b"null", claim_id=a.claim_id)
                    for a in held[worker_id]
                ]
                await jobs.jobs_complete(finished)
            held[worker_id] = []
    else:
        pytest.fail(f"the poison job was not dead-lettered in {ROUNDS} rounds")

    rows = await pool.fetch("SELECT job_id, status::text, interruptions FROM jobs")
    state = {r["job_id"]: (r["status"], r["interruptions"]) for r in rows}
    assert state.pop(poison) == ("DEAD_LETTERED", 4)
    assert all(interruptions <= SUSPECT for _, interruptions in state.values()), state
    poisoned = await pool.fetch("SELECT DISTINCT job_id FROM job_events WHERE reason = 'POISON'")
    assert [r["job_id"] for r in poisoned] == [poison]
