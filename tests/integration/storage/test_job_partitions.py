"""jobs' daily partitions by job id (V24) and the history maintainer's work on them: made ahead,
made from the default partition with finished jobs only, dropped past the retention, never a
live job touched; keys, ticks and edges go with a dropped day.

Job ids are made for chosen days (a UUIDv7 carries its moment), and the clock is moved by
passing `now` to the maintainer: the migrated database's partitions were made for the day it
was migrated on and the week after it, so days are counted from that day (the `day` fixture,
read per test).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time

import asyncpg
import pytest
from support.job_ids import uuid7_at
from support.migration_day import Days, days_from_migration
from support.side_tables import assert_side_tables_match

from jobq.domain import shards
from jobq.domain.history import job_id_floor, job_id_moment, job_partition_name
from jobq.domain.records import NewJob
from jobq.domain.shards import shard_of
from jobq.server.history_maintainer import HistoryMaintainer
from jobq.server.job_partition_maintainer import JobPartitionMaintainer
from jobq.storage.postgres.history_partitions import PgHistoryPartitionStore
from jobq.storage.postgres.job_partitions import PgJobPartitionStore
from jobq.storage.postgres.jobs import PgJobStore


@pytest.fixture
async def day(db_dsn: str) -> Days:
    """Days counted from the one V24 made this database's partitions for."""
    return await days_from_migration(db_dsn, "24")


def at(d: date, hour: int = 12) -> datetime:
    return datetime.combine(d, time(hour), tzinfo=UTC)


def uuid7_on_shard(moment: datetime, shard: int) -> uuid.UUID:
    """A UUIDv7 of `moment` on `shard` (of the shard count in force)."""
    while shard_of(job_id := uuid7_at(moment)) != shard:
        pass
    return job_id


def maintainer(pool: asyncpg.Pool, retention_days: int) -> HistoryMaintainer:
    return HistoryMaintainer(
        PgHistoryPartitionStore(pool),
        retention_days=retention_days,
        premake_days=7,
        interval_s=3600,
        owner="test",
        jobs=JobPartitionMaintainer(
            PgJobPartitionStore(pool), retention_days=retention_days, premake_days=7
        ),
    )


async def submit(pool: asyncpg.Pool, job_id: uuid.UUID, key: str | None = None) -> uuid.UUID:
    """Submit through the real statement; returns the id of the job that holds it."""
    [made] = await PgJobStore(pool).jobs_insert(
        [NewJob(job_id, "default", b"{}", idempotency_key=key)]
    )
    return made.job_id


async def finish(pool: asyncpg.Pool, *job_ids: uuid.UUID) -> None:
    await pool.execute(
        "UPDATE jobs SET status = 'DONE', completed_at = now() WHERE job_id = ANY($1::uuid[])",
        list(job_ids),
    )


async def partition_of(pool: asyncpg.Pool, job_id: uuid.UUID) -> str | None:
    name: str | None = await pool.fetchval(
        "SELECT tableoid::regclass::text FROM jobs WHERE job_id = $1", job_id
    )
    return name


async def job_partition_names(pool: asyncpg.Pool) -> set[str]:
    return {p.name for p in await PgJobPartitionStore(pool).job_partitions()}


async def insert_every_id(pool: asyncpg.Pool, day: Days) -> None:
    """A job of long ago, of now, of far ahead and a random (v4) one: none may fail for want
    of a partition (the default partition takes what no day's partition holds). Finished at
    once, so that they keep no partition from being dropped."""
    made = [uuid7_at(at(day(-4000))), uuid7_at(datetime.now(UTC)), uuid7_at(at(day(4000)))]
    for job_id in (*made, uuid.uuid4()):
        assert await submit(pool, job_id) == job_id
    await finish(pool, *made)


async def test_the_migration_makes_today_and_a_week_ahead_and_keeps_the_default(
    pool: asyncpg.Pool,
    day: Days,
) -> None:
    partitions = await PgJobPartitionStore(pool).job_partitions()
    by_name = {p.name: p for p in partitions}
    assert by_name["jobs_legacy"].is_default
    daily = sorted(name for name in by_name if name != "jobs_legacy")
    assert daily == [job_partition_name(day(n)) for n in range(8)]
    for n in range(8):
        p = by_name[job_partition_name(day(n))]
        assert (p.lower, p.upper) == (job_id_floor(at(day(n), 0)), job_id_floor(at(day(n + 1), 0)))
    fillfactors = await pool.fetch(
        "SELECT c.relname, c.reloptions FROM pg_partition_tree('jobs') t"
        " JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf"
    )
    assert all("fillfactor=35" in (r["reloptions"] or []) for r in fillfactors), fillfactors
    # a job id of now lands in today's partition, a v4 id in the default one
    now_id, v4 = uuid7_at(datetime.now(UTC)), uuid.uuid4()
    await submit(pool, now_id)
    await submit(pool, v4)
    assert await partition_of(pool, now_id) == job_partition_name(job_id_moment(now_id).date())
    assert await partition_of(pool, v4) in {"jobs_legacy"} | {
        job_partition_name(day(n))
        for n in range(8)  # a random id may fall into a day
    }


