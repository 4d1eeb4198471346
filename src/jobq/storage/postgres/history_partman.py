"""PostgreSQL storage of the history maintainer's use of pg_partman (issue 21): registering
job_events with the extension and running its maintenance of job_events.

Each step is one transaction under the maintainer's short `lock_timeout` (ddl_steps.py) and in
UTC (pg_partman names and bounds partitions in the session's time zone). A step that cannot get
its lock reports "busy" and changes nothing; one that PostgreSQL refuses (jobq's role lacks a
privilege on pg_partman's schema, a pg_partman that behaves otherwise) reports "failed" with
PostgreSQL's message, and the maintainer keeps the partitions itself meanwhile.
"""

from __future__ import annotations

from datetime import date

import asyncpg

from jobq.domain.history import PartmanOutcome, PartmanState
from jobq.storage.pool import quote_identifier
from jobq.storage.postgres.ddl_steps import DDL_LOCK_TIMEOUT, StepAbandoned, ddl_step
from jobq.storage.queries import query


def _failed(error: asyncpg.PostgresError) -> PartmanOutcome:
    """PostgreSQL's one-line message (its DETAIL and HINT lines left out of the log)."""
    first = str(error).splitlines()[0] if str(error) else ""
    return "failed", f"{type(error).__name__}: {first}"


class PgHistoryPartmanStore:
    def __init__(self, pool: asyncpg.Pool, *, ddl_lock_timeout: str = DDL_LOCK_TIMEOUT) -> None:
        self._pool = pool
        self._lock_timeout = ddl_lock_timeout

    async def partman_state(self) -> PartmanState | None:
        """pg_partman in this database and job_events' registration; None: not installed."""
        async with self._pool.acquire() as conn:
            installed = await conn.fetchrow(query("partman_installed"))
            if installed is None:
                return None
            parent: str = await conn.fetchval(query("partman_parent"))
            try:
                row = await conn.fetchrow(self._sql("partman_config", installed["schema"]), parent)
            except asyncpg.PostgresError:  # no access to part_config: registered or not, unusable
                row = None
        return PartmanState(
            schema=installed["schema"],
            version=installed["version"],
            registered=row is not None,
            interval=row["interval"] if row is not None else None,
            day_format=row["datetime_string"] if row is not None else None,
        )

    async def partman_register(
        self, state: PartmanState, premake_days: int, start: date, renames: list[tuple[str, str]]
    ) -> PartmanOutcome:
        """Register job_events with pg_partman, in one transaction: the day partitions renamed
        (`renames`: (name, new name)) to its spelling, jobq's empty default partition replaced
        by its own, create_parent from `start`, and the retention left to jobq. "busy": a lock
        was not granted in time or the default partition holds rows (the maintainer moves them
        out first; some arrived since); nothing changed either way."""
        schema = state.schema
        try:
            async with ddl_step(self._pool, self._lock_timeout) as conn:
                await conn.execute(query("partman_utc"))
                parent: str = await conn.fetchval(query("partman_parent"))
                for name, new_name in renames:
                    await conn.execute(
                        query("partman_rename").format(
                            partition=quote_identifier(name), name=quote_identifier(new_name)
                        )
                    )
                await conn.execute(query("partman_default_detach"))
                if not await conn.fetchval(query("partman_default_empty")):
                    raise StepAbandoned
                await conn.execute(query("partman_default_drop"))
                await conn.fetchval(
                    self._sql("partman_register", schema), parent, premake_days, start.isoformat()
                )
                await conn.execute(query("partman_default_ensure"))
                await conn.execute(self._sql("partman_configure", schema), parent, premake_days)
        except (asyncpg.LockNotAvailableError, StepAbandoned):
            return "busy", ""
        except asyncpg.PostgresError as error:
            return _failed(error)
        return "done", ""

    async def partman_maintain(self, state: PartmanState, premake_days: int) -> PartmanOutcome:
        """pg_partman's run_maintenance of job_events alone (it premakes the days ahead),
        after keeping its premake equal to jobq's `premake_days` and its retention off."""
        try:
            async with ddl_step(self._pool, self._lock_timeout) as conn:
                await conn.execute(query("partman_utc"))
                parent: str = await conn.fetchval(query("partman_parent"))
                await conn.execute(
                    self._sql("partman_configure", state.schema), parent, premake_days
                )
                await conn.execute(self._sql("partman_maintain", state.schema), parent)
        except asyncpg.LockNotAvailableError:
            return "busy", ""
        except asyncpg.PostgresError as error:
            return _failed(error)
        return "done", ""

    @staticmethod
    def _sql(name: str, schema: str) -> str:
        return query(name).format(partman=quote_identifier(schema))
