"""Interruptions, poison jobs and worker incarnations in the stores, against a real database.

- An interruption (WORKER_LOST, WORKER_RESTARTED, ASSIGNMENT_TIMEOUT) uses no retry: the job is
  PENDING again at once with one more interruption, or, once it was interrupted more often than
  its queue's max_interruptions, dead-lettered as POISON (from RUNNING through FAILED, from
  ASSIGNED directly). Ordinary failures keep their max_retries whatever the interruptions.
- A registration without an incarnation is a new process: it gets a new incarnation, and what
  the worker id held is released (WORKER_RESTARTED) in the same transaction. A registration
  presenting the current incarnation keeps everything; another incarnation is refused and
  changes nothing. Claims are made only for the current incarnation.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from jobq.domain.errors import WorkerNotFound, WorkerSuperseded
from jobq.domain.ids import uuid7
from jobq.domain.records import Assignment, Failure, NewJob
from jobq.domain.retry import RetryPolicy
from jobq.domain.states import JobStatus, Reason, WorkerStatus
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.workers import RESTART_DETAIL, PgWorkerStore
from jobq.storage.queries import query

NO_BACKOFF = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, random_source=lambda: 0.0)


async def _submit(pool: asyncpg.Pool, queue: str = "default", n: int = 1) -> list[uuid.UUID]:
    new = [NewJob(uuid7(), queue, b"{}") for _ in range(n)]
    await PgJobStore(pool).jobs_insert(new)
    return [j.job_id for j in new]


async def _process(
    pool: asyncpg.Pool, worker_id: uuid.UUID | None = None, queue: str = "default"
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new worker process registered under `worker_id` (a new id when None): its id and
    incarnation."""
    worker_id = worker_id or uuid.uuid4()
    registration = await PgWorkerStore(pool).worker_register(worker_id, "h", 8, [queue])
    return worker_id, registration.incarnation


async def _claim(
    pool: asyncpg.Pool, process: tuple[uuid.UUID, uuid.UUID], n: int = 1, queue: str = "default"
) -> list[Assignment]:
    worker_id, incarnation = process
    return await PgJobStore(pool).jobs_claim(worker_id, [queue], n, incarnation=incarnation)


async def _history(pool: asyncpg.Pool, job_id: uuid.UUID) -> list[tuple[Any, ...]]:
    return [
        (e.from_status, e.to_status, e.reason)
        for e in await PgJobEventStore(pool).job_events_list(job_id)
    ]


# --- interruptions and POISON, one kind at a time ----------------------------------------------


async def _interrupt_by_monitor(pool: asyncpg.Pool, assignment: Assignment) -> None:
    await PgJobStore(pool).jobs_interrupt([assignment.ref], Reason.WORKER_LOST, "no heartbeat")


async def _interrupt_by_restart(pool: asyncpg.Pool, assignment: Assignment) -> None:
    assert assignment.job.worker_id is not None
    await _process(pool, assignment.job.worker_id, assignment.job.queue_name)


async def _interrupt_by_timeout(pool: asyncpg.Pool, assignment: Assignment) -> None:
    later = await pool.fetchval("SELECT now() + interval '1 hour'")
    moved = await PgMaintenanceStore(pool).jobs_expire_assignments(30.0, later, 100)
    assert {t.job_id for t in moved} == {assignment.job.job_id}


INTERRUPTIONS = {
    Reason.WORKER_LOST: _interrupt_by_monitor,
    Reason.WORKER_RESTARTED: _interrupt_by_restart,
    Reason.ASSIGNMENT_TIMEOUT: _interrupt_by_timeout,
}


