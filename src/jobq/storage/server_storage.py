"""What jq-server needs of PostgreSQL before it serves: the database chosen and reachable (the
embedded one by default), no transaction pooler in between, a supported server version, the
schema brought up to date, and its two pools (general and claims)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from jobq.config import DbSettings
from jobq.domain.errors import Unavailable
from jobq.observability.logging_setup import get_logger
from jobq.storage.database import DatabaseHandle, open_database
from jobq.storage.migrations import migrate
from jobq.storage.pool import configure_session, create_claim_pool, create_pool
from jobq.storage.pooler_check import require_session_pooling
from jobq.storage.server_version import require_supported

log = get_logger("jobq.server")


@dataclass
class ServerStorage:
    database: DatabaseHandle
    pool: asyncpg.Pool
    claim_pool: asyncpg.Pool


async def open_database_for_server(db: DbSettings) -> DatabaseHandle:
    """Choose and reach the database, check what stands between (a pooler) and its version,
    migrate the schema. The caller closes the handle (it may stop an embedded server)."""
    database = await open_database(db)
    # Before migrations: a transaction pooler would break them (see pooler_check).
    await require_session_pooling(database.dsn, timeout_s=db.connect_timeout_s)
    log.info(
        "using " + database.description,
        action="db.selected",
        embedded=database.embedded is not None,
        created_database=database.created_database,
    )
    await _migrate(database.dsn, db)
    return database


async def open_pools(database: DatabaseHandle, db: DbSettings) -> ServerStorage:
    try:
        pool = await create_pool(
            database.dsn,
            schema=db.schema,
            min_size=db.pool_min_size,
            max_size=db.pool_max_size,
            connect_timeout_s=db.connect_timeout_s,
            command_timeout_s=db.command_timeout_s,
        )
        claim_pool = await create_claim_pool(
            database.dsn, schema=db.schema, connect_timeout_s=db.connect_timeout_s
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise Unavailable(f"cannot reach PostgreSQL: {exc}") from None
    return ServerStorage(database, pool, claim_pool)


async def _migrate(dsn: str, db: DbSettings) -> None:
    """Check the server's version, then bring `db.schema` up to date."""
    try:
        conn = await asyncpg.connect(dsn, timeout=db.connect_timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise Unavailable(f"cannot reach PostgreSQL: {exc}") from None
    try:
        # The version first: an unsupported server may not even know the session settings.
        version = await require_supported(conn)
        if version.warning():
            log.warning(version.warning(), action="db.version_untested")
        await configure_session(conn, db.schema)
        report = await migrate(conn, schema=db.schema)
    finally:
        await conn.close()
    log.info(
        "schema up to date",
        action="db.migrated",
        server_version=version.short,
        schema=db.schema,
        created_schema=report.created_schema,
        applied=list(report.applied),
        already_applied=len(report.already_applied),
    )
