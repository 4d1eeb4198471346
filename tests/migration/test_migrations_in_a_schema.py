"""Migrations into a named schema (db.schema): where everything lands, concurrent runners, a
schema shared with others, and roles that may not create what the runner needs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from jobq.domain.errors import MigrationError
from jobq.storage.migrations import default_migrations_dir, load_migrations, migrate, schema_state

SCRIPTS = tuple(m.script for m in load_migrations(default_migrations_dir()))


async def _objects(conn: asyncpg.Connection, schema: str) -> dict[str, set[str]]:
    """The relations (tables, indexes, sequences) and types in `schema`, by name."""
    relations = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1",
        schema,
    )
    types = await conn.fetch(
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE n.nspname = $1",
        schema,
    )
    return {"relations": {r["relname"] for r in relations}, "types": {t["typname"] for t in types}}


async def test_everything_lands_in_the_named_schema_and_nothing_in_public(
    empty_db_dsn: str,
) -> None:
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        report = await migrate(conn, schema="jobq")
        assert report.applied == SCRIPTS
        assert report.created_schema is True
        assert await conn.fetchval("SELECT current_schema()") == "jobq"  # left as documented
        inside = await _objects(conn, "jobq")
        assert {
            "flyway_schema_history",
            "queues",
            "workers",
            "jobs",
            "job_events",
            "audit_events",
            "ready_jobs_claim_idx",
            "job_events_id_seq",
        } <= inside["relations"]
        assert {"job_status", "worker_status"} <= inside["types"]
        assert await _objects(conn, "public") == {"relations": set(), "types": set()}
        versions = await conn.fetch("SELECT version FROM jobq.flyway_schema_history")
        assert len(versions) == len(SCRIPTS)
        assert await conn.fetchval("SELECT name FROM jobq.queues") == "default"

        again = await migrate(conn, schema="jobq")
        assert (again.applied, again.created_schema) == ((), False)
        assert again.already_applied == SCRIPTS
    finally:
        await conn.close()


async def test_the_default_schema_is_public(empty_db_dsn: str) -> None:
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        report = await migrate(conn)
        assert report.created_schema is False  # public exists in every new database
        assert await conn.fetchval("SELECT to_regclass('public.jobs')::text") == "jobs"
    finally:
        await conn.close()


async def test_concurrent_runners_create_the_schema_and_apply_each_migration_once(
    empty_db_dsn: str,
) -> None:
    conns = [await asyncpg.connect(empty_db_dsn) for _ in range(4)]
    try:
        reports = await asyncio.gather(*(migrate(conn, schema="jobq") for conn in conns))
        assert sum(report.created_schema for report in reports) == 1
        applied = sorted(script for report in reports for script in report.applied)
        assert applied == sorted(SCRIPTS)
        rows = await conns[0].fetch("SELECT script FROM jobq.flyway_schema_history")
        assert sorted(r["script"] for r in rows) == sorted(SCRIPTS)
    finally:
        for conn in conns:
            await conn.close()


async def test_two_installations_share_a_database_in_two_schemas(empty_db_dsn: str) -> None:
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await conn.execute("CREATE TABLE public.jobs (id int)")  # the application's own table
        first = await migrate(conn, schema="jobq_a")
        second = await migrate(conn, schema="jobq_b")
        assert first.applied == second.applied == SCRIPTS
        await conn.execute("INSERT INTO jobq_a.queues (name) VALUES ('only_in_a')")
        assert (
            await conn.fetchval("SELECT count(*) FROM jobq_b.queues WHERE name = 'only_in_a'") == 0
        )
        # The application's table was neither used nor changed.
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = 'jobs'"
        )
        assert [c["column_name"] for c in columns] == ["id"]
    finally:
        await conn.close()


async def test_schema_state_says_what_migrate_would_do_and_changes_nothing(
    empty_db_dsn: str,
) -> None:
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await conn.execute('SET search_path = "jobq"')
        before = await schema_state(conn, schema="jobq")
        assert (before.exists, before.pending) == (False, SCRIPTS)
        assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'jobq'") == 0
        await conn.execute("CREATE SCHEMA jobq")
        assert (await schema_state(conn, schema="jobq")).pending == SCRIPTS  # no history yet
        await migrate(conn, schema="jobq")
        after = await schema_state(conn, schema="jobq")
        assert (after.exists, after.pending) == (True, ())
    finally:
        await conn.close()


# --- roles that may do less ----------------------------------------------------------------


def _as_role(dsn: str, role: str, password: str) -> str:
    parts = urlsplit(dsn)
    netloc = f"{role}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
async def limited_role(empty_db_dsn: str) -> AsyncIterator[tuple[str, str]]:
    """A role that may connect to the test's database and nothing else: (its DSN, its name)."""
    role, password = f"jq_mig_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    database = urlsplit(empty_db_dsn).path.lstrip("/")
    admin = await asyncpg.connect(empty_db_dsn)  # the test server's superuser
    try:
        await admin.execute(
            f"CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE"
        )
        await admin.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
        yield _as_role(empty_db_dsn, role, password), role
    finally:
        await admin.execute(f"DROP OWNED BY {role}")  # its objects here, and the grant
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_a_schema_made_for_the_role_is_used_without_the_right_to_create_schemas(
    empty_db_dsn: str, limited_role: tuple[str, str]
) -> None:
    dsn, role = limited_role
    owner = await asyncpg.connect(empty_db_dsn)
    try:
        await owner.execute(f"CREATE SCHEMA jobq AUTHORIZATION {role}")  # what a DBA does
    finally:
        await owner.close()
    conn = await asyncpg.connect(dsn)
    try:
        report = await migrate(conn, schema="jobq")
        assert (report.applied, report.created_schema) == (SCRIPTS, False)
        owners = await conn.fetch(
            "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class"
            " WHERE relnamespace = 'jobq'::regnamespace"
        )
        assert [r["owner"] for r in owners] == [role]
    finally:
        await conn.close()


async def test_a_role_that_may_not_create_the_schema_is_told_what_to_run(
    limited_role: tuple[str, str],
) -> None:
    dsn, role = limited_role
    conn = await asyncpg.connect(dsn)
    try:
        with pytest.raises(MigrationError) as caught:
            await migrate(conn, schema="jobq")
    finally:
        await conn.close()
    assert str(caught.value) == (
        'schema "jobq" does not exist and the role may not create it; as the database\'s '
        f'owner run: CREATE SCHEMA "jobq" AUTHORIZATION "{role}";'
    )


async def test_a_role_that_may_not_create_tables_in_public_is_told_what_to_do(
    limited_role: tuple[str, str],
) -> None:
    dsn, role = limited_role
    conn = await asyncpg.connect(dsn)
    try:
        # PostgreSQL 15 and newer let only the database's owner create in public.
        with pytest.raises(MigrationError) as caught:
            await migrate(conn)
    finally:
        await conn.close()
    assert str(caught.value).startswith(
        'the role may not create tables in schema "public"; grant it '
        f'(GRANT CREATE ON SCHEMA "public" TO "{role}";)'
    )
