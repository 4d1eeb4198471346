"""jobq.enqueue refuses what jq-server's SubmitJob refuses, with its words, before any SQL: the
caller's transaction is untouched (asyncpg: no statement was sent; psycopg: a connection
without autocommit is still idle, so not even its implicit BEGIN was sent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import pq

import jobq
from jobq.client import InvalidJob, JobSpec, SubmitOptions, handler_job
from jobq.client.enqueue import new_job

NOW = datetime(2030, 1, 1, tzinfo=UTC)

REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"queue": "no spaces"}, "queue name 'no spaces'"),
    ({"priority": 10}, "priority must be from 0 to 9, got 10"),
    ({"priority": -1}, "priority must be from 0 to 9, got -1"),
    ({"max_retries": 1001}, "max_retries must be from 0 to 1000"),
    ({"delay": -1}, "delay must not be negative"),
    ({"delay": timedelta(days=365 * 11)}, "delay must be at most ten years"),
    ({"delay": 1e300}, "delay must be at most ten years"),
    ({"delay": 1, "not_before": NOW}, "give delay or not_before, not both"),
    ({"idempotency_key": "é"}, "idempotency_key must be 1 to 255 printable ASCII"),
    ({"idempotency_key": "k" * 256}, "idempotency_key must be 1 to 255 printable ASCII"),
    ({"idempotency_key": "tab\there"}, "idempotency_key must be 1 to 255 printable ASCII"),
    ({"schema": "Bad-Schema"}, "schema 'Bad-Schema'"),
    ({"schema": "pg_catalog"}, "belong to PostgreSQL"),
    ({"not_json": {1, 2}}, "not JSON-serialisable"),
]


@pytest.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.mark.parametrize(("options", "message"), REFUSED)
async def test_asyncpg_refuses_before_any_sql(
    conn: asyncpg.Connection, options: dict[str, Any], message: str
) -> None:
    sent: list[str] = []
    async with conn.transaction():
        conn.add_query_logger(lambda record: sent.append(record.query))
        with pytest.raises(InvalidJob, match=message):
            await jobq.enqueue(conn, "shop:send_receipt", 1, **options)
        assert sent == []
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 0  # the transaction lives


@pytest.mark.parametrize(("options", "message"), REFUSED)
async def test_psycopg_refuses_before_any_sql(
    db_dsn: str, options: dict[str, Any], message: str
) -> None:
    def run() -> None:
        with psycopg.connect(db_dsn) as connection:
            with pytest.raises(InvalidJob, match=message):
                jobq.enqueue_sync(connection, "shop:send_receipt", 1, **options)
            assert connection.info.transaction_status is pq.TransactionStatus.IDLE

    await asyncio.to_thread(run)


async def test_outside_a_transaction_no_sql_is_sent(conn: asyncpg.Connection) -> None:
    sent: list[str] = []
    conn.add_query_logger(lambda record: sent.append(record.query))
    with pytest.raises(jobq.NotInTransaction):
        await jobq.enqueue(conn, "shop:send_receipt", 1)
    assert sent == []


async def test_a_payload_no_worker_could_run_is_refused(conn: asyncpg.Connection) -> None:
    spec = JobSpec(b'{"handler": "h", "timeout": 5}')  # built by hand: not checked yet
    async with conn.transaction():
        with pytest.raises(InvalidJob, match="timeout"):
            await jobq.enqueue(conn, spec)


async def test_a_job_spec_takes_no_more_arguments(conn: asyncpg.Connection) -> None:
    spec = handler_job("shop:send_receipt", [1])
    async with conn.transaction():
        with pytest.raises(TypeError, match="pass it alone"):
            await jobq.enqueue(conn, spec, 2)
        with pytest.raises(TypeError, match="pass it alone"):
            await jobq.enqueue(conn, spec, priority=5)


def test_new_job_is_what_the_server_makes() -> None:
    spec = handler_job(
        "shop:send_receipt",
        [1],
        options=SubmitOptions(queue="mail", priority=4, delay=90, max_retries=2),
    )
    job = new_job(spec, NOW)
    assert (job.queue_name, job.payload, job.priority, job.max_retries) == (
        "mail",
        spec.payload,
        4,
        2,
    )
    assert job.not_before == NOW + timedelta(seconds=90)
    assert job.idempotency_key is None  # none is made up: nothing here retries
    assert job.job_id.version == 7  # time-ordered, as the server's ids


def test_a_naive_not_before_is_utc_as_a_submit_sends_it() -> None:
    naive = datetime(2031, 5, 6, 7, 8, 9)
    job = new_job(handler_job("h", options=SubmitOptions(not_before=naive)), NOW)
    assert job.not_before == naive.replace(tzinfo=UTC)


def test_an_oversized_payload_is_refused_at_the_servers_default_limit() -> None:
    spec = handler_job("h", ["x" * (1024 * 1024)])
    with pytest.raises(InvalidJob, match="the limit is 1048576 bytes"):
        new_job(spec, NOW)
