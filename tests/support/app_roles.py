"""A role as a team's DBA makes one for jobq: no superuser, no CREATEROLE, owning its database
(or not), for the tests of jq-server with ordinary privileges."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg


@dataclass(frozen=True)
class AppRole:
    """A role as a team's DBA would make it for jobq, and DSNs for it."""

    name: str
    password: str
    database: str
    superuser_dsn: str  # the test server's superuser, on the role's database

    def dsn(self, database: str | None = None) -> str:
        parts = urlsplit(self.superuser_dsn)
        netloc = f"{self.name}:{quote(self.password, safe='')}@{parts.hostname}:{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc, path="/" + (database or self.database)))


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + database))


async def make_app_role(superuser_dsn: str, *, createdb: bool, owns_database: bool) -> AppRole:
    name, password = f"jq_app_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    database = f"jq_app_db_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(superuser_dsn)
    try:
        await admin.execute(
            f"CREATE ROLE {name} LOGIN PASSWORD '{password}' NOSUPERUSER"
            f" {'CREATEDB' if createdb else 'NOCREATEDB'} NOCREATEROLE"
        )
        if owns_database:
            await admin.execute(f'CREATE DATABASE "{database}" OWNER {name}')
    finally:
        await admin.close()
    return AppRole(name, password, database, with_database(superuser_dsn, database))


async def drop_app_role(role: AppRole) -> None:
    admin = await asyncpg.connect(with_database(role.superuser_dsn, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{role.database}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE {role.name}")
    finally:
        await admin.close()
