"""jq-server with ordinary privileges: a role that is no superuser, may not create databases or
roles, and owns only its database. It migrates, serves submit -> claim -> complete, and every
object it made is its own and lives in db.schema. Pointed at a database it may not create, it
says how to create it and stops before anything starts.

Run in-process (support.server_harness.running_server) and as the real jq-server program.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
from support.app_roles import AppRole, drop_app_role, make_app_role
from support.payloads import job_payload
from support.processes import ServerFactory
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, client_for, running_server

from jobq.config import load_settings
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.dry_run import dry_run

JOBQ_TABLES = {
    "flyway_schema_history", "queues", "workers", "jobs", "job_events", "audit_events",
    "ready_jobs", "held_jobs", "waiting_jobs", "job_events_default", "history_maintenance",
}  # fmt: skip
JOBQ_TYPES = {"job_status", "worker_status"}


@pytest.fixture
async def app_role(empty_db_dsn: str) -> AsyncIterator[AppRole]:
    """No superuser, no CREATEDB, no CREATEROLE; owns a fresh, empty database."""
    role = await make_app_role(empty_db_dsn, createdb=False, owns_database=True)
    yield role
    await drop_app_role(role)


async def _submit_claim_complete(client: Client) -> None:
    submitted = await client.jobs.SubmitJob(
        jpb.SubmitJobRequest(queue_name="default", payload=job_payload("ordinary")), timeout=10
    )
    worker = await ProtocolWorker(client).start()
    try:
        [assignment] = await worker.take(1)
        assert assignment.job_id == submitted.job_id
        await worker.run([assignment])
    finally:
        await worker.close()
    request = jpb.GetJobStatusRequest(job_id=submitted.job_id)
    async with asyncio.timeout(10):
        while (await client.jobs.GetJobStatus(request, timeout=10)).job.status != (
            cpb.JOB_STATUS_DONE
        ):
            await asyncio.sleep(0.05)


async def _assert_all_its_own_and_in(role: AppRole, schema: str) -> None:
    """Every table, index, sequence and type in `schema` belongs to the role, and the role owns
    nothing elsewhere in its database (TOAST tables, which belong to their tables, aside)."""
    conn = await asyncpg.connect(role.superuser_dsn)
    try:
        assert not await conn.fetchval(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = $1", role.name
        )
        relations = await conn.fetch(
            "SELECT c.relname, c.relkind::text, pg_get_userbyid(c.relowner) AS owner"
            " FROM pg_class c WHERE c.relnamespace = $1::regnamespace",
            schema,
        )
        types = await conn.fetch(
            "SELECT t.typname, pg_get_userbyid(t.typowner) AS owner"
            " FROM pg_type t WHERE t.typnamespace = $1::regnamespace",
            schema,
        )
        elsewhere = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relowner = $1::regrole AND n.nspname NOT IN ($2, 'pg_toast')",
            role.name,
            schema,
        )
        types_elsewhere = await conn.fetchval(
            "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE t.typowner = $1::regrole AND n.nspname <> $2",
            role.name,
            schema,
        )
        schema_owner = await conn.fetchval(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", schema
        )
    finally:
        await conn.close()
    assert {r["owner"] for r in relations} == {role.name}
    assert {r["owner"] for r in types} == {role.name}
    # job_events is partitioned (V23): relkind 'p', its days' partitions 'r'
    assert {r["relname"] for r in relations if r["relkind"] in ("r", "p")} >= JOBQ_TABLES
    assert {r["relkind"] for r in relations} >= {"r", "i", "S"}  # tables, indexes, sequences
    assert {r["typname"] for r in types} >= JOBQ_TYPES
    assert (elsewhere, types_elsewhere) == (0, 0)
    if schema != "public":  # public belongs to pg_database_owner, i.e. the database's owner
        assert schema_owner == role.name


async def _may_create_databases(role: AppRole) -> bool:
    conn = await asyncpg.connect(role.superuser_dsn)
    try:
        return bool(
            await conn.fetchval("SELECT rolcreatedb FROM pg_roles WHERE rolname = $1", role.name)
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("schema", ["public", "jobq"])
async def test_an_ordinary_role_migrates_serves_and_owns_what_it_made(
    app_role: AppRole, schema: str
) -> None:
    assert not await _may_create_databases(app_role)
    async with running_server(app_role.dsn(), {"db.schema": schema}) as (_, client):
        await _submit_claim_complete(client)
    await _assert_all_its_own_and_in(app_role, schema)


async def test_the_real_program_runs_as_an_ordinary_role_in_its_own_schema(
    app_role: AppRole, start_server: ServerFactory
) -> None:
    server = start_server({"JQ_DB_DSN": app_role.dsn(), "JQ_DB_SCHEMA": "jobq"})
    client = client_for(server.grpc_port)
    try:
        await _submit_claim_complete(client)
    finally:
        await client.channel.close()
    assert server.terminate() == 0
    await _assert_all_its_own_and_in(app_role, "jobq")
    assert app_role.password not in server.log()


# --- a database that does not exist ----------------------------------------------------------


async def _database_exists(superuser_dsn: str, name: str) -> bool:
    conn = await asyncpg.connect(superuser_dsn)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


@pytest.fixture
async def role_without_database(empty_db_dsn: str) -> AsyncIterator[AppRole]:
    """No superuser, no CREATEDB; its database does not exist."""
    role = await make_app_role(empty_db_dsn, createdb=False, owns_database=False)
    yield role
    await drop_app_role(role)


@pytest.fixture
async def creator_without_database(empty_db_dsn: str) -> AsyncIterator[AppRole]:
    """CREATEDB (as on managed services), no superuser; its database does not exist yet."""
    role = await make_app_role(empty_db_dsn, createdb=True, owns_database=False)
    yield role
    await drop_app_role(role)


async def test_a_role_that_may_not_create_the_database_stops_with_one_line(
    role_without_database: AppRole, start_server: ServerFactory, empty_db_dsn: str
) -> None:
    role = role_without_database
    server = start_server({"JQ_DB_DSN": role.dsn()}, wait=False)
    assert server.process.wait(timeout=60) == 1
    expected = (
        f'database "{role.database}" does not exist and role "{role.name}" may not create '
        f'databases; as a superuser run: CREATE DATABASE "{role.database}" OWNER "{role.name}";'
    )
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    failed = [r for r in records if r.get("action") == "server.failed"]
    assert [r["message"] for r in failed] == [expected]
    # Nothing started: no gRPC server, no migration, no database.
    assert not {"server.started", "db.migrated"} & {r.get("action") for r in records}
    assert "Traceback" not in server.log()
    assert role.password not in server.log()
    assert not await _database_exists(empty_db_dsn, role.database)


async def test_a_role_that_may_create_databases_creates_its_own_and_serves(
    creator_without_database: AppRole, start_server: ServerFactory, empty_db_dsn: str
) -> None:
    role = creator_without_database
    server = start_server({"JQ_DB_DSN": role.dsn(), "JQ_DB_SCHEMA": "jobq"})
    client = client_for(server.grpc_port)
    try:
        await _submit_claim_complete(client)
    finally:
        await client.channel.close()
    assert server.terminate() == 0
    assert '"created_database": true' in server.log()
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", role.database
        )
    finally:
        await conn.close()
    assert owner == role.name
    await _assert_all_its_own_and_in(role, "jobq")


async def test_dry_run_says_what_jq_server_would_do_about_a_missing_database(
    role_without_database: AppRole, creator_without_database: AppRole
) -> None:
    lines: dict[str, str] = {}
    for role in (role_without_database, creator_without_database):
        out = io.StringIO()
        settings = load_settings(None, env={}, overrides={"db.dsn": role.dsn()}).settings
        code = await dry_run(settings, out)
        [line] = [line for line in out.getvalue().splitlines() if line.startswith("postgres:")]
        lines[role.name] = f"{code} {line}"
    where = "127.0.0.1"
    refused = role_without_database
    assert lines[refused.name].startswith(f"1 postgres: FAILED ({where}:")
    assert lines[refused.name].endswith(
        f'/{refused.database}: database "{refused.database}" does not exist and role '
        f'"{refused.name}" may not create databases; as a superuser run: CREATE DATABASE '
        f'"{refused.database}" OWNER "{refused.name}";)'
    )
    creator = creator_without_database
    assert lines[creator.name].endswith(
        f"/{creator.database}: database {creator.database} does not exist yet; jq-server will "
        f"create it (role {creator.name} may create databases))"
    )
    assert lines[creator.name].startswith("0 postgres: ok (")
