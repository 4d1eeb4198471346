"""Schema migrations: Flyway-named SQL files applied at start-up under an advisory lock.

Applied files are recorded in a Flyway-compatible `flyway_schema_history` table (same columns,
same CRC32 checksum), so real Flyway can take over in production. A file changed after it was
applied stops start-up: the schema it describes is no longer the schema in the database.

Everything lands in one named schema (`db.schema`, see jobq.storage.pool for the default): the
runner creates the schema when it is missing and sets the session's `search_path` to it, so
the files and the history table name no schema, as with Flyway's `defaultSchema`.
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from jobq.domain.errors import MigrationError
from jobq.storage.pool import DEFAULT_SCHEMA, quote_identifier

_FILE_NAME = re.compile(r"^V(?P<version>\d+(?:[._]\d+)*)__(?P<description>[A-Za-z0-9_ -]+)\.sql$")
# Any constant both runners agree on; this is crc32("jobq.migrations"). One key for every
# schema: installations in two schemas of one database take turns at start-up, which is rare
# and short, and a runner of an older jobq (which knows no schema) still waits for ours.
ADVISORY_LOCK_KEY = zlib.crc32(b"jobq.migrations")

_SCHEMA_EXISTS = "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)"

_CREATE_HISTORY = """
CREATE TABLE IF NOT EXISTS flyway_schema_history (
    installed_rank integer       NOT NULL PRIMARY KEY,
    version        varchar(50),
    description    varchar(200)  NOT NULL,
    type           varchar(20)   NOT NULL,
    script         varchar(1000) NOT NULL,
    checksum       integer,
    installed_by   varchar(100)  NOT NULL,
    installed_on   timestamp     NOT NULL DEFAULT now(),
    execution_time integer       NOT NULL,
    success        boolean       NOT NULL
);
CREATE INDEX IF NOT EXISTS flyway_schema_history_s_idx ON flyway_schema_history (success);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One versioned migration file."""

    version: str
    description: str
    script: str
    checksum: int
    sql: str

    @property
    def version_key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in re.split(r"[._]", self.version))


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a run did: the scripts it applied and those that were applied before."""

    applied: tuple[str, ...]
    already_applied: tuple[str, ...]
    created_schema: bool = False


def default_migrations_dir() -> Path:
    """The packaged migrations in a wheel, else the repository's `db/migrations`."""
    packaged = Path(__file__).with_name("migrations")
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[3] / "db" / "migrations"
    if repo.is_dir():
        return repo
    raise MigrationError("no migrations directory found (looked for the packaged copy and db/)")


def flyway_checksum(text: str) -> int:
    """Flyway's checksum: CRC32 over the UTF-8 bytes of each line without its line break."""
    crc = 0
    for index, line in enumerate(text.splitlines()):
        if index == 0:
            line = line.removeprefix("\ufeff")
        crc = zlib.crc32(line.encode("utf-8"), crc)
    # Flyway stores Java's (int) cast of the unsigned CRC: a signed 32-bit value.
    return crc - (1 << 32) if crc >= (1 << 31) else crc


