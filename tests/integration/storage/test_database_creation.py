"""A missing database: created when the role may, refused with the statement to run when it may
not, and created once when several jq-server replicas find it missing together."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from jobq.config import DbSettings
from jobq.domain.errors import Unavailable
from jobq.storage.database import (
    DatabaseMissing,
    database_name,
    ensure_database,
    inspect_missing_database,
    open_database,
)

RoleFactory = Callable[[bool], Awaitable[tuple[str, str]]]
"""createdb -> (a DSN of that role for a database that does not exist, the role's name)."""


def _dsn(base: str, role: str, password: str, database: str) -> str:
    parts = urlsplit(base)
    netloc = f"{role}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc, path="/" + database))


@pytest.fixture
async def missing_database_role(db_dsn: str) -> AsyncIterator[RoleFactory]:
    """Roles (never superusers) with DSNs naming a database that does not exist yet; the
    roles and whatever databases they got are dropped afterwards."""
    made: list[tuple[str, str]] = []
    admin = await asyncpg.connect(db_dsn)  # the test server's superuser

    async def make(createdb: bool) -> tuple[str, str]:
        role, password = f"jq_db_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        database = f"jq_missing_{uuid.uuid4().hex[:8]}"
        attributes = "CREATEDB" if createdb else "NOCREATEDB"
        await admin.execute(
            f"CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER {attributes} NOCREATEROLE"
        )
        made.append((role, database))
        return _dsn(db_dsn, role, password, database), role

    try:
        yield make
    finally:
        for role, database in made:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def _owner(db_dsn: str, database: str) -> str | None:
    conn = await asyncpg.connect(db_dsn)
    try:
        owner: str | None = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database
        )
        return owner
    finally:
        await conn.close()


async def test_an_existing_database_is_left_alone(db_dsn: str) -> None:
    assert await ensure_database(db_dsn) is False
    assert await inspect_missing_database(db_dsn) is None


async def test_a_role_that_may_create_databases_creates_it_and_owns_it(
    db_dsn: str, missing_database_role: RoleFactory
) -> None:
    dsn, role = await missing_database_role(True)
    name = database_name(dsn)
    assert name is not None
    missing = await inspect_missing_database(dsn)
    assert missing is not None
    assert (missing.name, missing.role, missing.may_create) == (name, role, True)
    assert await _owner(db_dsn, name) is None  # inspecting created nothing

    assert await ensure_database(dsn) is True
    assert await _owner(db_dsn, name) == role
    assert await ensure_database(dsn) is False


async def test_replicas_finding_it_missing_together_create_it_once(
    db_dsn: str, missing_database_role: RoleFactory
) -> None:
    dsn, role = await missing_database_role(True)
    created = await asyncio.gather(*(ensure_database(dsn) for _ in range(6)))
    assert sum(created) == 1  # the one that won; the others found it made or lost the race
    name = database_name(dsn)
    assert name is not None
    assert await _owner(db_dsn, name) == role


async def test_a_role_that_may_not_gets_one_line_with_the_statement_to_run(
    db_dsn: str, missing_database_role: RoleFactory
) -> None:
    dsn, role = await missing_database_role(False)
    name = database_name(dsn)
    expected = (
        f'database "{name}" does not exist and role "{role}" may not create databases; '
        f'as a superuser run: CREATE DATABASE "{name}" OWNER "{role}";'
    )
    with pytest.raises(DatabaseMissing) as caught:
        await ensure_database(dsn)
    assert str(caught.value) == expected
    missing = await inspect_missing_database(dsn)
    assert missing is not None
    assert not missing.may_create
    assert missing.refusal() == expected
    assert name is not None
    assert await _owner(db_dsn, name) is None


async def test_the_statement_creates_what_jq_server_needs(
    db_dsn: str, missing_database_role: RoleFactory
) -> None:
    dsn, _ = await missing_database_role(False)
    with pytest.raises(DatabaseMissing) as caught:
        await ensure_database(dsn)
    statement = str(caught.value).split("as a superuser run: ", 1)[1]
    admin = await asyncpg.connect(db_dsn)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()
    assert await ensure_database(dsn) is False


async def test_open_database_turns_an_unreachable_server_into_one_clear_error() -> None:
    settings = DbSettings(dsn="postgresql://nobody@127.0.0.1:1/nothing", connect_timeout_s=2)
    with pytest.raises(Unavailable, match=r"^cannot reach PostgreSQL: "):
        await open_database(settings)


async def test_open_database_creates_a_missing_configured_database(
    db_dsn: str, missing_database_role: RoleFactory
) -> None:
    dsn, role = await missing_database_role(True)
    handle = await open_database(DbSettings(dsn=dsn))
    assert handle.created_database is True
    assert handle.embedded is None
    name = database_name(dsn)
    assert name is not None
    assert await _owner(db_dsn, name) == role


def test_the_database_name_is_read_as_asyncpg_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGDATABASE", raising=False)
    assert database_name("postgresql://u@h:5432/my%20db") == "my db"
    assert database_name("postgresql://u@h/?dbname=other") == "other"
    assert database_name("postgresql://u@/?host=/run/pg&database=third") == "third"
    assert database_name("postgresql://u@h") is None  # the user's name, once known
    monkeypatch.setenv("PGDATABASE", "from_env")
    assert database_name("postgresql://u@h") == "from_env"
