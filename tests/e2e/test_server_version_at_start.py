"""The supported-versions check at start-up (before any migration) and in `jq-server --dry-run`,
with the schema's state that the dry run reports beside it.

Only the supported versions run here (15 and 18), so the rule's thresholds are moved to make
the real server look too old or untested.
"""

from __future__ import annotations

import io

import asyncpg
import pytest
import structlog
from support import server_harness

from jobq.config import load_settings
from jobq.server.app import ServerApp
from jobq.server.dry_run import dry_run
from jobq.storage import server_version as rule
from jobq.storage.migrations import default_migrations_dir, load_migrations, migrate
from jobq.storage.server_version import UnsupportedServer

MIGRATIONS = len(load_migrations(default_migrations_dir()))


async def _server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        shown: str = await conn.fetchval("SHOW server_version")
        return shown.split(" ")[0]
    finally:
        await conn.close()


async def test_a_server_too_old_is_refused_before_anything_is_migrated(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rule, "MINIMUM_MAJOR", 99)
    app = ServerApp(server_harness.test_settings(empty_db_dsn, **{"db.schema": "jobq"}))
    try:
        with pytest.raises(UnsupportedServer) as caught:
            await app.start()
    finally:
        await app.stop()
    version = await _server_version(empty_db_dsn)
    assert str(caught.value) == (
        f"PostgreSQL {version} is not supported: jobq needs PostgreSQL 99 or newer "
        "(tested: 15 and 18)"
    )
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'jobq'") == 0
        assert await conn.fetchval("SELECT to_regclass('public.flyway_schema_history')") is None
    finally:
        await conn.close()


async def test_an_untested_version_starts_with_one_warning(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rule, "TESTED_MAJORS", (99,))
    with structlog.testing.capture_logs() as logs:
        async with server_harness.running_server(empty_db_dsn) as (app, _):
            assert app.grpc_port is not None
    version = await _server_version(empty_db_dsn)
    warnings = [log for log in logs if log.get("action") == "db.version_untested"]
    assert [(w["log_level"], w["event"]) for w in warnings] == [
        ("warning", f"PostgreSQL {version} is untested: jobq is tested on 99")
    ]
    [migrated] = [log for log in logs if log.get("action") == "db.migrated"]
    assert migrated["server_version"] == version


async def test_a_tested_version_starts_without_a_warning(empty_db_dsn: str) -> None:
    with structlog.testing.capture_logs() as logs:
        async with server_harness.running_server(empty_db_dsn):
            pass
    assert not [log for log in logs if log.get("action") == "db.version_untested"]


async def _postgres_line(dsn: str, schema: str) -> tuple[int, str]:
    settings = load_settings(None, env={}, overrides={"db.dsn": dsn, "db.schema": schema})
    out = io.StringIO()
    code = await dry_run(settings.settings, out)
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("postgres:")]
    return code, line


async def test_dry_run_reports_the_version_and_what_would_happen_to_the_schema(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = await _server_version(empty_db_dsn)
    code, line = await _postgres_line(empty_db_dsn, "jobq")
    assert code == 0
    assert line.startswith(f"postgres: ok (PostgreSQL {version}")
    assert line.endswith("; schema jobq does not exist yet; jq-server will create it)")

    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await conn.execute("CREATE SCHEMA jobq")
        assert (await _postgres_line(empty_db_dsn, "jobq"))[1].endswith(
            f"; schema jobq: jq-server will apply {MIGRATIONS} migration(s))"
        )
        await migrate(conn, schema="jobq")
    finally:
        await conn.close()
    assert (await _postgres_line(empty_db_dsn, "jobq"))[1].endswith("; schema jobq up to date)")
    # The schema is the configured one: public of the same database has nothing yet.
    assert (await _postgres_line(empty_db_dsn, "public"))[1].endswith(
        f"; schema public: jq-server will apply {MIGRATIONS} migration(s))"
    )

    monkeypatch.setattr(rule, "TESTED_MAJORS", (99,))
    code, line = await _postgres_line(empty_db_dsn, "jobq")
    assert code == 0
    assert line.endswith(
        f"; PostgreSQL {version} is untested: jobq is tested on 99; schema jobq up to date)"
    )

    monkeypatch.setattr(rule, "MINIMUM_MAJOR", 99)
    code, line = await _postgres_line(empty_db_dsn, "jobq")
    assert code == 1
    assert line.startswith("postgres: FAILED (127.0.0.1:")
    assert line.endswith(
        f": PostgreSQL {version} is not supported: jobq needs PostgreSQL 99 or newer (tested: 99))"
    )
