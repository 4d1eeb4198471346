"""A job's state and its job_events row are written together or not at all.

A trigger makes inserts into job_events fail; every state-changing store method must then leave
the job exactly as it was.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptRef, Failure, NewJob, Success
from jobq.domain.retry import RetryPolicy
from jobq.domain.states import Reason
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore

POLICY = RetryPolicy(random_source=lambda: 0.0)


async def _break_job_events(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """
        CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'job_events is read-only in this test'; END $$;
        CREATE TRIGGER refuse_event BEFORE INSERT ON job_events
            FOR EACH ROW EXECUTE FUNCTION refuse_event();
        """
    )


async def _snapshot(pool: asyncpg.Pool) -> tuple[list[dict[str, object]], int, object]:
    rows = await pool.fetch("SELECT * FROM jobs ORDER BY job_id")
    events = await pool.fetchval("SELECT count(*) FROM job_events")
    incarnations = await pool.fetch("SELECT worker_id, incarnation FROM workers ORDER BY 1")
    return [dict(r) for r in rows], events, [tuple(r) for r in incarnations]


def _token(ref: AttemptRef) -> tuple[uuid.UUID, int, uuid.UUID, uuid.UUID | None]:
    return ref.job_id, ref.attempt, ref.worker_id, ref.claim_id


async def test_insert_writes_nothing_when_its_events_fail(pool: asyncpg.Pool) -> None:
    await _break_job_events(pool)
    with pytest.raises(asyncpg.RaiseError):
        await PgJobStore(pool).jobs_insert([NewJob(uuid7(), "default", b"")])
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 0


async def test_every_transition_rolls_back_with_its_event(pool: asyncpg.Pool) -> None:
    jobs = PgJobStore(pool)
    workers = PgWorkerStore(pool)
    worker_id = uuid.uuid4()
    incarnation = (await workers.worker_register(worker_id, "h", 8, ["default"])).incarnation
    ids = [uuid7() for _ in range(6)]
    await jobs.jobs_insert([NewJob(i, "default", b"") for i in ids])
    # Bring jobs into the states each transition starts from.
    claimed = await jobs.jobs_claim(worker_id, ["default"], 4, incarnation=incarnation)
    refs = [a.ref for a in claimed]
    await jobs.jobs_start(refs[1:])
    pending = [i for i in ids if i not in {r.job_id for r in refs}]
    await jobs.job_cancel(pending[1])
    await _break_job_events(pool)
    before = await _snapshot(pool)

    attempts = [
        lambda: jobs.jobs_claim(worker_id, ["default"], 1, incarnation=incarnation),
        lambda: jobs.jobs_start(refs[:1]),
        lambda: jobs.jobs_complete([Success(*_token(refs[1])[:3], b"", claim_id=refs[1].claim_id)]),
        lambda: jobs.jobs_fail(
            [Failure(*_token(refs[2])[:3], "boom", claim_id=refs[2].claim_id)], POLICY
        ),
        lambda: jobs.jobs_release(refs[3:], Reason.WORKER_SHUTDOWN),
        lambda: jobs.jobs_interrupt(refs[3:], Reason.WORKER_LOST, "no heartbeat"),
        # A new process under the id: its incarnation is stored only with the release of what
        # the previous one held (WORKER_RESTARTED).
        lambda: workers.worker_register(worker_id, "h", 8, ["default"]),
        lambda: workers.worker_deregister(worker_id, incarnation),
        lambda: jobs.job_cancel(pending[0]),
        lambda: jobs.job_retry_manual(pending[1]),
    ]
    for attempt in attempts:
        with pytest.raises(asyncpg.RaiseError):
            await attempt()
        assert await _snapshot(pool) == before
