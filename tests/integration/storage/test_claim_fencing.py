"""Every fenced statement requires the claim id too, not only the attempt and the worker.

A claim commits with synchronous_commit = off: one lost in a database crash or failover is made
again with the same attempt number, for the same worker id even. Only the claim id then tells the
earlier run's reports from the current one's. Each statement is checked with a wrong claim id
(refused, nothing changes), with none (the same), and with the right one (applied).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from jobq.domain.ids import uuid7
from jobq.domain.records import Assignment, AttemptRef, Failure, NewJob, ReportOutcome, Success
from jobq.domain.retry import RetryPolicy
from jobq.domain.states import JobStatus, Reason
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore

POLICY = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, random_source=lambda: 0.0)


async def _held(pool: asyncpg.Pool, *, start: bool) -> Assignment:
    """One job claimed by a fresh worker (RUNNING when `start`)."""
    jobs = PgJobStore(pool)
    await jobs.jobs_insert([NewJob(uuid7(), "default", b"{}")])
    worker_id = uuid.uuid4()
    registration = await PgWorkerStore(pool).worker_register(worker_id, "h", 4, ["default"])
    [assignment] = await jobs.jobs_claim(
        worker_id, ["default"], 1, incarnation=registration.incarnation
    )
    assert assignment.claim_id is not None
    if start:
        assert (await jobs.jobs_start([assignment.ref])).results[0].accepted
    return assignment


async def _state(pool: asyncpg.Pool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    jobs = await pool.fetch("SELECT * FROM jobs ORDER BY job_id")
    events = await pool.fetch("SELECT * FROM job_events ORDER BY id")
    return [dict(r) for r in jobs], [dict(r) for r in events]


def _with_claim(ref: AttemptRef, claim_id: uuid.UUID | None) -> AttemptRef:
    return AttemptRef(ref.job_id, ref.attempt, ref.worker_id, claim_id)


Report = Callable[[PgJobStore, AttemptRef], Awaitable[ReportOutcome]]


async def _start(jobs: PgJobStore, ref: AttemptRef) -> ReportOutcome:
    return await jobs.jobs_start([ref])


async def _complete(jobs: PgJobStore, ref: AttemptRef) -> ReportOutcome:
    success = Success(ref.job_id, ref.attempt, ref.worker_id, b'"ok"', claim_id=ref.claim_id)
    return await jobs.jobs_complete([success])


async def _fail(jobs: PgJobStore, ref: AttemptRef) -> ReportOutcome:
    failure = Failure(ref.job_id, ref.attempt, ref.worker_id, "boom", claim_id=ref.claim_id)
    return await jobs.jobs_fail([failure], POLICY)


async def _refuse(jobs: PgJobStore, ref: AttemptRef) -> ReportOutcome:
    refusal = Failure(
        ref.job_id, ref.attempt, ref.worker_id, "never", refused=True, claim_id=ref.claim_id
    )
    return await jobs.jobs_fail([refusal], POLICY)


async def _release(jobs: PgJobStore, ref: AttemptRef) -> ReportOutcome:
    return await jobs.jobs_release([ref], Reason.WORKER_SHUTDOWN)


async def _interrupt(jobs: PgJobStore, ref: AttemptRef) -> ReportOutcome:
    transitions = await jobs.jobs_interrupt([ref], Reason.WORKER_LOST, "no heartbeat")
    return ReportOutcome([], transitions)


CASES: list[tuple[str, Report, bool, JobStatus]] = [
    # (statement, report, on a RUNNING job?, the job's status once the right claim reports)
    ("start", _start, False, JobStatus.RUNNING),
    ("complete", _complete, True, JobStatus.DONE),
    ("complete-carrying-the-start", _complete, False, JobStatus.DONE),
    ("fail", _fail, True, JobStatus.PENDING),
    ("refuse", _refuse, False, JobStatus.DEAD_LETTERED),
    ("release", _release, True, JobStatus.PENDING),
    ("interrupt", _interrupt, True, JobStatus.PENDING),
]


@pytest.mark.parametrize(
    ("report", "running", "applied_status"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_a_wrong_or_missing_claim_id_is_refused_and_the_right_one_applies(
    pool: asyncpg.Pool, report: Report, running: bool, applied_status: JobStatus
) -> None:
    jobs = PgJobStore(pool)
    assignment = await _held(pool, start=running)
    before = await _state(pool)
    for claim_id in (uuid.uuid4(), None):
        outcome = await report(jobs, _with_claim(assignment.ref, claim_id))
        assert [r.accepted for r in outcome.results] in ([False], [])
        assert outcome.transitions == []
        assert await _state(pool) == before  # the job and its history: untouched
    outcome = await report(jobs, assignment.ref)
    assert [r.accepted for r in outcome.results] in ([True], [])
    assert outcome.transitions
    assert (await jobs.job_get(assignment.job.job_id)).status is applied_status
    events = await pool.fetch(
        "SELECT claim_id FROM job_events WHERE job_id = $1 AND id > $2",
        assignment.job.job_id,
        before[1][-1]["id"],
    )
    assert {e["claim_id"] for e in events} == {assignment.claim_id}  # recorded with its claim


async def _lose_the_claim(pool: asyncpg.Pool, assignment: Assignment) -> None:
    """What a database crash after an unflushed claim leaves: the job as it was before the
    claim (PENDING, the previous attempt number), its ASSIGNED event gone too."""
    await pool.execute(
        "DELETE FROM job_events WHERE job_id = $1 AND reason <> 'SUBMITTED'", assignment.job.job_id
    )
    await pool.execute(
        "UPDATE jobs SET status = 'PENDING', attempt = attempt - 1, worker_id = NULL,"
        " claim_id = NULL, assigned_at = NULL, started_at = NULL WHERE job_id = $1",
        assignment.job.job_id,
    )


async def test_a_lost_claim_made_again_with_the_same_attempt_fences_out_the_earlier_run(
    pool: asyncpg.Pool,
) -> None:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    lost = await _held(pool, start=False)
    await _lose_the_claim(pool, lost)
    worker_id = lost.ref.worker_id
    incarnation = (await workers.worker_get(worker_id)).incarnation
    assert incarnation is not None
    # The same worker (its process never noticed the crash) is given the job again.
    [again] = await jobs.jobs_claim(worker_id, ["default"], 1, incarnation=incarnation)
    assert (again.job.job_id, again.job.attempt, again.ref.worker_id) == (
        lost.job.job_id,
        lost.job.attempt,
        worker_id,
    )
    assert again.claim_id != lost.claim_id
    await jobs.jobs_start([again.ref])
    before = await _state(pool)
    # The earlier run's start and its result are refused, not taken as current.
    [start] = (await jobs.jobs_start([lost.ref])).results
    [result] = (await _complete(jobs, lost.ref)).results
    assert (start.accepted, result.accepted) == (False, False)
    assert await _state(pool) == before
    [done] = (await _complete(jobs, again.ref)).results
    assert done.accepted
    # Nor does a repeat of the earlier run's report pass as a duplicate of the current one's.
    [late] = (await _complete(jobs, lost.ref)).results
    assert (late.accepted, late.message) == (False, _stale(late.message))
    [duplicate] = (await _complete(jobs, again.ref)).results
    assert (duplicate.accepted, duplicate.message) == (True, "duplicate")


def _stale(message: str) -> str:
    assert message.startswith("attempt is no longer current")
    return message


@pytest.mark.parametrize(
    ("report", "duplicate_of"),
    [(_start, Reason.STARTED), (_fail, Reason.FAILED), (_release, Reason.WORKER_SHUTDOWN)],
    ids=["start", "fail", "release"],
)
async def test_the_duplicate_check_matches_the_claim_id(
    pool: asyncpg.Pool, report: Report, duplicate_of: Reason
) -> None:
    jobs = PgJobStore(pool)
    assignment = await _held(pool, start=report is not _start)
    [applied] = (await report(jobs, assignment.ref)).results
    assert applied.accepted
    [again] = (await report(jobs, assignment.ref)).results
    assert (again.accepted, again.message) == (True, "duplicate")
    [other] = (await report(jobs, _with_claim(assignment.ref, uuid.uuid4()))).results
    assert not other.accepted
    reasons = [
        r["reason"]
        for r in await pool.fetch(
            "SELECT reason FROM job_events WHERE job_id = $1", assignment.job.job_id
        )
    ]
    assert reasons.count(duplicate_of.value) == 1