async def test_old_days_are_dropped_except_one_holding_a_live_job(
    pool: asyncpg.Pool, day: Days
) -> None:
    # Three jobs on each of the days 0 to 4, all finished but one PENDING job of day 1.
    ids = {n: [uuid7_at(at(day(n), h)) for h in (1, 12, 23)] for n in range(5)}
    keyed = ids[0][0]
    live = ids[1][1]
    await submit(pool, keyed, key="old-key")
    await submit(pool, live, key="live-key")
    for day_ids in ids.values():
        for job_id in day_ids:
            if job_id not in (keyed, live):
                await submit(pool, job_id)
    await finish(pool, *(j for day_ids in ids.values() for j in day_ids if j != live))
    # a dependency edge and a schedule tick of a job of day 2 (both go with the day)
    await pool.execute(
        "INSERT INTO job_dependencies (job_id, depends_on) VALUES ($1, $2)", ids[2][1], ids[2][0]
    )
    await pool.execute(
        "INSERT INTO job_schedule_ticks (schedule_name, schedule_tick, job_id)"
        " VALUES ('nightly', $1, $2)",
        at(day(2)),
        ids[2][2],
    )
    legacy_done = uuid.uuid4()
    await submit(pool, legacy_done)
    await finish(pool, legacy_done)
    await insert_every_id(pool, day)
    live_events = await pool.fetch("SELECT * FROM job_events WHERE job_id = $1", live)
    assert live_events
    assert {await partition_of(pool, j) for j in ids[1]} == {job_partition_name(day(1))}

    # Forty days later with a retention of 30: every day partition that ended before day 10
    # noon goes, but day 1's, which holds the PENDING job; the days ahead are made.
    report = await maintainer(pool, retention_days=30).run_once(at(day(40)))
    assert report.acted
    assert report.jobs is not None
    assert set(report.jobs.dropped) == {job_partition_name(day(n)) for n in (0, 2, 3, 4, 5, 6, 7)}
    assert report.jobs.held_back == [job_partition_name(day(1))]
    assert report.jobs.created == [day(n).isoformat() for n in range(40, 48)]
    assert report.jobs.unpartitioned == []
    names = await job_partition_names(pool)
    assert names == {"jobs_legacy", job_partition_name(day(1))} | {
        job_partition_name(day(n)) for n in range(40, 48)
    }

    # The live job and its history are intact, and its key still holds.
    assert await pool.fetchval("SELECT status::text FROM jobs WHERE job_id = $1", live) == (
        "PENDING"
    )
    assert await pool.fetch("SELECT * FROM job_events WHERE job_id = $1", live) == live_events
    assert await submit(pool, uuid7_at(datetime.now(UTC)), key="live-key") == live
    # The dropped jobs are gone with their key (free again), edge and tick.
    gone = [j for n in (0, 2, 3, 4) for j in ids[n]]
    assert await pool.fetchval("SELECT count(*) FROM jobs WHERE job_id = ANY($1)", gone) == 0
    # an id of day 0, whose partition is gone: the job (PENDING) lands in the default
    # partition, not in day 1's, which the next run drops (an id of the clock's now would land
    # there once the clock has passed midnight since the migration)
    fresh = uuid7_at(at(day(0)))
    assert await submit(pool, fresh, key="old-key") == fresh
    assert await pool.fetchval("SELECT count(*) FROM job_dependencies") == 0
    assert await pool.fetchval("SELECT count(*) FROM job_schedule_ticks") == 0
    # The default partition is never dropped: a finished legacy job stays.
    assert await partition_of(pool, legacy_done) is not None
    stats = await PgJobPartitionStore(pool).job_history_stats()
    assert stats == (len(names), 1, at(day(40)).timestamp())
    await insert_every_id(pool, day)
    await assert_side_tables_match(pool)

    # Once it has finished, a later run drops what it held back.
    await finish(pool, live)
    later = await maintainer(pool, retention_days=30).run_once(at(day(40), 13))
    assert later.jobs is not None
    assert later.jobs.dropped == [job_partition_name(day(1))]
    assert later.jobs.held_back == []
    assert await partition_of(pool, live) is None
    await assert_side_tables_match(pool)


