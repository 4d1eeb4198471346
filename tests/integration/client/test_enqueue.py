"""jobq.enqueue (asyncpg) and jobq.enqueue_sync (psycopg 3) against a real jq-server: a job
written inside the application's own transaction commits with it, wakes the server's
dispatcher by NOTIFY at commit, leaves no trace on rollback, and is the job a SubmitJob makes.

Each test runs with both drivers (`app`): an application connection of its own, beside the
server's pool. The servers run with `scheduler.interval_ms` 60000, so a job a worker receives
within seconds was dispatched by a wake-up, not by the dispatcher's periodic pass."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import pq
from support.enqueue_apps import App
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client as Stubs
from support.server_harness import running_server

import jobq
from jobq.client import AsyncClient, CallFailed, JobSpec, NotInTransaction, Submitted
from jobq.rpc._gen import common_pb2
from jobq.rpc._gen import job_service_pb2 as jpb

NO_PERIODIC_PASS = {"scheduler.interval_ms": 60000}
WAKE_UP_WITHIN_S = 5.0
"""Far below the 60 s interval: a job that arrives this soon was woken up."""
IN_FAILED_TRANSACTION = (asyncpg.InFailedSQLTransactionError, psycopg.errors.InFailedSqlTransaction)


@pytest.fixture
async def server(db_dsn: str) -> AsyncIterator[tuple[str, Stubs]]:
    async with running_server(db_dsn, NO_PERIODIC_PASS) as (started, stubs):
        yield f"127.0.0.1:{started.grpc_port}", stubs


async def job_of(stubs: Stubs, job_id: str) -> common_pb2.Job:
    reply = await stubs.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=job_id), timeout=10)
    return reply.job


async def log_of(stubs: Stubs, job_id: str) -> list[tuple[str, int, int]]:
    reply = await stubs.jobs.GetJobLogs(jpb.GetJobLogsRequest(job_id=job_id), timeout=10)
    return [(e.reason, e.from_status, e.to_status) for e in reply.events]


async def counts(pool: asyncpg.Pool) -> tuple[int, int]:
    """(jobs, job_events) in the database, as any other session sees them."""
    jobs = await pool.fetchval("SELECT count(*) FROM jobs")
    events = await pool.fetchval("SELECT count(*) FROM job_events")
    return jobs, events


async def test_commit_makes_a_pending_job_with_its_submitted_event(
    app: App, server: tuple[str, Stubs], pool: asyncpg.Pool
) -> None:
    _, stubs = server
    await app.begin()
    await app.execute("INSERT INTO orders VALUES (1)")
    submitted = await app.enqueue("shop:send_receipt", 1, queue="default", priority=3)
    assert submitted.existing is False
    assert await counts(pool) == (0, 0)  # nothing visible before the commit
    await app.commit()
    job = await job_of(stubs, submitted.job_id)
    assert job.status == common_pb2.JOB_STATUS_PENDING
    assert (job.queue_name, job.priority, job.max_retries) == ("default", 3, 3)
    assert job.payload == b'{"handler":"shop:send_receipt","args":[1]}'
    assert await log_of(stubs, submitted.job_id) == [
        ("SUBMITTED", common_pb2.JOB_STATUS_UNSPECIFIED, common_pb2.JOB_STATUS_PENDING)
    ]
    assert await counts(pool) == (1, 1)


async def test_a_connected_worker_is_woken_at_commit(app: App, server: tuple[str, Stubs]) -> None:
    _, stubs = server
    worker = await ProtocolWorker(stubs).start()
    try:
        assert await worker.nothing_more(0.3)  # registered and idle: the next pass is 60 s away
        await app.begin()
        submitted = await app.enqueue("shop:send_receipt", 7)
        assert await worker.nothing_more(0.5)  # not before the commit
        await app.commit()
        [assignment] = await worker.take(1, within=WAKE_UP_WITHIN_S)
        assert assignment.job_id == submitted.job_id
        assert assignment.payload == b'{"handler":"shop:send_receipt","args":[7]}'
    finally:
        await worker.close()


async def test_rollback_leaves_no_job_and_no_event(
    app: App, server: tuple[str, Stubs], pool: asyncpg.Pool
) -> None:
    _, stubs = server
    worker = await ProtocolWorker(stubs).start()
    try:
        await app.begin()
        await app.execute("INSERT INTO orders VALUES (1)")
        submitted = await app.enqueue("shop:send_receipt", 1)
        assert await app.fetchval("SELECT count(*) FROM jobs") == 1  # it was written...
        await app.rollback()
        assert await counts(pool) == (0, 0)  # ...and went with the rollback
        assert await pool.fetchval("SELECT count(*) FROM orders") == 0
        assert await worker.nothing_more(1.0)
        with pytest.raises(Exception, match="not found"):
            await job_of(stubs, submitted.job_id)
    finally:
        await worker.close()


async def test_an_enqueued_job_is_the_job_a_submit_makes(
    app: App, server: tuple[str, Stubs]
) -> None:
    address, stubs = server
    not_before = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # due at once
    options: dict[str, Any] = {"queue": "default", "priority": 6, "not_before": not_before}
    async with AsyncClient(address, timeout_s=10) as client:
        over_grpc = await client.submit("shop:resize", 640, 480, fit=True, **options)
    await app.begin()
    enqueued = await app.enqueue("shop:resize", 640, 480, fit=True, **options)
    await app.commit()

    def comparable(job: common_pb2.Job) -> common_pb2.Job:
        job.ClearField("job_id")
        job.ClearField("created_at")
        job.ClearField("updated_at")
        return job

    grpc_job = await job_of(stubs, over_grpc.id)
    app_job = await job_of(stubs, enqueued.job_id)
    assert grpc_job.status == common_pb2.JOB_STATUS_PENDING
    assert comparable(app_job) == comparable(grpc_job)
    assert await log_of(stubs, enqueued.job_id) == await log_of(stubs, over_grpc.id)

    # And a worker runs them alike.
    worker = await ProtocolWorker(stubs).start()
    try:
        assignments = await worker.take(2, within=WAKE_UP_WITHIN_S)
        by_id = {a.job_id: a for a in assignments}
        assert set(by_id) == {over_grpc.id, enqueued.job_id}
        assert by_id[over_grpc.id].payload == by_id[enqueued.job_id].payload
        await worker.run(assignments)
        for job_id in by_id:
            while (await job_of(stubs, job_id)).status != common_pb2.JOB_STATUS_DONE:
                await asyncio.sleep(0.02)
        assert await log_of(stubs, enqueued.job_id) == await log_of(stubs, over_grpc.id)
    finally:
        await worker.close()


async def test_outside_a_transaction_nothing_is_written(app: App, pool: asyncpg.Pool) -> None:
    with pytest.raises(NotInTransaction, match="needs an open transaction"):
        await app.enqueue("shop:send_receipt", 1)
    assert await counts(pool) == (0, 0)


async def test_an_unknown_queue_fails_the_callers_transaction(app: App, pool: asyncpg.Pool) -> None:
    await app.begin()
    await app.execute("INSERT INTO orders VALUES (1)")
    with pytest.raises(CallFailed, match="queue 'nope' not found") as caught:
        await app.enqueue("shop:send_receipt", 1, queue="nope")
    assert caught.value.code == "NOT_FOUND"
    with pytest.raises(
        (asyncpg.InFailedSQLTransactionError, psycopg.errors.InFailedSqlTransaction)
    ):
        await app.fetchval("SELECT 1")
    await app.rollback()
    assert await counts(pool) == (0, 0)
    assert await pool.fetchval("SELECT count(*) FROM orders") == 0


async def test_a_schema_without_jobq_tables_is_named(app: App) -> None:
    await app.begin()
    with pytest.raises(CallFailed, match="no jobq tables in schema 'elsewhere'"):
        await app.enqueue("shop:send_receipt", schema="elsewhere")
    await app.rollback()


async def test_the_callers_search_path_and_jit_are_put_back(app: App) -> None:
    await app.execute("CREATE SCHEMA shop")
    await app.execute("CREATE TABLE shop.jobs (note text)")  # an application table named jobs
    await app.begin()
    await app.execute("SET LOCAL search_path = shop, public")
    await app.execute("SET LOCAL jit = on")
    await app.enqueue("shop:send_receipt", 1)
    assert await app.fetchval("SHOW search_path") == "shop, public"
    assert await app.fetchval("SHOW jit") == "on"
    assert await app.fetchval("SELECT count(*) FROM jobs") == 0  # shop.jobs: untouched
    assert await app.fetchval("SELECT count(*) FROM public.jobs") == 1
    await app.commit()


async def test_a_held_idempotency_key_returns_its_job_and_writes_nothing(
    app: App, server: tuple[str, Stubs], pool: asyncpg.Pool
) -> None:
    address, _ = server
    async with AsyncClient(address, timeout_s=10) as client:
        held = await client.submit("shop:send_receipt", 1, idempotency_key="order-1")
    await app.begin()
    again = await app.enqueue("shop:send_receipt", 1, idempotency_key="order-1")
    fresh = await app.enqueue("shop:send_receipt", 2, idempotency_key="order-2")
    await app.commit()
    assert again == Submitted(held.id, existing=True)
    assert fresh.existing is False
    assert await counts(pool) == (2, 2)
    await app.begin()
    assert await app.enqueue("x:y", idempotency_key="order-2") == Submitted(
        fresh.job_id, existing=True
    )
    await app.rollback()


async def test_a_key_committed_meanwhile_by_another_transaction_is_found(
    app: App, db_dsn: str, pool: asyncpg.Pool
) -> None:
    """The other transaction holds the key uncommitted: our insert waits for it and, at its
    commit, gets the holder back (jobs_insert's ON CONFLICT ... DO UPDATE)."""
    other = await asyncpg.connect(db_dsn)
    try:
        tx = other.transaction()
        await tx.start()
        first = await jobq.enqueue(other, "shop:send_receipt", idempotency_key="order-9")
        await app.begin()
        waiting = asyncio.create_task(app.enqueue("shop:send_receipt", idempotency_key="order-9"))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # blocked on the uncommitted key
        await tx.commit()
        assert await asyncio.wait_for(waiting, 10) == Submitted(first.job_id, existing=True)
        await app.commit()
        assert await counts(pool) == (1, 1)
    finally:
        await other.close()


async def test_a_job_spec_is_enqueued_as_built(app: App, pool: asyncpg.Pool) -> None:
    spec = jobq.client.command_job(
        ["echo", "hi"], options=jobq.client.SubmitOptions(queue="default", priority=9)
    )
    await app.begin()
    submitted = await app.enqueue(spec)
    await app.commit()
    row = await pool.fetchrow(
        "SELECT payload, priority FROM jobs WHERE job_id = $1::uuid", submitted.job_id
    )
    assert (bytes(row["payload"]), row["priority"]) == (spec.payload, 9)
    assert isinstance(spec, JobSpec)


@pytest.mark.parametrize("schema", ["jobq"])
async def test_a_server_in_another_schema_is_woken_on_its_channel(
    app: App, db_dsn: str, schema: str
) -> None:
    overrides = {**NO_PERIODIC_PASS, "db.schema": schema}
    async with running_server(db_dsn, overrides) as (_, stubs):
        worker = await ProtocolWorker(stubs).start()
        try:
            assert await worker.nothing_more(0.3)
            await app.begin()
            submitted = await app.enqueue("shop:send_receipt", 1, schema=schema)
            await app.execute("INSERT INTO orders VALUES (1)")  # public.orders, as before
            await app.commit()
            [assignment] = await worker.take(1, within=WAKE_UP_WITHIN_S)
            assert assignment.job_id == submitted.job_id
        finally:
            await worker.close()


async def test_psycopg_without_autocommit_joins_the_implicit_transaction(
    db_dsn: str, pool: asyncpg.Pool
) -> None:
    """psycopg opens a transaction at a non-autocommit connection's first statement, and
    commit() or rollback() ends it: enqueue_sync may be that first statement."""

    def run() -> tuple[Submitted, Submitted]:
        with psycopg.connect(db_dsn) as conn:
            assert conn.info.transaction_status is pq.TransactionStatus.IDLE
            kept = jobq.enqueue_sync(conn, "shop:send_receipt", 1)
            conn.commit()
            dropped = jobq.enqueue_sync(conn, "shop:send_receipt", 2)
            conn.rollback()
            return kept, dropped

    kept, dropped = await asyncio.to_thread(run)
    ids = {str(r["job_id"]) for r in await pool.fetch("SELECT job_id FROM jobs")}
    assert ids == {kept.job_id}
    assert dropped.job_id not in ids


async def test_psycopg_async_without_autocommit_joins_the_implicit_transaction(
    db_dsn: str, pool: asyncpg.Pool
) -> None:
    """The same with psycopg's AsyncConnection and `await jobq.enqueue()`."""
    async with await psycopg.AsyncConnection.connect(db_dsn) as conn:
        assert conn.info.transaction_status is pq.TransactionStatus.IDLE
        kept = await jobq.enqueue(conn, "shop:send_receipt", 1)
        await conn.commit()
        dropped = await jobq.enqueue(conn, "shop:send_receipt", 2)
        await conn.rollback()
    ids = {str(r["job_id"]) for r in await pool.fetch("SELECT job_id FROM jobs")}
    assert ids == {kept.job_id}
    assert dropped.job_id not in ids


async def test_a_failed_transaction_is_refused_before_any_sql(db_dsn: str) -> None:
    def run() -> None:
        with psycopg.connect(db_dsn) as conn:
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1/0")
            with pytest.raises(NotInTransaction, match="has failed"):
                jobq.enqueue_sync(conn, "shop:send_receipt", 1)

    await asyncio.to_thread(run)


async def test_the_wrong_driver_is_named(db_dsn: str) -> None:
    conn = await asyncio.to_thread(psycopg.connect, db_dsn)
    try:
        with pytest.raises(TypeError, match="enqueue_sync"):
            await jobq.enqueue(conn, "shop:send_receipt")  # type: ignore[arg-type]
    finally:
        await asyncio.to_thread(conn.close)
    aconn = await asyncpg.connect(db_dsn)
    try:
        with pytest.raises(TypeError, match="await enqueue"):
            jobq.enqueue_sync(aconn, "shop:send_receipt")  # type: ignore[arg-type]
    finally:
        await aconn.close()
    async with await psycopg.AsyncConnection.connect(db_dsn) as async_conn:
        with pytest.raises(TypeError, match="psycopg AsyncConnection"):
            jobq.enqueue_sync(async_conn, "shop:send_receipt")  # type: ignore[arg-type]


async def test_a_pool_connection_enqueues_too(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        submitted = await jobq.enqueue(conn, "shop:send_receipt", 1)
    assert await pool.fetchval("SELECT job_id::text FROM jobs") == submitted.job_id
