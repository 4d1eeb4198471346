"""job_events' daily partitions kept by pg_partman when the extension is installed (issue 21):
the history maintainer registers the table with it once (the day partitions renamed to its
spelling, its own default partition, create_parent), lets its run_maintenance premake the days,
and keeps the retention itself: old days dropped, never a live job's history.

On the distribution's PostgreSQL only (`make test-system-pg`): Debian's postgresql-15-partman
(4.7) is what users install there; the embedded PostgreSQL has no pg_partman. The clock is
moved for jobq's retention by passing `now`; pg_partman premakes from the real clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from support.history_events import events_of, job_with_events
from support.history_events import noon as at

from jobq.domain.history import PARTMAN_4_DAY_FORMAT, Partition, partition_name
from jobq.server.history_maintainer import HistoryMaintainer, HistoryReport
from jobq.storage.postgres.history_partitions import PgHistoryPartitionStore
from jobq.storage.postgres.history_partman import PgHistoryPartmanStore

pytestmark = pytest.mark.system_postgres_only

PARENT = "public.job_events"


def day(offset: int) -> date:
    return datetime.now(UTC).date() + timedelta(days=offset)


def partman_name(of: date) -> str:
    return partition_name(of, PARTMAN_4_DAY_FORMAT)


def maintainer(
    pool: asyncpg.Pool, *, retention_days: int = 0, premake_days: int = 7
) -> HistoryMaintainer:
    return HistoryMaintainer(
        PgHistoryPartitionStore(pool),
        retention_days=retention_days,
        premake_days=premake_days,
        interval_s=3600,
        owner="a",
        partman=PgHistoryPartmanStore(pool),
    )


@pytest.fixture
async def partman(pool: asyncpg.Pool) -> str:
    """pg_partman installed in the test's database, as a DBA installs it; its version."""
    await pool.execute("CREATE SCHEMA partman")
    await pool.execute("CREATE EXTENSION pg_partman SCHEMA partman")
    version: str = await pool.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'pg_partman'"
    )
    return version


async def partitions(pool: asyncpg.Pool) -> list[Partition]:
    return await PgHistoryPartitionStore(pool).history_partitions()


async def config(pool: asyncpg.Pool) -> asyncpg.Record:
    row = await pool.fetchrow(
        "SELECT partition_interval, datetime_string, premake, retention,"
        " infinite_time_partitions FROM partman.part_config WHERE parent_table = $1",
        PARENT,
    )
    assert row is not None, "job_events is not registered with pg_partman"
    return row


def covered(of: date, among: list[Partition]) -> bool:
    start = at(of, 0)
    return any(
        not p.is_default
        and (p.lower is None or p.lower <= start)
        and p.upper is not None
        and start < p.upper
        for p in among
    )


async def test_job_events_is_registered_and_pg_partman_premakes_its_days(
    pool: asyncpg.Pool, partman: str
) -> None:
    done = await job_with_events(pool, "DONE", [day(1), day(2)])
    before = await events_of(pool, done)

    first = await maintainer(pool, premake_days=10).run_once()

    assert first.acted
    assert first.partman == partman
    row = await config(pool)
    assert row["partition_interval"] == "1 day"
    assert row["datetime_string"] == PARTMAN_4_DAY_FORMAT
    assert row["premake"] == 10
    assert row["retention"] is None, "pg_partman's retention would drop a live job's history"
    assert row["infinite_time_partitions"] is True
    # The migration made a week of days; pg_partman made the rest of the ten, jobq none.
    assert {partman_name(day(n)) for n in (8, 9, 10)} <= set(first.premade_by_partman)
    assert first.created == []
    now = await partitions(pool)
    for n in range(1, 11):
        assert covered(day(n), now), f"day {n} has no partition"
    # Every day partition carries pg_partman 4's name for its day (it orders them by name).
    for p in now:
        if p.lower is not None and not p.is_default:
            assert p.name == partman_name(p.lower.astimezone(UTC).date())
    assert [p.name for p in now if p.is_default] == ["job_events_default"]
    assert await events_of(pool, done) == before
    # What lands in no day's partition still lands: the default partition pg_partman made.
    await job_with_events(pool, "DONE", [day(4000)])
    assert await pool.fetchval("SELECT count(*) FROM job_events_default") == 1

    second = await maintainer(pool, premake_days=10).run_once()
    assert second.partman == partman
    assert second.premade_by_partman == []
    assert second.created == [day(4000).isoformat()]  # the stray, moved to a day of its own
    assert await pool.fetchval("SELECT count(*) FROM job_events_default") == 0
    assert partman_name(day(4000)) in {p.name for p in await partitions(pool)}
    # pg_partman's own maintenance (a DBA's cron or its background worker) still runs.
    await pool.execute("SELECT partman.run_maintenance(p_jobmon := false)")