async def test_days_in_the_default_get_a_partition_only_with_finished_jobs(
    pool: asyncpg.Pool,
    day: Days,
) -> None:
    """The maintainer was away longer than it premakes: jobs of days 12 and 13 sit in the
    default partition. Day 12's (finished) move into a partition of their own; day 13 holds a
    live job, which is never moved: the day stays in the default partition until it finished."""
    done_12 = [uuid7_at(at(day(12), h)) for h in (3, 9)]
    done_13, live_13 = uuid7_at(at(day(13), 2)), uuid7_at(at(day(13), 5))
    for job_id in (*done_12, done_13, live_13):
        await submit(pool, job_id)
    await finish(pool, *done_12, done_13)
    assert {await partition_of(pool, j) for j in (*done_12, live_13)} == {"jobs_legacy"}

    report = await maintainer(pool, retention_days=0).run_once(at(day(20)))
    assert report.jobs is not None
    assert report.jobs.created == [day(12).isoformat()] + [
        day(n).isoformat() for n in range(20, 28)
    ]
    assert report.jobs.moved == 2
    assert report.jobs.unpartitioned == [day(13).isoformat()]
    assert report.jobs.dropped == []
    assert {await partition_of(pool, j) for j in done_12} == {job_partition_name(day(12))}
    assert await partition_of(pool, live_13) == "jobs_legacy"
    assert (await PgJobPartitionStore(pool).job_history_stats())[1] == 1
    await assert_side_tables_match(pool)

    await finish(pool, live_13)
    again = await maintainer(pool, retention_days=0).run_once(at(day(20), 13))
    assert again.jobs is not None
    assert again.jobs.created == [day(13).isoformat()]
    assert again.jobs.moved == 2
    assert {await partition_of(pool, j) for j in (done_13, live_13)} == {
        job_partition_name(day(13))
    }
    await insert_every_id(pool, day)


async def test_a_drop_waits_no_longer_than_its_lock_timeout(
    pool: asyncpg.Pool, db_dsn: str, day: Days
) -> None:
    """A long transaction reading jobs: the detach is not granted its lock within the short
    lock timeout and is left for the next run, nothing changed; the claim path is not queued
    behind it for longer than that."""
    old = uuid7_at(at(day(1)))
    await submit(pool, old)
    await finish(pool, old)
    reader = await asyncpg.connect(db_dsn)
    try:
        transaction = reader.transaction()
        await transaction.start()
        await reader.fetchval("SELECT count(*) FROM jobs")  # holds ACCESS SHARE until the end
        report = await asyncio.wait_for(
            maintainer(pool, retention_days=30).run_once(at(day(60))), 30
        )
        await transaction.rollback()
    finally:
        await reader.close()
    assert report.jobs is not None
    assert job_partition_name(day(1)) in report.jobs.busy
    assert job_partition_name(day(1)) not in report.jobs.dropped
    assert await partition_of(pool, old) == job_partition_name(day(1))
    # the next run, unhindered, drops it
    later = await maintainer(pool, retention_days=30).run_once(at(day(60), 13))
    assert later.jobs is not None
    assert job_partition_name(day(1)) in later.jobs.dropped


async def test_a_dropped_day_frees_the_keys_and_ticks_of_every_shard(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch, day: Days
) -> None:
    """With four shards a day's keyed jobs sit on every shard, and a key is unique per shard
    (job_idempotency_keys' primary key is (shard, key), V24/V25): dropping the day frees each
    shard's keys and ticks, not only shard 0's, or a key stays taken by a job that is gone."""
    count = 4
    monkeypatch.setattr(shards, "SHARD_COUNT", count)
    old = {s: uuid7_on_shard(at(day(2), 3 + s), s) for s in range(count)}
    for s, job_id in old.items():
        assert await submit(pool, job_id, key=f"key-{s}") == job_id
        await pool.execute(
            "INSERT INTO job_schedule_ticks (shard, schedule_name, schedule_tick, job_id)"
            " VALUES ($1, 'nightly', $2, $3)",
            s,
            at(day(2), 3 + s),
            job_id,
        )
    await finish(pool, *old.values())
    for table in ("job_idempotency_keys", "job_schedule_ticks"):
        rows = await pool.fetch(f"SELECT shard FROM {table}")
        assert sorted(r["shard"] for r in rows) == list(range(count)), table

    report = await maintainer(pool, retention_days=30).run_once(at(day(40)))
    assert report.jobs is not None
    assert job_partition_name(day(2)) in report.jobs.dropped
    assert (
        await pool.fetchval("SELECT count(*) FROM jobs WHERE job_id = ANY($1)", list(old.values()))
        == 0
    )
    for table in ("job_idempotency_keys", "job_schedule_ticks"):
        left = await pool.fetch(f"SELECT shard, job_id FROM {table}")
        assert left == [], f"{table} keeps rows of dropped jobs: {left}"
    # each key is free again: a new job on the key's shard takes it
    for s in range(count):
        fresh = uuid7_on_shard(datetime.now(UTC), s)
        assert await submit(pool, fresh, key=f"key-{s}") == fresh
