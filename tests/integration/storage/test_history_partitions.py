"""job_events' daily partitions (V23) and the history maintainer: made ahead, refilled from the
default partition, dropped past the retention, never a live job's history.

The clock is moved by passing `now` to the maintainer; the migrated database's partitions were
made for the day it was migrated on (the legacy partition ends the day after, daily ones follow
for a week), so the test writes events on days counted from that day (the `day` fixture, read
per test) and runs the maintainer weeks later.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from support.history_events import events_of, job_with_events
from support.history_events import noon as at
from support.migration_day import Days, days_from_migration

from jobq.domain.history import partition_name
from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob, Success
from jobq.server.history_maintainer import HistoryMaintainer
from jobq.storage.postgres.event_outbox import PgEventOutboxStore
from jobq.storage.postgres.history_partitions import PgHistoryPartitionStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore


@pytest.fixture
async def day(db_dsn: str) -> Days:
    """Days counted from the one V23 made this database's partitions for."""
    return await days_from_migration(db_dsn, "23")


def maintainer(pool: asyncpg.Pool, retention_days: int, owner: str = "a") -> HistoryMaintainer:
    return HistoryMaintainer(
        PgHistoryPartitionStore(pool),
        retention_days=retention_days,
        premake_days=7,
        interval_s=3600,
        owner=owner,
    )


async def partition_names(pool: asyncpg.Pool) -> set[str]:
    return {p.name for p in await PgHistoryPartitionStore(pool).history_partitions()}


async def insert_every_date(pool: asyncpg.Pool, day: Days) -> None:
    """An event far in the past, today and far in the future: none may fail for want of a
    partition (the DEFAULT partition catches what no day's partition holds)."""
    for moment in (at(day(-4000)), datetime.now(UTC), at(day(4000))):
        await pool.execute(
            "INSERT INTO job_events (job_id, to_status, reason, occurred_at)"
            " VALUES (gen_random_uuid(), 'PENDING', 'SUBMITTED', $1)",
            moment,
        )


async def test_the_migration_leaves_a_legacy_partition_a_week_of_days_and_a_default(
    pool: asyncpg.Pool,
    day: Days,
) -> None:
    partitions = await PgHistoryPartitionStore(pool).history_partitions()
    by_name = {p.name: p for p in partitions}
    assert by_name["job_events_legacy"].lower is None
    assert by_name["job_events_legacy"].upper == at(day(1), 0)
    assert by_name["job_events_default"].is_default
    daily = sorted(name for name in by_name if name.startswith("job_events_p"))
    assert daily == [partition_name(day(n)) for n in range(1, 8)]
    for n in range(1, 8):
        p = by_name[partition_name(day(n))]
        assert (p.lower, p.upper) == (at(day(n), 0), at(day(n + 1), 0))


async def test_maintenance_makes_days_ahead_moves_strays_and_drops_only_finished_old_days(
    pool: asyncpg.Pool,
    day: Days,
) -> None:
    jobs = PgJobStore(pool)
    # Through the real statements: one job submitted, claimed and completed now, one left
    # PENDING now (a live job whose SUBMITTED event sits in the legacy partition, or in day 1's
    # when the database's clock has passed midnight since the migration ran).
    [done_today, live_today] = [NewJob(uuid7(), "default", b"{}") for _ in range(2)]
    await jobs.jobs_insert([done_today])
    worker = uuid.uuid4()
    incarnation = (
        await PgWorkerStore(pool).worker_register(worker, "h", 1, ["default"])
    ).incarnation
    [claim] = await jobs.jobs_claim(worker, ["default"], 1, incarnation=incarnation)
    await jobs.jobs_complete(
        [Success(claim.job.job_id, claim.job.attempt, worker, b"null", claim_id=claim.claim_id)]
    )
    await jobs.jobs_insert([live_today])
    live_home = await pool.fetchval(
        "SELECT tableoid::regclass::text FROM job_events WHERE job_id = $1", live_today.job_id
    )
    assert live_home in {"job_events_legacy", partition_name(day(1))}
    # Events on later days: finished jobs on days 2, 5 and 12, a job FAILED awaiting its retry
    # with an event on day 15, finished jobs on days 25 and 100 (12, 15, 25 and 100 have no
    # partition yet: they land in the default partition).
    finished = {n: await job_with_events(pool, "DONE", [day(n)]) for n in (2, 5, 12, 25, 100)}
    retrying = await job_with_events(pool, "FAILED", [day(14), day(15)])
    assert await pool.fetchval("SELECT count(*) FROM job_events_default") == 5
    await insert_every_date(pool, day)

    # Today: the week ahead exists already (the migration made it); the strays get partitions
    # of their own days (the event of 4,000 days ago is in the legacy partition).
    first = await maintainer(pool, retention_days=10).run_once(at(day(0), 1))
    assert first.acted
    assert first.created == [day(n).isoformat() for n in (12, 14, 15, 25, 100, 4000)]
    assert first.moved == 6
    assert first.dropped == []
    assert first.held_back == []
    assert await pool.fetchval("SELECT count(*) FROM job_events_default") == 0

    # Thirty days later, a retention of 10 days: every partition that ended before day 20 noon
    # goes, except those holding an event of an unfinished job.
    before = {job: await events_of(pool, job) for job in (live_today.job_id, retrying)}
    later = maintainer(pool, retention_days=10)
    second = await later.run_once(at(day(30)))
    assert second.acted
    past = {"job_events_legacy"} | {partition_name(day(n)) for n in (1, 2, 3, 4, 5, 6, 7, 12)}
    assert set(second.dropped) == past - {live_home}
    assert set(second.held_back) == {live_home, partition_name(day(14)), partition_name(day(15))}
    assert second.created == [day(n).isoformat() for n in range(30, 38)]
    names = await partition_names(pool)
    assert names >= {
        "job_events_default",
        live_home,  # holds live_today's SUBMITTED event
        partition_name(day(14)),
        partition_name(day(15)),  # the retrying job's
        partition_name(day(25)),  # within the retention
        partition_name(day(100)),
        partition_name(day(4000)),
    }
    assert not names & set(second.dropped)
    for job, ids in before.items():
        assert await events_of(pool, job) == ids, "a live job's history was touched"
    for n in (2, 5, 12):
        assert await events_of(pool, finished[n]) == []
    for n in (25, 100):
        assert len(await events_of(pool, finished[n])) == 1
    stats = await PgHistoryPartitionStore(pool).history_stats()
    assert stats.held_back == 3
    assert stats.partitions == len(names)
    assert stats.default_rows == 0
    assert stats.last_success == at(day(30)).timestamp()
    await insert_every_date(pool, day)

    # Once those jobs have finished, a later run drops what it held back.
    await pool.execute(
        "UPDATE jobs SET status = 'DONE', completed_at = now() WHERE job_id = ANY($1::uuid[])",
        [live_today.job_id, retrying],
    )
    third = await later.run_once(at(day(30), 13))
    assert set(third.dropped) >= {live_home, partition_name(day(14)), partition_name(day(15))}
    assert third.held_back == []
    assert await events_of(pool, retrying) == []
    assert (await PgHistoryPartitionStore(pool).history_stats()).held_back == 0
    await insert_every_date(pool, day)


