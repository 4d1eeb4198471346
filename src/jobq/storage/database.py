"""Which PostgreSQL to use: the configured one, or the embedded default (SPEC §9).

With `db.dsn` (or `db.host` and friends) set, that server is used as it is. Otherwise an
embedded PostgreSQL in `db.embedded_data_dir` is started, or reused when it already runs; only
the process that started it stops it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import asyncpg

from jobq.config import DbSettings
from jobq.storage.embedded import EmbeddedPostgres

EMBEDDED_DATABASE = "jobq"


@dataclass
class DatabaseHandle:
    """The DSN to connect to and, for the embedded default, the server we may have to stop.

    The DSN may carry a password (the embedded server's always does): it stays out of `repr()`,
    and logs name the database by `description`.
    """

    dsn: str = field(repr=False)
    embedded: EmbeddedPostgres | None = None
    started_here: bool = False

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
    """Resolve the DSN, starting the embedded server (and its `jobq` database) when needed."""
    dsn = settings.resolved_dsn()
    if dsn is not None:
        return DatabaseHandle(dsn=dsn)
    embedded = EmbeddedPostgres(settings.embedded_data_dir)
    started = await asyncio.to_thread(embedded.start)
    await _ensure_database(embedded.dsn(), EMBEDDED_DATABASE)
    return DatabaseHandle(
        dsn=embedded.dsn(EMBEDDED_DATABASE), embedded=embedded, started_here=started
    )


async def _ensure_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # Another jq-server may create it at the same moment.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
