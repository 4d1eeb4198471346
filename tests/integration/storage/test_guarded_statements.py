"""The state-changing statements carry their own guards: run on a row that no longer matches
(another claim, another status), they change nothing and return nothing.

jobs_apply_failure used to update by job id alone (its caller's lock statement did the
checking), and worker_set_status unconditionally (DrainWorker read the status first). Each test
below runs the statement once with one part of the guard wrong, which leaves the row and the
history untouched, and then with the right values, which applies: the row was there to be
changed, and the statements as they were, keyed on the id only, would have changed it the first
time already.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import asyncpg
import pytest

from jobq.domain.errors import FailedPrecondition, WorkerNotFound
from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptRef, NewJob
from jobq.domain.shards import shard_of
from jobq.domain.states import JobStatus, WorkerStatus
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.workers import PgWorkerStore
from jobq.storage.queries import query


async def _snapshot(pool: asyncpg.Pool, table: str) -> tuple[list[dict[str, object]], int]:
    rows = await pool.fetch(f"SELECT * FROM {table} ORDER BY 1")
    events = await pool.fetchval("SELECT count(*) FROM job_events")
    return [dict(r) for r in rows], events


# --- jobs_apply_failure ----------------------------------------------------------------------


@dataclass(frozen=True)
class FailureRow:
    """One row of jobs_apply_failure's input: the claim, the status the decision was made
    for, and the decision (back to PENDING with a backoff)."""

    ref: AttemptRef
    from_status: JobStatus
    not_before: datetime

    def args(self) -> list[object]:
        ref = self.ref
        return [
            [ref.job_id],
            [ref.attempt],
            [ref.worker_id],
            [ref.claim_id],
            [self.from_status.value],
            ["boom"],
            [1],
            [JobStatus.PENDING.value],
            ["RETRY"],
            [self.not_before],
            "FAILED",
            shard_of(ref.job_id),
        ]


async def _running_attempt(pool: asyncpg.Pool) -> AttemptRef:
    jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
    worker_id = uuid.uuid4()
    incarnation = (await workers.worker_register(worker_id, "h", 4, ["default"])).incarnation
    await jobs.jobs_insert([NewJob(uuid7(), "default", b"")])
    [claimed] = await jobs.jobs_claim(worker_id, ["default"], 1, incarnation=incarnation)
    await jobs.jobs_start([claimed.ref])
    return claimed.ref


STALE: dict[str, Callable[[FailureRow], FailureRow]] = {
    "an-earlier-attempt": lambda row: replace(row, ref=replace(row.ref, attempt=0)),
    "another-worker": lambda row: replace(row, ref=replace(row.ref, worker_id=uuid.uuid4())),
    "another-claim": lambda row: replace(row, ref=replace(row.ref, claim_id=uuid.uuid4())),
    "no-claim-id": lambda row: replace(row, ref=replace(row.ref, claim_id=None)),
    "another-status": lambda row: replace(row, from_status=JobStatus.ASSIGNED),
}


@pytest.mark.parametrize("stale", STALE.values(), ids=STALE.keys())
async def test_apply_failure_changes_nothing_for_a_row_outside_its_guard(
    pool: asyncpg.Pool, stale: Callable[[FailureRow], FailureRow]
) -> None:
    ref = await _running_attempt(pool)
    now: datetime = await pool.fetchval(query("db_now"))
    current = FailureRow(ref, JobStatus.RUNNING, now + timedelta(seconds=5))
    before = await _snapshot(pool, "jobs")

    assert await pool.fetch(query("jobs_apply_failure"), *stale(current).args()) == []
    assert await _snapshot(pool, "jobs") == before

    [applied] = await pool.fetch(query("jobs_apply_failure"), *current.args())
    assert (applied["job_id"], applied["from_status"], applied["to_status"]) == (
        ref.job_id,
        JobStatus.RUNNING.value,
        JobStatus.PENDING.value,
    )
    job = await PgJobStore(pool).job_get(ref.job_id)
    assert (job.status, job.retry_count, job.error_message) == (JobStatus.PENDING, 1, "boom")
    assert (await _snapshot(pool, "jobs"))[1] == before[1] + 2  # FAILED, then PENDING


# --- worker_set_status -----------------------------------------------------------------------

LIVE = (WorkerStatus.ONLINE, WorkerStatus.DRAINING)
"""What DrainWorker allows to become DRAINING."""


async def _worker(pool: asyncpg.Pool) -> uuid.UUID:
    worker_id = uuid.uuid4()
    await PgWorkerStore(pool).worker_register(worker_id, "h", 1, ["default"])
    return worker_id


async def test_drain_guard_leaves_a_worker_that_went_offline_alone(pool: asyncpg.Pool) -> None:
    """DrainWorker's old race: it read ONLINE, the heartbeat monitor then declared the worker
    lost (OFFLINE), and the unconditional write brought it back as DRAINING."""
    workers = PgWorkerStore(pool)
    worker_id = await _worker(pool)
    assert (await workers.worker_get(worker_id)).status is WorkerStatus.ONLINE  # the read
    later = await pool.fetchval("SELECT now() + interval '1 hour'")
    assert await PgMaintenanceStore(pool).workers_mark_lost(10.0, later, 10) == [worker_id]
    before = await _snapshot(pool, "workers")

    draining = [WorkerStatus.DRAINING.value]
    live = [s.value for s in LIVE]
    args = (query("worker_set_status"), worker_id, *draining)
    assert await pool.fetchrow(*args, live) is None
    with pytest.raises(FailedPrecondition, match=f"worker {worker_id} is OFFLINE"):
        await workers.worker_set_status(worker_id, WorkerStatus.DRAINING, LIVE)
    assert await _snapshot(pool, "workers") == before

    # Allowed from OFFLINE too, the same statement applies: the row was there to change.
    row = await pool.fetchrow(*args, [*live, WorkerStatus.OFFLINE.value])
    assert row is not None
    assert (row["status"], row["previous_status"]) == ("DRAINING", "OFFLINE")


async def test_drain_reports_the_status_it_found(pool: asyncpg.Pool) -> None:
    workers = PgWorkerStore(pool)
    worker_id = await _worker(pool)
    worker, was = await workers.worker_set_status(worker_id, WorkerStatus.DRAINING, LIVE)
    assert (worker.status, was) == (WorkerStatus.DRAINING, WorkerStatus.ONLINE)
    worker, was = await workers.worker_set_status(worker_id, WorkerStatus.DRAINING, LIVE)
    assert (worker.status, was) == (WorkerStatus.DRAINING, WorkerStatus.DRAINING)
    with pytest.raises(WorkerNotFound):
        await workers.worker_set_status(uuid.uuid4(), WorkerStatus.DRAINING, LIVE)
