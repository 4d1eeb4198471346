"""The real jq-server on a database where a DBA installed pg_partman (Debian's
postgresql-15-partman, 4.7), as an ordinary role in a schema of its own: granted the use of
pg_partman, its history maintainer registers job_events with it at start-up; not granted, it
says so once and keeps the partitions itself, and serves either way.

On the distribution's PostgreSQL only (`make test-system-pg`): the embedded one has no pg_partman.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
from support.app_roles import AppRole, drop_app_role, make_app_role
from support.processes import ServerFactory, ServerProcess

pytestmark = pytest.mark.system_postgres_only

SCHEMA = "jobq"
PARENT = f"{SCHEMA}.job_events"


@pytest.fixture
async def app_role(empty_db_dsn: str) -> AsyncIterator[AppRole]:
    """An ordinary role owning a fresh database in which a superuser installed pg_partman."""
    role = await make_app_role(empty_db_dsn, createdb=False, owns_database=True)
    admin = await asyncpg.connect(role.superuser_dsn)
    try:
        await admin.execute("CREATE SCHEMA partman")
        await admin.execute("CREATE EXTENSION pg_partman SCHEMA partman")
    finally:
        await admin.close()
    yield role
    await drop_app_role(role)


async def grant_partman(role: AppRole) -> None:
    """What pg_partman's documentation has a DBA grant a role that runs its maintenance."""
    admin = await asyncpg.connect(role.superuser_dsn)
    try:
        for statement in (
            "GRANT ALL ON SCHEMA partman TO {role}",
            "GRANT ALL ON ALL TABLES IN SCHEMA partman TO {role}",
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO {role}",
            "GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO {role}",
        ):
            await admin.execute(statement.format(role=role.name))
    finally:
        await admin.close()


async def maintained(role: AppRole, within: float = 30.0) -> None:
    """Until the history maintainer's first run at start-up has succeeded."""
    admin = await asyncpg.connect(role.superuser_dsn)
    try:
        async with asyncio.timeout(within):
            while not await admin.fetchval(
                f"SELECT last_success IS NOT NULL FROM {SCHEMA}.history_maintenance"
                " WHERE name = 'job_events'"
            ):
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def registration(role: AppRole) -> asyncpg.Record | None:
    admin = await asyncpg.connect(role.superuser_dsn)
    try:
        return await admin.fetchrow(
            "SELECT datetime_string, retention FROM partman.part_config WHERE parent_table = $1",
            PARENT,
        )
    finally:
        await admin.close()


def actions(server: ServerProcess) -> list[str]:
    return [
        json.loads(line).get("action", "")
        for line in server.log().splitlines()
        if line.startswith("{")
    ]


async def test_granted_pg_partman_keeps_job_events_days(
    app_role: AppRole, start_server: ServerFactory
) -> None:
    await grant_partman(app_role)
    server = start_server({"JQ_DB_DSN": app_role.dsn(), "JQ_DB_SCHEMA": SCHEMA})
    await maintained(app_role)

    row = await registration(app_role)
    assert row is not None, f"job_events was not registered:\n{server.log()}"
    assert row["datetime_string"] == "YYYY_MM_DD"
    assert row["retention"] is None
    assert "history.partman_registered" in actions(server)
    assert "history.partman_unused" not in actions(server)
    assert server.terminate() == 0


async def test_without_a_grant_jobq_says_so_once_and_keeps_the_days_itself(
    app_role: AppRole, start_server: ServerFactory
) -> None:
    server = start_server({"JQ_DB_DSN": app_role.dsn(), "JQ_DB_SCHEMA": SCHEMA})
    await maintained(app_role)

    assert await registration(app_role) is None
    assert actions(server).count("history.partman_unused") == 1
    assert "Traceback" not in server.log()
    assert app_role.password not in server.log()
    assert server.terminate() == 0


async def test_switched_off_pg_partman_is_left_alone(
    app_role: AppRole, start_server: ServerFactory
) -> None:
    await grant_partman(app_role)
    server = start_server(
        {"JQ_DB_DSN": app_role.dsn(), "JQ_DB_SCHEMA": SCHEMA, "JQ_HISTORY_PG_PARTMAN": "false"}
    )
    await maintained(app_role)

    assert await registration(app_role) is None
    assert not {"history.partman_registered", "history.partman_unused"} & set(actions(server))
    assert server.terminate() == 0
