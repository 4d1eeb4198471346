"""Schema migrations: Flyway-named SQL files applied at start-up under an advisory lock.

Applied files are recorded in a Flyway-compatible `flyway_schema_history` table (same columns,
same CRC32 checksum), so real Flyway can take over in production. A file changed after it was
applied stops start-up: the schema it describes is no longer the schema in the database.
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from jobq.domain.errors import MigrationError

_FILE_NAME = re.compile(r"^V(?P<version>\d+(?:[._]\d+)*)__(?P<description>[A-Za-z0-9_ -]+)\.sql$")
# Any constant both runners agree on; this is crc32("jobq.migrations").
ADVISORY_LOCK_KEY = zlib.crc32(b"jobq.migrations")

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


async def migrate(conn: asyncpg.Connection, directory: Path | None = None) -> MigrationReport:
    """Apply the pending migrations of `directory` on `conn`, each in its own transaction.

    The session advisory lock makes concurrent runners (several jq-server replicas starting
    together) take turns: the second one finds everything applied and does nothing.
    """
    migrations = load_migrations(directory or default_migrations_dir())
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(_CREATE_HISTORY)
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
        return MigrationReport(applied=tuple(applied), already_applied=already)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)


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