@pytest.mark.parametrize(
    ("reason", "started"),
    [
        (Reason.WORKER_LOST, True),
        (Reason.WORKER_LOST, False),
        (Reason.WORKER_RESTARTED, True),
        (Reason.WORKER_RESTARTED, False),
        (Reason.ASSIGNMENT_TIMEOUT, False),  # it takes only jobs that never started
    ],
    ids=lambda v: v.value if isinstance(v, Reason) else ("running" if v else "assigned"),
)
async def test_interruptions_use_no_retry_and_the_one_too_many_dead_letters_as_poison(
    pool: asyncpg.Pool, reason: Reason, started: bool
) -> None:
    jobs = PgJobStore(pool)
    await PgQueueStore(pool).queue_create("q", max_retries=4, max_interruptions=2)
    [job_id] = await _submit(pool, "q")
    for interruption in (1, 2, 3):
        process = await _process(pool, queue="q")
        [assignment] = await _claim(pool, process, queue="q")
        if started:
            await jobs.jobs_start([assignment.ref])
        await INTERRUPTIONS[reason](pool, assignment)
        job = await jobs.job_get(job_id)
        assert (job.retry_count, job.interruptions) == (0, interruption)
        if interruption <= 2:  # within the queue's max_interruptions: runnable again at once
            assert (job.status, job.worker_id, job.not_before) == (JobStatus.PENDING, None, None)
            last = (await PgJobEventStore(pool).job_events_list(job_id))[-1]
            assert (last.to_status, last.reason) == (JobStatus.PENDING, reason)
            assert last.detail is not None
            assert last.detail.endswith(f"; interruption {interruption} of 2 allowed")
    assert job.status is JobStatus.DEAD_LETTERED
    assert job.completed_at is not None
    assert job.worker_id == assignment.job.worker_id  # the last holder, for the record
    assert job.error_message == (
        f"poison: interrupted 3 times, more than the queue's max_interruptions of 2 "
        f"(last: {reason.value})"
    )
    history = await PgJobEventStore(pool).job_events_list(job_id)
    if started:  # through FAILED, as failures are
        assert [(e.from_status, e.to_status, e.reason) for e in history[-2:]] == [
            (JobStatus.RUNNING, JobStatus.FAILED, reason),
            (JobStatus.FAILED, JobStatus.DEAD_LETTERED, Reason.POISON),
        ]
        assert history[-1].detail == (
            "interrupted 3 times, more than the queue's max_interruptions of 2"
        )
    else:  # it never started: dead-lettered directly
        [last] = history[-1:]
        assert (last.from_status, last.to_status, last.reason) == (
            JobStatus.ASSIGNED,
            JobStatus.DEAD_LETTERED,
            Reason.POISON,
        )
        assert last.detail is not None
        assert f"({reason.value}); interruption 3, more than the 2 allowed" in last.detail
    assert [e.reason for e in history].count(reason) == (3 if started else 2)


async def test_a_queue_with_max_interruptions_zero_dead_letters_at_the_first(
    pool: asyncpg.Pool,
) -> None:
    await PgQueueStore(pool).queue_create("strict", max_interruptions=0)
    [job_id] = await _submit(pool, "strict")
    [assignment] = await _claim(pool, await _process(pool, queue="strict"), queue="strict")
    [transition] = await PgJobStore(pool).jobs_interrupt(
        [assignment.ref], Reason.WORKER_LOST, "gone"
    )
    assert (transition.to_status, transition.reason) == (JobStatus.DEAD_LETTERED, Reason.POISON)
    assert (await PgJobStore(pool).job_get(job_id)).interruptions == 1


async def test_the_limit_is_the_queue_s_and_the_count_the_job_s(pool: asyncpg.Pool) -> None:
    queues, jobs = PgQueueStore(pool), PgJobStore(pool)
    await queues.queue_create("tolerant", max_interruptions=5)
    [tolerant] = await _submit(pool, "tolerant")
    [default] = await _submit(pool)  # the default queue: 3
    for _ in range(4):
        for queue in ("tolerant", "default"):
            [a] = await _claim(pool, await _process(pool, queue=queue), queue=queue)
            await jobs.jobs_interrupt([a.ref], Reason.WORKER_LOST, "gone")
    assert (await jobs.job_get(tolerant)).status is JobStatus.PENDING
    assert (await jobs.job_get(default)).status is JobStatus.DEAD_LETTERED
    stats = await queues.queue_stats("tolerant")
    assert (stats.max_interruptions, stats.total_interruptions) == (5, 4)
    assert (await queues.queue_get("default")).max_interruptions == 3


async def test_ordinary_failures_keep_every_retry_whatever_the_interruptions(
    pool: asyncpg.Pool,
) -> None:
    """A job interrupted up to its limit still fails and retries max_retries times, then
    RETRIES_EXHAUSTED; failures never count as interruptions. And the count survives the
    retries: one more interruption is then POISON."""
    jobs = PgJobStore(pool)
    await PgQueueStore(pool).queue_create("q", max_retries=2, max_interruptions=1)
    [job_id] = await _submit(pool, "q")
    [a] = await _claim(pool, await _process(pool, queue="q"), queue="q")
    await jobs.jobs_interrupt([a.ref], Reason.WORKER_LOST, "gone")  # at its limit now
    for retry in (1, 2, 3):
        [a] = await _claim(pool, await _process(pool, queue="q"), queue="q")
        await jobs.jobs_start([a.ref])
        failure = Failure(a.job.job_id, a.job.attempt, a.ref.worker_id, "boom", claim_id=a.claim_id)
        await jobs.jobs_fail([failure], NO_BACKOFF)
        job = await jobs.job_get(job_id)
        assert job.interruptions == 1
        if retry <= 2:
            assert (job.status, job.retry_count) == (JobStatus.PENDING, retry)
    assert (job.status, job.retry_count) == (JobStatus.DEAD_LETTERED, 2)
    assert (await _history(pool, job_id))[-1][2] is Reason.RETRIES_EXHAUSTED
    # A manual retry gives both budgets back.
    retried = (await jobs.job_retry_manual(job_id)).job
    assert (retried.retry_count, retried.interruptions) == (0, 0)
    [a] = await _claim(pool, await _process(pool, queue="q"), queue="q")
    await jobs.jobs_interrupt([a.ref], Reason.WORKER_LOST, "gone")
    [a] = await _claim(pool, await _process(pool, queue="q"), queue="q")
    [*_, poison] = await jobs.jobs_interrupt([a.ref], Reason.WORKER_LOST, "gone")
    assert (poison.to_status, poison.reason) == (JobStatus.DEAD_LETTERED, Reason.POISON)


