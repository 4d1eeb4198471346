"""The day a test database's time partitions were made for: the day its migrations ran.

V23 and V24 make the history's first daily partitions for the day they run on and the week
after it. The test databases are clones of a template migrated once per test session, so a
test that counts days must count from that day, read here per test, not from the clock's
today (a session that crosses midnight UTC would expect the next day's partitions) nor from a
date computed when its module was imported.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import asyncpg

Days = Callable[[int], date]
"""A day counted from the migration's: days(0) is the day it ran on, days(1) the next."""


async def migrated_on(db_dsn: str, version: str) -> date:
    """The UTC day on which migration `version` ran in the database of `db_dsn` (in its
    template). flyway_schema_history.installed_on is the migration transaction's now() as a
    timestamp without time zone in the migrating session's TimeZone: read back in a session of
    the same server default."""
    conn = await asyncpg.connect(db_dsn)
    try:
        installed: datetime | None = await conn.fetchval(
            "SELECT installed_on AT TIME ZONE current_setting('TimeZone')"
            " FROM flyway_schema_history WHERE version = $1",
            version,
        )
    finally:
        await conn.close()
    assert installed is not None, f"migration {version} has not run in this database"
    return installed.astimezone(UTC).date()


async def days_from_migration(db_dsn: str, version: str) -> Days:
    """Days counted from the day migration `version` ran on in the database of `db_dsn`."""
    today = await migrated_on(db_dsn, version)
    return lambda offset: today + timedelta(days=offset)
