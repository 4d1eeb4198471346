"""What a drain does to PostgreSQL's storage: HOT updates, dead tuples and WAL (issue 21).

Two snapshots, one before a drain and one after it, give:

- `jobs_hot_update_ratio`: n_tup_hot_upd / n_tup_upd of `jobs` (pg_stat_user_tables) over the
  drain. An update is HOT (heap-only) when no indexed column changes and the new row version
  fits on the same page: no index entry is written and the old version can be pruned on the
  page. Today `status` is in the predicates of jobs' partial indexes, so no status change is
  HOT: the ratio is about 0;
- `wal_bytes_per_job`: WAL written over the drain (by every process of the server: the drain's
  statements, and the autovacuum and checkpoints it causes), per job: the difference of
  pg_current_wal_insert_lsn() at the drain's start and end, which is exact and immediate. It
  counts the same bytes as pg_stat_wal.wal_bytes, whose delta is kept beside it as
  `wal_stats_bytes_per_job` (PostgreSQL 14 and later), read after the wait for the table
  counters below (so it may include a little idle-time WAL);
- `drain_table_stats`: per table the drain wrote (rows inserted, updated, HOT-updated, deleted;
  dead tuples at the end; the HOT ratio), to see which table churns.

The cumulative statistics are flushed by each backend, not at once: since PostgreSQL 15 a
backend flushes its counters when it goes idle, at most once a second, and an idle backend
whose last flush was too recent does so after a timeout of 10 s (and at its exit).
pg_stat_force_next_flush() flushes only the calling session's own counters, none of
jq-server's, so it cannot help here. So each snapshot waits until the counters hold every
committed write (`flushed`: the rows of jobs and job_events, counted with count(*), match the
rows the counters say were inserted), the one after the drain also until jobs' updates make at
least two per job; at most 10.5 s (then `drain_stats_settled` is false).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

UPDATES_PER_JOB = (2, 3)
"""Updates of a job's row in a drain, the fewest and the most: claimed (ASSIGNED), then started
(RUNNING) and finished (DONE), in one update when the job's result carries its start (the
worker's reporter sends no separate acknowledgement for a job that ends within its linger)."""

FLUSH_S = 10.5
"""Seconds after which every backend has flushed what it counted before (PostgreSQL's
PGSTAT_IDLE_INTERVAL, 10 s, and a margin): the longest wait for the counters."""

_COUNTERS = ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del", "n_dead_tup")

_TABLES = (
    # A partitioned table's counters are its partitions' (job_events is one partition per day,
    # V23): they are summed under the root's name.
    "SELECT r.relname, sum(s.n_tup_ins) AS n_tup_ins, sum(s.n_tup_upd) AS n_tup_upd,"
    " sum(s.n_tup_hot_upd) AS n_tup_hot_upd, sum(s.n_tup_del) AS n_tup_del,"
    " sum(s.n_dead_tup) AS n_dead_tup"
    " FROM pg_stat_user_tables s"
    " JOIN pg_class r ON r.oid = coalesce(pg_partition_root(s.relid), s.relid)"
    " WHERE s.schemaname = current_schema() GROUP BY r.relname"
)


@dataclass(frozen=True)
class StorageSnapshot:
    """The counters of the tables of the connection's schema, and the WAL position."""

    tables: dict[str, dict[str, int]]
    wal_insert_lsn: int  # bytes since the start of WAL
    wal_stats_bytes: int | None  # pg_stat_wal.wal_bytes (PostgreSQL 14+), else None
    taken_at: float  # time.monotonic()


async def snapshot(conn: asyncpg.Connection) -> StorageSnapshot:
    """The counters now, as far as the backends have flushed them (see the module's doc)."""
    # Outside a transaction each read sees fresh statistics; clear any cached snapshot anyway
    # (stats_fetch_consistency may be set to `snapshot` for the role).
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = await conn.fetch(_TABLES)
    tables = {row["relname"]: {c: int(row[c]) for c in _COUNTERS} for row in rows}
    lsn = await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')")
    wal_stats = None
    if await conn.fetchval("SELECT to_regclass('pg_catalog.pg_stat_wal') IS NOT NULL"):
        wal_stats = int(await conn.fetchval("SELECT wal_bytes FROM pg_stat_wal"))
    return StorageSnapshot(tables, int(lsn), wal_stats, time.monotonic())


async def flushed(conn: asyncpg.Connection, snap: StorageSnapshot) -> bool:
    """Whether `snap` holds every committed write to jobs and job_events: their rows inserted
    less deleted, as counted, reach their rows now. jq-server writes a job's events in the same
    statement as the job's change, so a backend that has flushed one has flushed the other
    (rows inserted and rolled back count too: then this is true a little early)."""
    for table in ("jobs", "job_events"):
        counters = snap.tables.get(table)
        if counters is None:
            continue
        rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
        if counters["n_tup_ins"] - counters["n_tup_del"] < rows:
            return False
    return True