async def test_the_retention_stays_jobqs_and_spares_a_live_jobs_days(
    pool: asyncpg.Pool, partman: str
) -> None:
    finished = await job_with_events(pool, "DONE", [day(1), day(2)])
    live = await job_with_events(pool, "RUNNING", [day(3)])
    live_events = await events_of(pool, live)
    assert (await maintainer(pool).run_once()).partman == partman

    later = await maintainer(pool, retention_days=10).run_once(at(day(20)))

    assert {partman_name(day(1)), partman_name(day(2))} <= set(later.dropped)
    assert later.held_back == [partman_name(day(3))]
    assert await events_of(pool, finished) == []
    assert await events_of(pool, live) == live_events
    names = {p.name for p in await partitions(pool)}
    assert not names & set(later.dropped)
    # The days ahead of the moved clock are jobq's to make (pg_partman premakes from the real
    # one), in pg_partman's spelling, so that its maintenance goes on reading them.
    assert {partman_name(day(n)) for n in range(20, 28)} <= names
    listed = await pool.fetch("SELECT partition_tablename FROM partman.show_partitions($1)", PARENT)
    assert {row["partition_tablename"] for row in listed} == names - {"job_events_default"}
    await pool.execute("SELECT partman.run_maintenance($1, p_jobmon := false)", PARENT)


async def test_a_failing_pg_partman_is_said_once_and_jobq_makes_the_days_itself(
    pool: asyncpg.Pool, partman: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (await maintainer(pool).run_once()).partman == partman
    # A partition renamed by hand: pg_partman 4 parses every name to order them, and fails.
    await pool.execute(f'ALTER TABLE "{partman_name(day(5))}" RENAME TO job_events_p_by_hand')

    later = maintainer(pool, premake_days=12)
    reports: list[HistoryReport] = [await later.run_once() for _ in range(2)]

    assert reports[0].partman is None
    assert reports[0].created, "jobq made no day although pg_partman made none"
    assert set(reports[0].created) <= {day(n).isoformat() for n in range(8, 13)}
    now = await partitions(pool)
    for n in range(8, 13):
        assert covered(day(n), now), f"day {n} has no partition"
        assert partman_name(day(n)) in {p.name for p in now}, "not in pg_partman's spelling"
    assert reports[1].created == []
    assert capsys.readouterr().out.count("history.partman_unused") == 1
    assert (await config(pool))["premake"] == 7, "the failed run's change was rolled back"


async def test_registering_waits_for_a_lock_and_changes_nothing_meanwhile(
    pool: asyncpg.Pool, partman: str, db_dsn: str
) -> None:
    names = {p.name for p in await partitions(pool)}
    holder = await asyncpg.connect(db_dsn)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE job_events IN ACCESS SHARE MODE")
            report = await maintainer(pool).run_once()
    finally:
        await holder.close()
    assert report.partman is None
    assert {p.name for p in await partitions(pool)} == names
    assert await pool.fetchval("SELECT count(*) FROM partman.part_config") == 0

    assert (await maintainer(pool).run_once()).partman == partman


async def test_the_run_that_registers_drops_old_days_by_their_new_names(
    pool: asyncpg.Pool, partman: str
) -> None:
    finished = await job_with_events(pool, "DONE", [day(1)])

    # Two days on, premake 1, a retention of 1 day: pg_partman makes no day (the migration
    # made a week) and jobq none ahead either, so nothing else re-reads the partitions between
    # the renaming and the drops.
    report = await maintainer(pool, retention_days=1, premake_days=1).run_once(at(day(3)))

    assert report.partman == partman
    assert partman_name(day(1)) in report.dropped
    assert await events_of(pool, finished) == []
