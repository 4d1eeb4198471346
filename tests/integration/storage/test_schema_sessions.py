"""jobq's sessions work in db.schema: the pools' search_path, the stores on a schema of their
own beside an application's tables, and a notification channel per schema."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob
from jobq.domain.states import JobStatus
from jobq.storage.migrations import migrate
from jobq.storage.pool import (
    configure_session,
    create_claim_pool,
    create_pool,
    notify_channel,
    quote_identifier,
)
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore

LONGEST = "s" * 53
"""The longest name db.schema accepts: its channel is 63 bytes, PostgreSQL's limit."""


async def _migrated(dsn: str, *schemas: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for schema in schemas:
            await migrate(conn, schema=schema)
    finally:
        await conn.close()


@pytest.fixture
async def jobq_schema_dsn(empty_db_dsn: str) -> str:
    """A database with jobq in schema `jobq` and an application's own `jobs` table in public."""
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await conn.execute("CREATE TABLE public.jobs (app_column text)")
    finally:
        await conn.close()
    await _migrated(empty_db_dsn, "jobq")
    return empty_db_dsn


async def test_pool_and_claim_pool_sessions_work_in_the_schema(jobq_schema_dsn: str) -> None:
    pool = await create_pool(jobq_schema_dsn, schema="jobq", min_size=1, max_size=2)
    claims = await create_claim_pool(jobq_schema_dsn, schema="jobq")
    try:
        for each in (pool, claims):
            async with each.acquire() as conn:
                assert await conn.fetchval("SHOW search_path") == "jobq"
                assert await conn.fetchval("SELECT current_schema()") == "jobq"
                assert await conn.fetchval("SHOW jit") == "off"
        async with claims.acquire() as conn:
            assert await conn.fetchval("SHOW enable_sort") == "off"  # the claim's own settings
    finally:
        await claims.close()
        await pool.close()


async def test_the_stores_use_jobq_s_tables_not_the_application_s(jobq_schema_dsn: str) -> None:
    pool = await create_pool(jobq_schema_dsn, schema="jobq", min_size=1, max_size=2)
    claims = await create_claim_pool(jobq_schema_dsn, schema="jobq")
    try:
        jobs = PgJobStore(pool, claims)
        job_id = uuid7()
        await jobs.jobs_insert([NewJob(job_id, "default", b"{}")])
        worker_id = uuid.uuid4()
        registration = await PgWorkerStore(pool).worker_register(worker_id, "host", 4, ["default"])
        [claimed] = await jobs.jobs_claim(
            worker_id, ["default"], 10, incarnation=registration.incarnation
        )
        assert claimed.job.job_id == job_id
        assert (await jobs.job_get(job_id)).status is JobStatus.ASSIGNED
    finally:
        await claims.close()
        await pool.close()
    conn = await asyncpg.connect(jobq_schema_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM jobq.jobs") == 1
        assert await conn.fetchval("SELECT count(*) FROM public.jobs") == 0
    finally:
        await conn.close()


async def test_a_session_outside_the_pools_gets_the_same_settings(jobq_schema_dsn: str) -> None:
    conn = await asyncpg.connect(jobq_schema_dsn)
    try:
        await configure_session(conn, "jobq")
        assert await conn.fetchval("SELECT current_schema()") == "jobq"
        assert await conn.fetchval("SHOW jit") == "off"
        assert await conn.fetchval("SELECT to_regclass('jobs')::text") == "jobs"
        assert await conn.fetchval("SELECT count(*) FROM queues") == 1
    finally:
        await conn.close()


async def test_any_name_is_quoted_safely(empty_db_dsn: str) -> None:
    odd = 'Odd "name"; DROP TABLE x; --'
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {quote_identifier(odd)}")
        await configure_session(conn, odd)
        assert await conn.fetchval("SELECT current_schema()") == odd
    finally:
        await conn.close()


async def _heard(dsn: str, schema: str, listen_on: list[str]) -> dict[str, int]:
    """Submit one job in `schema` (with notify) and count what each channel heard."""
    heard = dict.fromkeys(listen_on, 0)
    listener = await asyncpg.connect(dsn)
    pool = await create_pool(dsn, schema=schema, min_size=1, max_size=1)
    try:
        for channel in listen_on:
            await listener.add_listener(
                channel, lambda _c, _p, name, _m: heard.__setitem__(name, heard[name] + 1)
            )
        await PgJobStore(pool).jobs_insert([NewJob(uuid7(), "default", b"{}")], notify=True)
        async with asyncio.timeout(5):
            while not heard[notify_channel(schema)]:
                await asyncio.sleep(0.01)
        await listener.execute("SELECT 1")  # anything else sent by then has arrived too
    finally:
        await pool.close()
        await listener.close()
    return heard


async def test_a_submit_notifies_its_own_schema_s_channel_only(empty_db_dsn: str) -> None:
    await _migrated(empty_db_dsn, "public", "jobq", LONGEST)
    channels = [notify_channel(schema) for schema in ("public", "jobq", LONGEST)]
    assert channels[:2] == ["jobq_jobs", "jobq_jobs_jobq"]
    assert len(channels[2]) == 63
    for schema, channel in zip(("public", "jobq", LONGEST), channels, strict=True):
        heard = await _heard(empty_db_dsn, schema, channels)
        assert heard == {other: int(other == channel) for other in channels}, schema