async def test_an_interruption_is_not_applied_to_a_job_in_another_status(
    pool: asyncpg.Pool,
) -> None:
    """The reaper's candidates are ASSIGNED: one acknowledged meanwhile is left alone."""
    jobs = PgJobStore(pool)
    await _submit(pool)
    [a] = await _claim(pool, await _process(pool))
    await jobs.jobs_start([a.ref])
    later = await pool.fetchval("SELECT now() + interval '1 hour'")
    assert await PgMaintenanceStore(pool).jobs_expire_assignments(30.0, later, 10) == []
    assert (await jobs.job_get(a.job.job_id)).status is JobStatus.RUNNING


async def test_only_interruptions_may_be_recorded_as_interruptions(pool: asyncpg.Pool) -> None:
    await _submit(pool)
    [a] = await _claim(pool, await _process(pool))
    with pytest.raises(ValueError, match="not an interruption"):
        await PgJobStore(pool).jobs_interrupt([a.ref], Reason.WORKER_SHUTDOWN, "bye")


# --- incarnations ------------------------------------------------------------------------------


async def test_a_new_process_under_the_id_releases_what_the_previous_one_held(
    pool: asyncpg.Pool,
) -> None:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    ids = await _submit(pool, n=3)
    first = await _process(pool)
    assigned, running = await _claim(pool, first, 2)
    await jobs.jobs_start([running.ref])
    bystander = await _process(pool)
    [elsewhere] = await _claim(pool, bystander)

    again = await workers.worker_register(first[0], "h2", 8, ["default"])

    assert again.restarted
    assert again.incarnation != first[1]
    assert again.worker.incarnation == again.incarnation
    restarted = Reason.WORKER_RESTARTED
    assert sorted((t.job_id, t.from_status, t.to_status, t.reason) for t in again.released) == (
        sorted(
            [
                (assigned.job.job_id, JobStatus.ASSIGNED, JobStatus.PENDING, restarted),
                (running.job.job_id, JobStatus.RUNNING, JobStatus.PENDING, restarted),
            ]
        )
    )
    for job_id in (assigned.job.job_id, running.job.job_id):
        job = await jobs.job_get(job_id)
        assert (job.status, job.retry_count, job.interruptions) == (JobStatus.PENDING, 0, 1)
        last = (await PgJobEventStore(pool).job_events_list(job_id))[-1]
        assert (last.reason, last.worker_id) == (Reason.WORKER_RESTARTED, first[0])
        assert last.detail == f"{RESTART_DETAIL}; interruption 1 of 3 allowed"
    assert (await jobs.job_get(elsewhere.job.job_id)).status is JobStatus.ASSIGNED
    assert await jobs.jobs_held_by_worker(first[0]) == []
    assert set(ids) == {assigned.job.job_id, running.job.job_id, elsewhere.job.job_id}
    # The previous process's claims are fenced out; the new process gets the jobs again.
    [late] = (await jobs.jobs_start([assigned.ref])).results
    assert not late.accepted
    claimed = await _claim(pool, (first[0], again.incarnation), 5)
    assert {a.job.job_id for a in claimed} == {assigned.job.job_id, running.job.job_id}


async def test_the_same_process_registering_again_keeps_its_jobs(pool: asyncpg.Pool) -> None:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    await _submit(pool, n=2)
    process = await _process(pool)
    held = await _claim(pool, process, 2)
    await workers.worker_set_status(process[0], WorkerStatus.OFFLINE)  # e.g. lost, then back

    again = await workers.worker_register(process[0], "h", 8, ["default"], process[1])

    assert (again.restarted, again.released, again.incarnation) == (False, [], process[1])
    assert again.worker.status is WorkerStatus.ONLINE
    assert sorted(r.job_id for r in await jobs.jobs_held_by_worker(process[0])) == sorted(
        a.job.job_id for a in held
    )


