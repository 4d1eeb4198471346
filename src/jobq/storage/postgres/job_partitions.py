"""PostgreSQL storage of the history maintainer's work on jobs: its daily partitions by job id
(db/migrations/V24).

Every DDL step is short and in a transaction of its own, under a short `lock_timeout`
(storage/postgres/ddl_steps.py): DETACH takes ACCESS EXCLUSIVE on jobs and ATTACH takes it on
the default partition. A step that is not granted its lock in time changes nothing and is
tried again by the next run. Partitions are recognised by their bounds (read
from the catalogue), not by their names.
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import asyncpg

from jobq.domain.history import (
    CreateOutcome,
    DropOutcome,
    JobPartition,
    job_day_bounds,
    job_partition_name,
)
from jobq.domain.shards import every_shard
from jobq.storage.pool import quote_identifier
from jobq.storage.postgres.ddl_steps import DDL_LOCK_TIMEOUT, StepAbandoned, ddl_step
from jobq.storage.queries import query


def _uuid(value: UUID) -> str:
    """A uuid literal of a bound the caller computed (never of outside input)."""
    return f"'{value}'::uuid"


class PgJobPartitionStore:
    def __init__(self, pool: asyncpg.Pool, *, ddl_lock_timeout: str = DDL_LOCK_TIMEOUT) -> None:
        self._pool = pool
        self._lock_timeout = ddl_lock_timeout

    async def job_partitions(self) -> list[JobPartition]:
        """jobs' partitions, the bounded ones in id order, the default one last."""
        rows = await self._pool.fetch(query("job_partitions"))
        return [JobPartition(r["oid"], r["name"], r["lower"], r["upper"]) for r in rows]

    async def job_default_has_rows(self, default: JobPartition, lower: UUID, upper: UUID) -> bool:
        """Whether the default partition holds a job with an id in [lower, upper)."""
        sql = query("job_default_has_rows").format(default=quote_identifier(default.name))
        return bool(await self._pool.fetchval(sql, lower, upper))

    async def job_partition_create(
        self, day: date, default: JobPartition
    ) -> tuple[CreateOutcome, int]:
        """Make `day`'s partition, moving into it the day's finished jobs that sit in the
        default partition; returns the outcome and how many moved. Not made ("live") when a
        live job of the day sits in the default partition, or ("busy") when a lock was not
        granted in time: nothing changed either way."""
        lower, upper = job_day_bounds(day)
        name = job_partition_name(day)
        values = {
            "partition": quote_identifier(name),
            "default": quote_identifier(default.name),
            "constraint": quote_identifier(f"{name}_range"),
            "lower": _uuid(lower),
            "upper": _uuid(upper),
        }
        try:
            async with ddl_step(self._pool, self._lock_timeout) as conn:
                await conn.execute(query("job_partition_new").format(**values))
                await conn.execute(query("job_default_lock").format(**values))
                live = await conn.fetchval(query("job_default_live").format(**values), lower, upper)
                if live:
                    raise StepAbandoned
                status = await conn.execute(query("job_partition_fill").format(**values))
                await conn.execute(query("job_partition_check").format(**values))
                await conn.execute(query("job_partition_attach").format(**values))
                await conn.execute(query("job_partition_uncheck").format(**values))
        except asyncpg.LockNotAvailableError:
            return "busy", 0
        except StepAbandoned:
            return "live", 0
        return "created", int(status.split()[-1])

    async def job_partition_live(self, partition: JobPartition) -> bool:
        """Whether `partition` holds a live job: one with a side-table row or an unannounced
        enqueue (index ranges), or one resting in FAILED (a scan of the partition)."""
        assert partition.lower is not None
        assert partition.upper is not None
        if await self._pool.fetchval(query("job_range_live"), partition.lower, partition.upper):
            return True
        sql = query("job_partition_failed").format(partition=quote_identifier(partition.name))
        return bool(await self._pool.fetchval(sql))

    async def job_partition_drop(self, partition: JobPartition) -> DropOutcome:
        """Forget the keys, ticks and dependency edges of `partition`'s jobs, detach and drop
        it, in one transaction: unless, checked again under the detach's lock, a job of it is
        live ("live"; a RetryJob since the first check), or the lock was not granted in time
        ("busy"). Nothing changes in either case. The forgetting comes first, so that jobs is
        locked only for the catalogue change and the re-check (index probes)."""
        assert partition.lower is not None
        assert partition.upper is not None
        values = {"partition": quote_identifier(partition.name)}
        try:
            async with ddl_step(self._pool, self._lock_timeout) as conn:
                await conn.execute(
                    query("job_range_forget"), partition.lower, partition.upper, every_shard()
                )
                await conn.execute(query("job_partition_detach").format(**values))
                live = await conn.fetchval(
                    query("job_range_live"), partition.lower, partition.upper
                )
                if live:
                    raise StepAbandoned
                await conn.execute(query("job_partition_drop").format(**values))
        except asyncpg.LockNotAvailableError:
            return "busy"
        except StepAbandoned:
            return "live"
        return "dropped"

    async def job_history_record(self, succeeded_at: datetime, held_back: int) -> None:
        """Record what a run found for jobs (its lease is job_events')."""
        await self._pool.execute(query("job_history_record"), succeeded_at, held_back)

    async def job_history_stats(self) -> tuple[int, int, float | None]:
        """(partitions, held back by the last run, last success in epoch seconds)."""
        row = await self._pool.fetchrow(query("job_history_stats"))
        assert row is not None, "history_maintenance has no jobs row (V24)"
        return row["partitions"], row["held_back"], row["last_success"]
