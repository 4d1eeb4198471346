"""A job's W3C trace context (issue 20, V21) is stored by every way a job is written and comes
back with every claim, so the dispatch on any replica continues the submit's trace."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from jobq.domain.flow_limits import FlowChange
from jobq.domain.ids import uuid7
from jobq.domain.records import Assignment, NewJob
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.workers import PgWorkerStore

PAYLOAD = b'{"handler": "m:f"}'


def context(n: int, state: str = "") -> str:
    """A distinct valid trace context (as tracing.encode stores it)."""
    traceparent = f"00-{n:032x}-{n:016x}-01"
    return f"{traceparent}\n{state}" if state else traceparent


async def worker(pool: asyncpg.Pool) -> tuple[uuid.UUID, uuid.UUID]:
    registration = await PgWorkerStore(pool).worker_register(uuid.uuid4(), "h", 100, ["default"])
    return registration.worker.worker_id, registration.incarnation


def carried(assignments: list[Assignment]) -> dict[uuid.UUID, str | None]:
    return {a.job.job_id: a.trace_context for a in assignments}


async def test_every_insert_stores_the_context_and_the_claim_returns_it(
    pool: asyncpg.Pool,
) -> None:
    jobs = PgJobStore(pool)
    keyed = NewJob(uuid7(), "default", PAYLOAD, idempotency_key="k-1", trace_context=context(1))
    plain = NewJob(uuid7(), "default", PAYLOAD, trace_context=context(2, "vendor=a,b=c"))
    untraced = NewJob(uuid7(), "default", PAYLOAD)
    by_id = NewJob(uuid7(), "default", PAYLOAD, id_from_client=True, trace_context=context(3))
    await jobs.jobs_insert([keyed, plain, untraced])
    await jobs.jobs_insert([by_id])
    worker_id, incarnation = await worker(pool)
    claimed = await jobs.jobs_claim(worker_id, ["default"], 10, incarnation=incarnation)
    assert carried(claimed) == {
        keyed.job_id: context(1),
        plain.job_id: context(2, "vendor=a,b=c"),
        untraced.job_id: None,
        by_id.job_id: context(3),
    }


async def test_a_job_written_assigned_carries_its_context(pool: asyncpg.Pool) -> None:
    worker_id, incarnation = await worker(pool)
    job = NewJob(uuid7(), "default", PAYLOAD, trace_context=context(4))
    direct = await PgJobStore(pool).job_insert_assigned(job, worker_id, incarnation=incarnation)
    assert direct is not None
    assert direct.assignment is not None
    assert direct.assignment.trace_context == context(4)


async def test_a_limited_queues_claim_and_a_dependent_job_carry_their_contexts(
    pool: asyncpg.Pool,
) -> None:
    jobs = PgJobStore(pool)
    await PgQueueStore(pool).queue_set_flow("default", FlowChange(max_running=5))
    first = NewJob(uuid7(), "default", PAYLOAD, trace_context=context(5))
    await jobs.jobs_insert([first])
    dependent = NewJob(
        uuid7(), "default", PAYLOAD, depends_on=(first.job_id,), trace_context=context(6)
    )
    await jobs.jobs_insert([dependent])
    stored = await pool.fetchval(
        "SELECT trace_context FROM jobs WHERE job_id = $1", dependent.job_id
    )
    assert stored == context(6)
    worker_id, incarnation = await worker(pool)
    claim = await jobs.jobs_claim_limited(worker_id, "default", 5, incarnation=incarnation)
    assert carried(claim.assignments) == {first.job_id: context(5)}


async def test_the_column_refuses_an_unbounded_context(pool: asyncpg.Pool) -> None:
    job = NewJob(uuid7(), "default", PAYLOAD, trace_context="x" * 569)
    with pytest.raises(asyncpg.CheckViolationError, match="jobs_trace_context_bounded"):
        await PgJobStore(pool).jobs_insert([job])