async def test_a_superseded_process_is_refused_and_changes_nothing(pool: asyncpg.Pool) -> None:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    await _submit(pool, n=2)
    old = await _process(pool)
    new = await _process(pool, old[0])
    [held] = await _claim(pool, new)
    state = await pool.fetch("SELECT * FROM workers")
    history = await pool.fetchval("SELECT count(*) FROM job_events")

    with pytest.raises(WorkerSuperseded, match="superseded by a newer process of worker"):
        await workers.worker_register(old[0], "h", 8, ["default"], old[1])
    with pytest.raises(WorkerSuperseded):
        await workers.worker_heartbeat(old[0], old[1], 1)
    with pytest.raises(WorkerSuperseded):
        await workers.worker_deregister(old[0], old[1])
    assert await _claim(pool, old) == []  # a stream of the old process gets nothing

    assert await pool.fetch("SELECT * FROM workers") == state
    assert await pool.fetchval("SELECT count(*) FROM job_events") == history
    assert (await jobs.job_get(held.job.job_id)).status is JobStatus.ASSIGNED
    # The current process is unaffected.
    assert (await workers.worker_heartbeat(new[0], new[1], 1)).active_job_count == 1
    with pytest.raises(WorkerNotFound):
        await workers.worker_heartbeat(uuid.uuid4(), new[1], 0)


async def test_deregister_releases_only_under_the_current_incarnation(pool: asyncpg.Pool) -> None:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    await _submit(pool)
    process = await _process(pool)
    [held] = await _claim(pool, process)
    worker, released = await workers.worker_deregister(process[0], process[1])
    assert worker.status is WorkerStatus.OFFLINE
    assert [(t.job_id, t.reason) for t in released] == [(held.job.job_id, Reason.WORKER_SHUTDOWN)]
    job = await jobs.job_get(held.job.job_id)
    assert (job.status, job.interruptions, job.retry_count) == (JobStatus.PENDING, 0, 0)
    with pytest.raises(WorkerNotFound):
        await workers.worker_deregister(uuid.uuid4(), process[1])


async def test_a_registration_waits_for_a_claim_in_flight_and_releases_what_it_took(
    pool: asyncpg.Pool,
) -> None:
    """The claim locks the worker row FOR KEY SHARE; a new process's registration, which locks
    it FOR UPDATE, waits for the claim to commit and then releases the jobs it claimed: the
    previous process can never keep a claim the new one does not know of."""
    [job_id] = await _submit(pool)
    old = await _process(pool)
    async with pool.acquire() as claiming:
        transaction = claiming.transaction()
        await transaction.start()
        [row] = await claiming.fetch(query("jobs_claim"), old[0], ["default"], 1, old[1], 0)
        assert row["job_id"] == job_id
        registering = asyncio.create_task(_process(pool, old[0]))
        await asyncio.sleep(0.3)
        assert not registering.done()  # blocked behind the claim's row lock
        await transaction.commit()
    new = await asyncio.wait_for(registering, timeout=10)
    job = await PgJobStore(pool).job_get(job_id)
    assert (job.status, job.interruptions) == (JobStatus.PENDING, 1)
    assert (await _history(pool, job_id))[-1] == (
        JobStatus.ASSIGNED,
        JobStatus.PENDING,
        Reason.WORKER_RESTARTED,
    )
    assert [a.job.job_id for a in await _claim(pool, new)] == [job_id]


async def test_a_claim_waiting_behind_a_registration_takes_nothing_for_the_old_process(
    pool: asyncpg.Pool,
) -> None:
    [job_id] = await _submit(pool)
    old = await _process(pool)
    async with pool.acquire() as registering:
        transaction = registering.transaction()
        await transaction.start()
        await registering.fetchrow(query("worker_lock"), old[0])
        await registering.execute(
            "UPDATE workers SET incarnation = gen_random_uuid() WHERE worker_id = $1", old[0]
        )
        claiming = asyncio.create_task(_claim(pool, old))
        await asyncio.sleep(0.3)
        assert not claiming.done()  # blocked behind the registration's row lock
        await transaction.commit()
    assert await asyncio.wait_for(claiming, timeout=10) == []
    assert (await PgJobStore(pool).job_get(job_id)).status is JobStatus.PENDING


async def test_a_worker_lost_and_restarted_is_interrupted_once(pool: asyncpg.Pool) -> None:
    """The monitor and a restart race for the same claim: the fencing applies only one."""
    jobs, maintenance = PgJobStore(pool), PgMaintenanceStore(pool)
    [job_id] = await _submit(pool)
    process = await _process(pool)
    [a] = await _claim(pool, process)
    later = await pool.fetchval("SELECT now()") + timedelta(hours=1)
    assert await maintenance.workers_mark_lost(30.0, later, 10) == [process[0]]
    await _process(pool, process[0])  # restarted before the monitor rescued the job
    assert await jobs.jobs_interrupt([a.ref], Reason.WORKER_LOST, "gone") == []
    job = await jobs.job_get(job_id)
    assert (job.status, job.interruptions) == (JobStatus.PENDING, 1)