def load_migrations(directory: Path) -> list[Migration]:
    """The `V{n}__{description}.sql` files of `directory`, in version order."""
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name} is not named V<version>__<description>.sql"
            )
        text = path.read_text(encoding="utf-8")
        migrations.append(
            Migration(
                version=match["version"].replace("_", "."),
                description=match["description"].replace("_", " "),
                script=path.name,
                checksum=flyway_checksum(text),
                sql=text,
            )
        )
    migrations.sort(key=lambda m: m.version_key)
    versions = [m.version_key for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files in {directory} share a version")
    return migrations


async def migrate(
    conn: asyncpg.Connection, directory: Path | None = None, *, schema: str = DEFAULT_SCHEMA
) -> MigrationReport:
    """Apply the pending migrations of `directory` in `schema` on `conn`, each in its own
    transaction. `conn` is left with its `search_path` set to `schema`.

    The session advisory lock makes concurrent runners (several jq-server replicas starting
    together) take turns, from creating the schema on: the second one finds everything in
    place and does nothing.
    """
    migrations = load_migrations(directory or default_migrations_dir())
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        created_schema = await _ensure_schema(conn, schema)
        await conn.execute(f"SET search_path = {quote_identifier(schema)}")
        await _create_history(conn, schema)
        history = await conn.fetch(
            "SELECT version, script, checksum, success FROM flyway_schema_history"
            " WHERE version IS NOT NULL"
        )
        recorded = {row["version"]: row for row in history}
        _check_history(migrations, recorded)
        applied: list[str] = []
        for migration in migrations:
            if migration.version in recorded:
                continue
            await _apply(conn, migration)
            applied.append(migration.script)
        already = tuple(m.script for m in migrations if m.version in recorded)
        return MigrationReport(
            applied=tuple(applied), already_applied=already, created_schema=created_schema
        )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What `migrate` would find in a schema: whether it exists, and the scripts to apply."""

    exists: bool
    pending: tuple[str, ...]


async def schema_state(
    conn: asyncpg.Connection, directory: Path | None = None, *, schema: str = DEFAULT_SCHEMA
) -> SchemaState:
    """What `migrate` would do in `schema`, changing nothing (for `jq-server --dry-run`).
    `conn`'s search_path must be `schema` (jobq.storage.pool.configure_session)."""
    migrations = load_migrations(directory or default_migrations_dir())
    if not await conn.fetchval(_SCHEMA_EXISTS, schema):
        return SchemaState(exists=False, pending=tuple(m.script for m in migrations))
    applied: set[str] = set()
    if await conn.fetchval("SELECT to_regclass('flyway_schema_history')") is not None:
        rows = await conn.fetch(
            "SELECT version FROM flyway_schema_history WHERE success AND version IS NOT NULL"
        )
        applied = {row["version"] for row in rows}
    pending = tuple(m.script for m in migrations if m.version not in applied)
    return SchemaState(exists=True, pending=pending)


async def _ensure_schema(conn: asyncpg.Connection, schema: str) -> bool:
    """Create `schema` unless it exists; True when this call created it.

    Looked up first rather than left to CREATE SCHEMA IF NOT EXISTS, which checks the
    privilege to create schemas even when there is nothing to create: a role given a schema
    made for it by a DBA, without CREATE on the database, must still start.
    """
    if await conn.fetchval(_SCHEMA_EXISTS, schema):
        return False
    try:
        # IF NOT EXISTS all the same: a tool other than jobq (Flyway) does not take our lock.
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
    except asyncpg.InsufficientPrivilegeError:
        raise MigrationError(
            f"schema {quote_identifier(schema)} does not exist and the role may not create it; "
            f"as the database's owner run: CREATE SCHEMA {quote_identifier(schema)} "
            f"AUTHORIZATION {quote_identifier(await conn.fetchval('SELECT current_user'))};"
        ) from None
    return True


async def _create_history(conn: asyncpg.Connection, schema: str) -> None:
    """Create the history table unless it exists (looked up first for the same reason as the
    schema: a role that may not create tables can still start on a schema Flyway migrated)."""
    if await conn.fetchval("SELECT to_regclass('flyway_schema_history')") is not None:
        return
    try:
        await conn.execute(_CREATE_HISTORY)
    except asyncpg.InsufficientPrivilegeError:
        # Typical on PostgreSQL 15+, where only the database's owner may create in `public`.
        role = quote_identifier(await conn.fetchval("SELECT current_user"))
        raise MigrationError(
            f"the role may not create tables in schema {quote_identifier(schema)}; grant it "
            f"(GRANT CREATE ON SCHEMA {quote_identifier(schema)} TO {role};), make the role "
            "the database's owner, or set db.schema to a schema of its own"
        ) from None


def _check_history(migrations: list[Migration], recorded: dict[str, asyncpg.Record]) -> None:
    problems: list[str] = []
    for migration in migrations:
        row = recorded.get(migration.version)
        if row is None:
            continue
        if not row["success"]:
            problems.append(
                f"migration {migration.script} is recorded as failed; repair the database first"
            )
        elif row["checksum"] != migration.checksum:
            problems.append(
                f"migration {migration.script} was changed after it was applied "
                f"(checksum {row['checksum']} in the database, {migration.checksum} on disk); "
                "restore the file and add a new migration instead"
            )
    if problems:
        raise MigrationError("; ".join(problems))


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    started = time.monotonic()
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            elapsed_ms = int((time.monotonic() - started) * 1000)
            await conn.execute(
                """
                INSERT INTO flyway_schema_history (installed_rank, version, description, type,
                    script, checksum, installed_by, execution_time, success)
                SELECT coalesce(max(installed_rank), 0) + 1, $1, $2, 'SQL', $3, $4, current_user,
                       $5, true
                FROM flyway_schema_history
                """,
                migration.version,
                migration.description,
                migration.script,
                migration.checksum,
                elapsed_ms,
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migration {migration.script} failed: {exc}") from exc
