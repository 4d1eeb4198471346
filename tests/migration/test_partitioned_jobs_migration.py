"""V24 on a database that already has jobs: every job kept as it was, in the legacy (default)
partition; keys and schedule ticks still hold; the side tables still agree; new jobs of today
land in today's partition (which starts above today's old jobs)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest
from support.side_tables import assert_side_tables_match

from jobq.domain.ids import uuid7
from jobq.domain.records import NewJob
from jobq.storage.migrations import default_migrations_dir, migrate
from jobq.storage.postgres.jobs import PgJobStore

V24 = "V24__partitioned_jobs.sql"


def _up_to_before_v24(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    for script in sorted(default_migrations_dir().glob("V*.sql")):
        if int(script.name.split("__")[0][1:]) < 24:
            shutil.copy(script, directory / script.name)
    return directory


async def test_v24_keeps_every_job_its_key_and_its_tick(empty_db_dsn: str, tmp_path: Path) -> None:
    directory = _up_to_before_v24(tmp_path)
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await migrate(conn, directory)
        # Old jobs: v4 ids (V3's default), keyed, a schedule's tick, live and finished, and a
        # UUIDv7 of today (made by a server just before the upgrade).
        await conn.execute(
            "INSERT INTO jobs (queue_name, idempotency_key, status, completed_at)"
            " SELECT 'default', 'key-' || g, CASE WHEN g % 2 = 0 THEN 'DONE' ELSE 'PENDING' END"
            "::job_status, CASE WHEN g % 2 = 0 THEN now() END FROM generate_series(1, 20) g"
        )
        await conn.execute(
            "INSERT INTO jobs (queue_name, schedule_name, schedule_tick)"
            " VALUES ('default', 'nightly', '2026-01-01T00:00Z')"
        )
        today_id = uuid7()
        await conn.execute(
            "INSERT INTO jobs (job_id, queue_name, status) VALUES ($1, 'default', 'RUNNING')",
            today_id,
        )
        before = await conn.fetch("SELECT * FROM jobs ORDER BY job_id")

        shutil.copy(default_migrations_dir() / V24, directory / V24)
        report = await migrate(conn, directory)
        assert report.applied == (V24,)

        after = await conn.fetch("SELECT * FROM jobs ORDER BY job_id")
        assert [dict(r) for r in after] == [dict(r) for r in before]
        where = await conn.fetch("SELECT DISTINCT tableoid::regclass::text AS t FROM jobs")
        assert [r["t"] for r in where] == ["jobs_legacy"]
        assert await conn.fetchval("SELECT count(*) FROM job_idempotency_keys") == 20
        assert await conn.fetchval("SELECT count(*) FROM job_schedule_ticks") == 1

        # The migrations after V24 (the shard column, V25, ...), so that today's statements,
        # the store's and the side-table check's, run on what they were written for.
        for script in default_migrations_dir().glob("V*.sql"):
            if int(script.name.split("__")[0][1:]) > 24:
                shutil.copy(script, directory / script.name)
        await migrate(conn, directory)
        await assert_side_tables_match(conn)

        # A held key still returns its holder; a tick already fired gets no second job.
        pool = await asyncpg.create_pool(empty_db_dsn, min_size=1, max_size=2)
        try:
            holder = await conn.fetchval("SELECT job_id FROM jobs WHERE idempotency_key = 'key-3'")
            [again] = await PgJobStore(pool).jobs_insert(
                [NewJob(uuid7(), "default", b"{}", idempotency_key="key-3")]
            )
            assert (again.job_id, again.existing) == (holder, True)
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(
                    "INSERT INTO jobs (queue_name, schedule_name, schedule_tick)"
                    " VALUES ('default', 'nightly', '2026-01-01T00:00Z')"
                )
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute(
                    "INSERT INTO jobs (queue_name, idempotency_key) VALUES ('default', 'key-4')"
                )
            # A new job of today lands in today's partition, above the old one of today.
            fresh = uuid7()
            [made] = await PgJobStore(pool).jobs_insert([NewJob(fresh, "default", b"{}")])
            assert made.job_id == fresh
        finally:
            await pool.close()
        partition = await conn.fetchval(
            "SELECT tableoid::regclass::text FROM jobs WHERE job_id = $1", fresh
        )
        assert partition is not None
        assert partition.startswith("jobs_p")
        assert await conn.fetchval(
            "SELECT tableoid::regclass::text FROM jobs WHERE job_id = $1", today_id
        ) == ("jobs_legacy")
        # A v4 id (no partition can hold it by range) is taken by the default partition.
        v4 = await conn.fetchval(
            "INSERT INTO jobs (job_id, queue_name) VALUES ($1, 'default') RETURNING job_id",
            uuid.uuid4(),
        )
        assert v4 is not None
        await assert_side_tables_match(conn)
    finally:
        await conn.close()
