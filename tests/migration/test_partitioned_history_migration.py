"""V23 on a database that already has a history: every event kept, with its id, in the legacy
partition; the outbox trigger moved to the parent in the state it was in; ids go on."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from jobq.storage.migrations import default_migrations_dir, migrate

V23 = "V23__partitioned_job_events.sql"


def _up_to_before_v23(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    for script in sorted(default_migrations_dir().glob("V*.sql")):
        if int(script.name.split("__")[0][1:]) < 23:
            shutil.copy(script, directory / script.name)
    return directory


@pytest.mark.parametrize("capturing", [False, True])
async def test_v23_keeps_every_event_and_the_outbox_trigger(
    empty_db_dsn: str, tmp_path: Path, capturing: bool
) -> None:
    directory = _up_to_before_v23(tmp_path)
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await migrate(conn, directory)
        if capturing:  # a replica ran with kafka.enabled
            await conn.execute("ALTER TABLE job_events ENABLE TRIGGER job_events_outbox")
        now = datetime.now(UTC)
        # A history over the past year and a little of the future (a server clock ahead).
        moments = [now - timedelta(days=d) for d in (400, 30, 2, 0)] + [now + timedelta(hours=30)]
        job_id = await conn.fetchval(
            "INSERT INTO jobs (queue_name) VALUES ('default') RETURNING job_id"
        )
        await conn.execute(
            "INSERT INTO job_events (job_id, to_status, reason, occurred_at)"
            " SELECT $1, 'PENDING', 'SUBMITTED', m FROM unnest($2::timestamptz[]) AS m",
            job_id,
            moments,
        )
        before = await conn.fetch("SELECT * FROM job_events ORDER BY id")
        outbox_before = await conn.fetchval("SELECT count(*) FROM event_outbox")

        shutil.copy(default_migrations_dir() / V23, directory / V23)
        report = await migrate(conn, directory)
        assert report.applied == (V23,)

        after = await conn.fetch("SELECT * FROM job_events ORDER BY id")
        assert [dict(r) for r in after] == [dict(r) for r in before]
        where = await conn.fetch("SELECT DISTINCT tableoid::regclass::text AS t FROM job_events")
        assert [r["t"] for r in where] == ["job_events_legacy"]
        assert (
            await conn.fetchval(
                "SELECT relkind::text FROM pg_class WHERE oid = 'job_events'::regclass"
            )
            == "p"
        )
        # The legacy partition ends at a midnight (UTC) after its newest event.
        bound = await conn.fetchval(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class"
            " WHERE oid = 'job_events_legacy'::regclass"
        )
        assert bound.startswith("FOR VALUES FROM (MINVALUE) TO (")
        upper = await conn.fetchval(
            "SELECT (regexp_match($1, 'TO \\(''([^'']+)''\\)'))[1]::timestamptz", bound
        )
        assert upper > max(moments)
        assert upper == upper.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

        # The trigger is on the parent now, enabled exactly when it was before.
        state = await conn.fetchval(
            "SELECT tgenabled::text FROM pg_trigger"
            " WHERE tgrelid = 'job_events'::regclass AND tgname = 'job_events_outbox'"
        )
        assert (state != "D") is capturing
        assert not await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'job_events_legacy'::regclass"
            " AND tgname = 'job_events_outbox'"
        )
        # New events of any date are written, with ids after the old ones; captured if on.
        new_ids = await conn.fetch(
            "INSERT INTO job_events (job_id, to_status, reason, occurred_at)"
            " SELECT $1, 'RUNNING', 'STARTED', m FROM unnest($2::timestamptz[]) AS m"
            " RETURNING id",
            job_id,
            [now - timedelta(days=4000), now, now + timedelta(days=3), now + timedelta(days=4000)],
        )
        assert min(r["id"] for r in new_ids) > max(r["id"] for r in before)
        captured = await conn.fetchval("SELECT count(*) FROM event_outbox") - outbox_before
        assert captured == (1 if capturing else 0)
        # The sequence belongs to the parent: dropping the legacy partition keeps it.
        await conn.execute("ALTER TABLE job_events DETACH PARTITION job_events_legacy")
        await conn.execute("DROP TABLE job_events_legacy")
        await conn.execute(
            "INSERT INTO job_events (job_id, to_status, reason) VALUES ($1, 'DONE', 'COMPLETED')",
            job_id,
        )
    finally:
        await conn.close()
