"""Which PostgreSQL to use: the configured one, or the embedded default (SPEC §9), and making
sure its database exists.

With `db.dsn` (or `db.host` and friends) set, that server is used as it is. Otherwise an
embedded PostgreSQL in `db.embedded_data_dir` is started, or reused when it already runs; only
the process that started it stops it again.

Either way the database must exist before anything else happens. A missing one is created
when the role may create databases (a superuser, or CREATEDB as on managed services), over the
server's `postgres` database with the same credentials; that is how the embedded default gets
its `jobq` database too. A role that may not gets one line naming the database and the role
and the statement a superuser runs, and jq-server stops before anything starts.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from jobq.config import DbSettings
from jobq.domain.errors import JobqError, Unavailable
from jobq.storage.embedded import EmbeddedPostgres
from jobq.storage.pool import quote_identifier
from jobq.storage.queries import query

EMBEDDED_DATABASE = "jobq"

_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""What a connection attempt raises when PostgreSQL cannot be reached or refuses us."""


class DatabaseMissing(JobqError):
    """The configured database does not exist and jq-server may not create it."""


@dataclass(frozen=True, slots=True)
class MissingDatabase:
    """A database to create: its name, the role jq-server connects as, and whether that role
    may create databases."""

    name: str
    role: str
    may_create: bool

    def refusal(self) -> str:
        """One line: what is missing and the statement that creates it."""
        name, role = quote_identifier(self.name), quote_identifier(self.role)
        return (
            f"database {name} does not exist and role {role} may not create databases; "
            f"as a superuser run: CREATE DATABASE {name} OWNER {role};"
        )


@dataclass
class DatabaseHandle:
    """The DSN to connect to and, for the embedded default, the server we may have to stop.

    The DSN may carry a password (the embedded server's always does): it stays out of `repr()`,
    and logs name the database by `description`.
    """

    dsn: str = field(repr=False)
    embedded: EmbeddedPostgres | None = None
    started_here: bool = False
    created_database: bool = False

    @property
    def description(self) -> str:
        if self.embedded is None:
            return "configured PostgreSQL"
        return f"embedded PostgreSQL in {self.embedded.data_dir}"

    async def close(self) -> None:
        """Stop the embedded server if this process started it."""
        if self.embedded is not None and self.started_here:
            await asyncio.to_thread(self.embedded.stop)


async def open_database(settings: DbSettings) -> DatabaseHandle:
    """Resolve the DSN, starting the embedded server when needed, and make sure the database
    exists (see the module docstring). Unavailable when PostgreSQL cannot be reached,
    DatabaseMissing when the database is missing and may not be created."""
    dsn = settings.resolved_dsn()
    timeout_s = settings.connect_timeout_s
    if dsn is not None:
        created = await _ensure_reachable_database(dsn, timeout_s)
        return DatabaseHandle(dsn=dsn, created_database=created)
    embedded = EmbeddedPostgres(settings.embedded_data_dir)
    started = await asyncio.to_thread(embedded.start)
    dsn = embedded.dsn(EMBEDDED_DATABASE)
    handle = DatabaseHandle(dsn=dsn, embedded=embedded, started_here=started)
    try:
        handle.created_database = await _ensure_reachable_database(dsn, timeout_s)
    except BaseException:
        await handle.close()
        raise
    return handle


async def _ensure_reachable_database(dsn: str, timeout_s: float) -> bool:
    try:
        return await ensure_database(dsn, timeout_s)
    except _CONNECT_ERRORS as exc:
        raise Unavailable(f"cannot reach PostgreSQL: {exc}") from None


async def ensure_database(dsn: str, timeout_s: float = 5.0) -> bool:
    """Make sure the database `dsn` names exists: True when this call created it,
    DatabaseMissing when it is missing and the role may not create it.

    Safe when several jq-server replicas find it missing at the same moment: one creates it,
    the others find it created.
    """
    if await _exists(dsn, timeout_s):
        return False
    maintenance = await _connect_maintenance(dsn, timeout_s)
    try:
        missing = await _missing_database(maintenance, dsn)
        if not missing.may_create:
            raise DatabaseMissing(missing.refusal())
        try:
            await maintenance.execute(f"CREATE DATABASE {quote_identifier(missing.name)}")
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            return False  # another replica created it first (which error depends on timing)
        except asyncpg.InsufficientPrivilegeError:
            raise DatabaseMissing(missing.refusal()) from None
        return True
    finally:
        await maintenance.close()


async def inspect_missing_database(dsn: str, timeout_s: float = 5.0) -> MissingDatabase | None:
    """None when the database `dsn` names exists, else what creating it takes; changes
    nothing (for `jq-server --dry-run`)."""
    if await _exists(dsn, timeout_s):
        return None
    maintenance = await _connect_maintenance(dsn, timeout_s)
    try:
        return await _missing_database(maintenance, dsn)
    finally:
        await maintenance.close()


async def _exists(dsn: str, timeout_s: float) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout_s)
    except asyncpg.InvalidCatalogNameError:
        return False
    await conn.close()
    return True


async def _connect_maintenance(dsn: str, timeout_s: float) -> asyncpg.Connection:
    """A connection to the server's `postgres` database (`template1` when that was dropped)
    with `dsn`'s credentials. A role that may not connect there cannot create a database
    either: DatabaseMissing then, with the statement to run by hand."""
    try:
        try:
            return await asyncpg.connect(dsn, database="postgres", timeout=timeout_s)
        except asyncpg.InvalidCatalogNameError:
            return await asyncpg.connect(dsn, database="template1", timeout=timeout_s)
    except (asyncpg.InsufficientPrivilegeError, asyncpg.InvalidAuthorizationSpecificationError):
        name = quote_identifier(database_name(dsn) or urlsplit(dsn).username or "jobq")
        raise DatabaseMissing(
            f"database {name} does not exist and the role may not connect to the server's "
            f"postgres database to create it; as a superuser run: CREATE DATABASE {name} "
            "OWNER <jq-server's role>;"
        ) from None


async def _missing_database(maintenance: asyncpg.Connection, dsn: str) -> MissingDatabase:
    row = await maintenance.fetchrow(query("role_may_create_databases"))
    assert row is not None  # current_user is always a row of pg_roles
    role = str(row["role"])
    # With no database named, libpq and asyncpg use the user's name, as here.
    return MissingDatabase(
        name=database_name(dsn) or role, role=role, may_create=bool(row["may_create"])
    )


def database_name(dsn: str) -> str | None:
    """The database a PostgreSQL URL names (its path, a `dbname`/`database` parameter, or
    PGDATABASE, as asyncpg reads them), or None when it names none."""
    parts = urlsplit(dsn)
    path = unquote(parts.path.lstrip("/"))
    if path:
        return path
    query = parse_qs(parts.query)
    for key in ("dbname", "database"):
        if query.get(key):
            return query[key][-1]
    return os.environ.get("PGDATABASE") or None
