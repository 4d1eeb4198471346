"""Two jq-server replicas started at the same moment against an empty (or missing) database:
both come up, the schema and the database are made once, each migration is recorded once, and
the replicas wake each other on their schema's notification channel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from support import server_harness
from support.payloads import job_payload
from support.processes import ServerFactory, grpc_serving
from support.protocol_worker import ProtocolWorker
from support.server_harness import client_for

from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.app import ServerApp
from jobq.storage.migrations import default_migrations_dir, load_migrations

VERSIONS = sorted(m.version for m in load_migrations(default_migrations_dir()))


async def _history(dsn: str, schema: str) -> list[str]:
    """Every version recorded in `schema`'s history, one entry per row."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f'SELECT version FROM "{schema}".flyway_schema_history WHERE success'
        )
    finally:
        await conn.close()
    return sorted(r["version"] for r in rows)


async def test_two_server_apps_started_together_migrate_once_and_wake_each_other(
    empty_db_dsn: str,
) -> None:
    # A dispatcher interval far beyond the test: only a NOTIFY on the schema's channel can
    # bring the job submitted on one replica to the worker of the other in time.
    overrides = {"db.schema": "jobq", "scheduler.interval_ms": 60_000}
    apps = [ServerApp(server_harness.test_settings(empty_db_dsn, **overrides)) for _ in range(2)]
    started = await asyncio.gather(*(app.start() for app in apps), return_exceptions=True)
    try:
        assert started == [None, None]
        assert await _history(empty_db_dsn, "jobq") == VERSIONS
        conn = await asyncpg.connect(empty_db_dsn)
        try:
            assert (
                await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                == 0
            )
        finally:
            await conn.close()
        ports = [app.grpc_port for app in apps]
        assert None not in ports
        a, b = (client_for(port) for port in ports if port is not None)
        worker = await ProtocolWorker(a).start()
        try:
            async with asyncio.timeout(5):  # A's dispatcher knows the worker ...
                while not apps[0].capacity.any_free_slot():
                    await asyncio.sleep(0.01)
            assert await worker.nothing_more(0.3)  # ... and has had its cycle for it
            submitted = await b.jobs.SubmitJob(
                jpb.SubmitJobRequest(queue_name="default", payload=job_payload("across")),
                timeout=10,
            )
            [got] = await worker.take(1, within=5)
            assert got.job_id == submitted.job_id
        finally:
            await worker.close()
            for client in (a, b):
                await client.channel.close()
    finally:
        for app in apps:
            await app.stop()


@pytest.fixture
async def missing_database_dsn(empty_db_dsn: str) -> AsyncIterator[str]:
    """A superuser DSN (it may create databases) naming a database that does not exist yet."""
    name = f"jq_first_start_{uuid.uuid4().hex[:8]}"
    yield urlunsplit(urlsplit(empty_db_dsn)._replace(path="/" + name))
    admin = await asyncpg.connect(empty_db_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_two_programs_started_together_on_a_missing_database_create_it_once(
    start_server: ServerFactory, missing_database_dsn: str
) -> None:
    env = {"JQ_DB_DSN": missing_database_dsn, "JQ_DB_SCHEMA": "jobq"}
    servers = [start_server(env, wait=False) for _ in range(2)]
    for server in servers:
        server.wait_serving()
    assert all(grpc_serving(server.grpc_port) for server in servers)
    assert await _history(missing_database_dsn, "jobq") == VERSIONS
    logs = [server.log() for server in servers]
    assert sum('"created_database": true' in log for log in logs) == 1
    assert sum('"created_schema": true' in log for log in logs) == 1
    for server in servers:
        assert server.terminate() == 0
