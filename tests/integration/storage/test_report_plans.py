"""The report statements find each reported attempt by primary key, not by walking held jobs.

Found during a drain (bench/): with statistics gathered while no job was held, the planner
reached each reported job through jobs_worker_id_idx and walked all of the worker's held jobs
once per reported job, so a batch of results cost time quadratic in its size (see the head of
sql/jobs.sql). These tests recreate the conditions and read the executed plans (rolled back):
no scan of jobs may read more rows than were reported. They measure no time.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest
from support.plans import Plan, relation, scans

from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob
from jobq.domain.shards import served_shards
from jobq.storage.pool import create_claim_pool, create_pool
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore
from jobq.storage.queries import query

TABLE = 20_000  # enough jobs that reading the whole table is not the cheap way
HELD = 400
REPORTED = 150
SHARD = served_shards()[0]

Attempts = tuple[list[uuid.UUID], list[int], list[uuid.UUID], list[uuid.UUID | None]]


def _scans_of_jobs(plan: Any) -> list[Plan]:
    """Every plan node that reads the jobs table, one of its partitions (V24: jobs_pYYYYMMDD,
    jobs_legacy) or one of their indexes."""
    return scans(plan, lambda node: relation(node) == "jobs" or relation(node).startswith("jobs_"))


@pytest.fixture
async def held(pool: asyncpg.Pool) -> Attempts:
    """(job ids, attempts, worker ids, claim ids) of REPORTED of the HELD jobs one worker
    holds, in a table of TABLE jobs."""
    jobs = PgJobStore(pool)
    for _ in range(TABLE // 1000):
        await jobs.jobs_insert([NewJob(uuid7(), "default", b"{}") for _ in range(1000)])
    await pool.execute("ANALYZE jobs")  # statistics from before any job was held
    worker_id = uuid.uuid4()
    registration = await PgWorkerStore(pool).worker_register(
        worker_id, "plan-host", HELD, ["default"]
    )
    claimed = await jobs.jobs_claim(
        worker_id, ["default"], HELD, incarnation=registration.incarnation
    )
    assert len(claimed) == HELD
    reported = claimed[:REPORTED]
    return (
        [a.job.job_id for a in reported],
        [a.job.attempt for a in reported],
        [worker_id] * REPORTED,
        [a.claim_id for a in reported],
    )


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        # each with its last parameter, the shard of the batch (V25): the one there is
        ("jobs_start", (SHARD,)),
        ("jobs_complete", ([b"null"] * REPORTED, SHARD)),
        ("jobs_lock_for_failure", (["ASSIGNED", "RUNNING"], SHARD)),
        ("jobs_release", ("WORKER_SHUTDOWN", SHARD)),
        ("jobs_interrupt", ("WORKER_LOST", "no heartbeat", ["ASSIGNED", "RUNNING"], SHARD)),
    ],
)
async def test_each_reported_attempt_is_one_index_hit(
    pool: asyncpg.Pool, held: Attempts, name: str, extra: tuple[object, ...]
) -> None:
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            raw = await conn.fetchval(
                f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {query(name)}", *held, *extra
            )
        finally:
            await transaction.rollback()
    scans = _scans_of_jobs(json.loads(raw))
    assert scans
    for scan in scans:
        read = scan["Actual Rows"] * scan["Actual Loops"] + scan.get("Rows Removed by Filter", 0)
        assert read <= REPORTED, (
            f"{name}: {scan['Node Type']} on {scan.get('Index Name', 'jobs')} read {read} rows"
            f" for {REPORTED} reported attempts"
        )


async def test_claim_sessions_plan_the_claim_once(db_dsn: str) -> None:
    """The claim pool's sessions discourage sorting and plan the claim once (see
    create_claim_pool); other sessions keep the server's settings. (synchronous_commit is not
    checked: the test server runs with it off everywhere.)"""
    claims = await create_claim_pool(db_dsn)
    try:
        async with claims.acquire() as conn:
            settings = {
                name: await conn.fetchval(f"SHOW {name}")
                for name in ("enable_sort", "plan_cache_mode", "jit")
            }
    finally:
        await claims.close()
    assert settings == {
        "enable_sort": "off",
        "plan_cache_mode": "force_generic_plan",
        "jit": "off",
    }
    pool = await create_pool(db_dsn, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW jit") == "off"  # no jobq session JIT-compiles
            assert await conn.fetchval("SHOW enable_sort") == "on"
    finally:
        await pool.close()
    other = await asyncpg.connect(db_dsn)  # the server's defaults are left alone
    try:
        assert await other.fetchval("SHOW plan_cache_mode") == "auto"
        assert await other.fetchval("SHOW enable_sort") == "on"
    finally:
        await other.close()