async def test_without_retention_nothing_is_dropped(pool: asyncpg.Pool, day: Days) -> None:
    old = await job_with_events(pool, "DONE", [day(2)])
    report = await maintainer(pool, retention_days=0).run_once(at(day(400)))
    assert report.dropped == []
    assert len(await events_of(pool, old)) == 1


async def test_one_maintainer_at_a_time(
    replicas: tuple[asyncpg.Pool, asyncpg.Pool], day: Days
) -> None:
    one, two = replicas
    # A replica holding the lease: the other does nothing.
    assert await PgHistoryPartitionStore(one).history_lease("holder", 600)
    skipped = await maintainer(two, retention_days=1, owner="other").run_once(at(day(40)))
    assert not skipped.acted
    assert partition_name(day(40)) not in await partition_names(one)
    await PgHistoryPartitionStore(one).history_abandon("holder")

    # Two at once: each day's partition is made once, by whichever got the lease; no error.
    reports = await asyncio.gather(
        maintainer(one, retention_days=1, owner="one").run_once(at(day(40))),
        maintainer(two, retention_days=1, owner="two").run_once(at(day(40))),
    )
    assert any(r.acted for r in reports)
    made = [name for r in reports for name in r.created]
    assert made == [day(n).isoformat() for n in range(40, 48)]
    dropped = [name for r in reports for name in r.dropped]
    assert len(dropped) == len(set(dropped)) == 8  # legacy and days 1-7


async def test_the_outbox_captures_events_written_into_new_partitions(
    pool: asyncpg.Pool, day: Days
) -> None:
    outbox = PgEventOutboxStore(pool)
    await outbox.capture_set(True)
    await maintainer(pool, retention_days=0).run_once(at(day(20)))  # days 20 to 27 made
    jobs = PgJobStore(pool)
    submitted = NewJob(uuid7(), "default", b"{}")
    await jobs.jobs_insert([submitted])  # today: the legacy partition
    # One statement writing into a daily partition made by the migration, one made by the
    # maintainer, and the default partition.
    later = await job_with_events(pool, "DONE", [day(3), day(21), day(300)])
    events = await outbox.outbox_read(100)
    assert [(e.job_id, e.occurred_us) for e in events] == [
        (str(submitted.job_id), events[0].occurred_us),
        *((str(later), int(at(day(n)).timestamp()) * 1_000_000) for n in (3, 21, 300)),
    ]
    assert all(e.queue_name == "default" for e in events)


async def test_a_locked_history_is_left_for_the_next_run(
    pool: asyncpg.Pool, db_dsn: str, day: Days
) -> None:
    """A long transaction reading job_events holds its lock: the maintainer's DDL gives up after
    its lock timeout instead of queueing every writer behind it, and the next run does it."""
    old = await job_with_events(pool, "DONE", [day(2)])
    await job_with_events(pool, "DONE", [day(50)])  # the default partition's
    store = PgHistoryPartitionStore(pool, ddl_lock_timeout="100ms")
    later = HistoryMaintainer(store, retention_days=10, premake_days=7, interval_s=3600)
    reader = await asyncpg.connect(db_dsn)
    try:
        async with reader.transaction():
            await reader.fetchval("SELECT count(*) FROM job_events")  # its locks stay held
            report = await later.run_once(at(day(30)))
            await insert_every_date(pool, day)  # writers were never queued behind the maintainer
    finally:
        await reader.close()
    assert report.acted
    assert (report.created, report.dropped, report.held_back) == ([], [], [])
    assert set(report.busy) == {day(n).isoformat() for n in [*range(30, 38), 50]} | {
        "job_events_legacy",
        *(partition_name(day(n)) for n in range(1, 8)),
    }
    assert len(await events_of(pool, old)) == 1
    again = await later.run_once(at(day(30)))
    assert again.busy == []
    assert partition_name(day(2)) in again.dropped
    assert await events_of(pool, old) == []


async def test_a_partition_held_back_is_logged_once(
    pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str], day: Days
) -> None:
    await job_with_events(pool, "RUNNING", [day(2)])
    later = maintainer(pool, retention_days=10)
    for _ in range(3):
        report = await later.run_once(at(day(30)))
        assert report.held_back == [partition_name(day(2))]
    assert capsys.readouterr().out.count("history.held_back") == 1
