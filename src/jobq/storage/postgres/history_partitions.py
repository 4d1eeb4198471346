"""PostgreSQL storage of the history maintainer: job_events' daily partitions (V23).

Every operation is short and in a transaction of its own, under `lock_timeout` (ddl_steps.py),
so that a long transaction holding job_events makes a step fail (and the next run retry it)
instead of queueing every writer of events behind the maintainer's lock. Partitions are
recognised by their bounds (read from the catalogue), not by their names, so the legacy
partition of V23 and partitions made by hand are handled alike.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg

from jobq.domain.history import (
    LIVE_STATUSES,
    DropOutcome,
    HistoryStats,
    Partition,
    day_start,
    partition_name,
)
from jobq.storage.pool import quote_identifier
from jobq.storage.postgres.ddl_steps import DDL_LOCK_TIMEOUT, StepAbandoned, ddl_step
from jobq.storage.queries import query

TABLE = "job_events"
"""The partitioned history table, and the name of its row in history_maintenance."""

_LIVE = [status.value for status in LIVE_STATUSES]


def _literal(moment: datetime) -> str:
    """A timestamptz literal of a moment the caller computed (never of outside input)."""
    return f"'{moment.astimezone(UTC).isoformat()}'::timestamptz"


def _template(name: str, **values: str) -> str:
    return query(name).format(**values)


def live_partitions_sql() -> str:
    """history_live_partitions with its unfinished jobs filled in: ($1 created before,
    $2 statuses, $3 partition oids)."""
    return _template("history_live_partitions", unfinished=query("history_unfinished_jobs"))


def detached_live_sql(partition: str) -> str:
    """history_detached_live of the detached `partition` (a name), its unfinished jobs filled
    in: ($1 created before, $2 statuses)."""
    return _template(
        "history_detached_live",
        partition=quote_identifier(partition),
        unfinished=query("history_unfinished_jobs"),
    )


class PgHistoryPartitionStore:
    def __init__(self, pool: asyncpg.Pool, *, ddl_lock_timeout: str = DDL_LOCK_TIMEOUT) -> None:
        self._pool = pool
        self._lock_timeout = ddl_lock_timeout

    async def history_partitions(self) -> list[Partition]:
        """job_events' partitions, the bounded ones oldest first, the default one last."""
        rows = await self._pool.fetch(query("history_partitions"))
        return [
            Partition(r["oid"], r["name"], r["lower"], r["upper"], r["is_default"]) for r in rows
        ]

    async def history_default_days(self) -> list[date]:
        """The UTC days of the rows sitting in the default partition."""
        rows = await self._pool.fetch(query("history_default_days"))
        return [row["day"].astimezone(UTC).date() for row in rows]

    async def history_partition_create(self, day: date, name: str | None = None) -> int | None:
        """Make `day`'s partition (named `name`, default partition_name(day)), moving into it
        the day's rows that landed in the default partition; returns how many moved, or None
        when a lock was not granted in time or pg_partman's own maintenance made the table
        meanwhile (nothing changed; the next run looks again). Made as a table and then
        attached, so job_events stays readable and writable meanwhile."""
        name = name or partition_name(day)
        lower, upper = day_start(day), day_start(day + timedelta(days=1))
        values = {
            "partition": quote_identifier(name),
            "constraint": quote_identifier(f"{name}_range"),
            "lower": _literal(lower),
            "upper": _literal(upper),
        }
        try:
            async with ddl_step(self._pool, self._lock_timeout) as conn:
                await conn.execute(_template("history_partition_new", **values))
                await conn.execute(query("history_default_lock"))
                status = await conn.execute(_template("history_partition_fill", **values))
                await conn.execute(_template("history_partition_check", **values))
                await conn.execute(_template("history_partition_attach", **values))
                await conn.execute(_template("history_partition_uncheck", **values))
        except (asyncpg.LockNotAvailableError, asyncpg.DuplicateTableError):
            return None
        return int(status.split()[-1])

    async def history_live_partitions(self, partitions: list[Partition]) -> set[int]:
        """The oids of those of `partitions` that hold an event of an unfinished job."""
        uppers = [p.upper for p in partitions if p.upper is not None]
        if not partitions or not uppers:
            return set()
        created_before = max(uppers) + timedelta(days=1)  # clock skew between replicas
        rows = await self._pool.fetch(
            live_partitions_sql(), created_before, _LIVE, [p.oid for p in partitions]
        )
        return {row["oid"] for row in rows}

    async def history_partition_drop(self, partition: Partition) -> DropOutcome:
        """Detach and drop `partition` unless, checked again under the detach's lock, it holds
        an event of an unfinished job ("live"), or the lock was not granted in time ("busy":
        nothing changed, the next run tries again)."""
        assert partition.upper is not None
        assert not partition.is_default
        values = {"partition": quote_identifier(partition.name)}
        try:
            async with ddl_step(self._pool, self._lock_timeout) as conn:
                await conn.execute(_template("history_partition_detach", **values))
                live = await conn.fetchval(
                    detached_live_sql(partition.name),
                    partition.upper + timedelta(days=1),
                    _LIVE,
                )
                if live:
                    raise StepAbandoned
                await conn.execute(_template("history_partition_drop", **values))
        except asyncpg.LockNotAvailableError:
            return "busy"
        except StepAbandoned:
            return "live"
        return "dropped"

    async def history_lease(self, owner: str, seconds: float) -> bool:
        """Take or renew the maintainer's lease; False: another replica holds it."""
        name = await self._pool.fetchval(query("history_lease"), TABLE, owner, float(seconds))
        return name is not None

    async def history_release(self, owner: str, succeeded_at: datetime, held_back: int) -> None:
        """Record a successful run and give the lease back."""
        await self._pool.execute(query("history_release"), TABLE, owner, succeeded_at, held_back)

    async def history_abandon(self, owner: str) -> None:
        """Give the lease back after a failed run."""
        await self._pool.execute(query("history_abandon"), TABLE, owner)

    async def history_stats(self) -> HistoryStats:
        """What /metrics shows about the history's partitions."""
        row = await self._pool.fetchrow(query("history_stats"), TABLE)
        assert row is not None, "history_maintenance has no job_events row (V23)"
        return HistoryStats(
            partitions=row["partitions"],
            default_rows=row["default_rows"],
            held_back=row["held_back"],
            last_success=row["last_success"],
        )