async def settled(conn: asyncpg.Connection, within: float = FLUSH_S) -> StorageSnapshot:
    """The first snapshot that is `flushed` (polled every 100 ms), or the last after `within`
    seconds."""
    deadline = time.monotonic() + within
    while True:
        snap = await snapshot(conn)
        if await flushed(conn, snap) or time.monotonic() > deadline:
            return snap
        await asyncio.sleep(0.1)


async def settled_snapshot(
    conn: asyncpg.Connection, before: StorageSnapshot, end: StorageSnapshot, jobs: int
) -> tuple[StorageSnapshot, bool]:
    """The counters of a drain of `jobs` from `before` to `end` (taken at the drain's end),
    once `flushed` and jobs' updates make at least UPDATES_PER_JOB[0] per job, polled every
    100 ms; (snapshot, settled): not settled if that did not happen within FLUSH_S."""
    fewest = _jobs(before).get("n_tup_upd", 0) + UPDATES_PER_JOB[0] * jobs
    while True:
        now = await snapshot(conn)
        done = _jobs(now).get("n_tup_upd", 0) >= fewest and await flushed(conn, now)
        if done or now.taken_at - end.taken_at > FLUSH_S:
            # WAL up to the drain's end, not the wait's.
            wal = end.wal_insert_lsn
            return StorageSnapshot(now.tables, wal, now.wal_stats_bytes, now.taken_at), done
        await asyncio.sleep(0.1)


def _jobs(snap: StorageSnapshot) -> dict[str, int]:
    return snap.tables.get("jobs", {})


def hot_ratio(updates: int, hot: int) -> float | None:
    """HOT updates per update; None when there was no update."""
    return round(hot / updates, 3) if updates else None


def drain_figures(before: StorageSnapshot, after: StorageSnapshot, jobs: int) -> dict[str, object]:
    """The figures of the module's doc for a drain of `jobs` between two snapshots."""
    tables: dict[str, dict[str, object]] = {}
    for name, counters in sorted(after.tables.items()):
        earlier = before.tables.get(name, dict.fromkeys(_COUNTERS, 0))
        delta = {c: counters[c] - earlier[c] for c in _COUNTERS if c != "n_dead_tup"}
        if not any(delta.values()):
            continue  # a table the drain did not write
        tables[name] = {
            "inserted": delta["n_tup_ins"],
            "updated": delta["n_tup_upd"],
            "hot_updated": delta["n_tup_hot_upd"],
            "deleted": delta["n_tup_del"],
            "dead_tuples_after": counters["n_dead_tup"],
            "hot_update_ratio": hot_ratio(delta["n_tup_upd"], delta["n_tup_hot_upd"]),
        }
    jobs_table = tables.get("jobs", {})
    wal = after.wal_insert_lsn - before.wal_insert_lsn
    figures: dict[str, object] = {
        "jobs_hot_update_ratio": jobs_table.get("hot_update_ratio"),
        "wal_bytes_per_job": round(wal / jobs),
        "wal_stats_bytes_per_job": None
        if after.wal_stats_bytes is None or before.wal_stats_bytes is None
        else round((after.wal_stats_bytes - before.wal_stats_bytes) / jobs),
        "drain_table_stats": tables,
    }
    return figures


async def connect(dsn: str, schema: str | None = None) -> asyncpg.Connection:
    """A connection whose current_schema() is jobq's (`schema`, else the DSN's default)."""
    settings = {"search_path": schema} if schema else {}
    return await asyncpg.connect(dsn, server_settings=settings)


async def snapshot_of(dsn: str, schema: str | None = None, wait: bool = True) -> StorageSnapshot:
    """The snapshot before a drain, on a connection of its own, once the writes before it
    (the submits) are counted (`settled`); with `wait` false, at once (enough for the ratio
    and the WAL: submits only insert)."""
    conn = await connect(dsn, schema)
    try:
        return await (settled(conn) if wait else snapshot(conn))
    finally:
        await conn.close()


async def figures_since(
    dsn: str,
    before: StorageSnapshot,
    jobs: int,
    schema: str | None = None,
    end: StorageSnapshot | None = None,
) -> dict[str, object]:
    """The figures of a drain of `jobs` that began at `before` and ended at `end` (by
    default: now, right after it), once the counters hold it (see settled_snapshot), with
    `drain_stats_settled`."""
    conn = await connect(dsn, schema)
    try:
        end = end or await snapshot(conn)
        after, settled = await settled_snapshot(conn, before, end, jobs)
        figures = drain_figures(before, after, jobs)
    finally:
        await conn.close()
    figures["drain_stats_settled"] = settled
    return figures
