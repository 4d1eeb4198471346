"""jq-server on the embedded default and on a configured PostgreSQL, with real processes."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from support.ctl import jq_ctl_at, ok
from support.processes import ServerFactory

from jobq.storage.embedded import EmbeddedPostgres, bin_dir
from jobq.storage.migrations import default_migrations_dir, load_migrations

MIGRATION_COUNT = len(load_migrations(default_migrations_dir()))


async def _history_count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(DISTINCT version) FROM flyway_schema_history WHERE success"
        )
        rows: int = await conn.fetchval("SELECT count(*) FROM flyway_schema_history")
        assert rows == count, "a migration was recorded twice"
        return count
    finally:
        await conn.close()


def _wait_exit(server_process: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    process = server_process.process  # type: ignore[attr-defined]
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


async def test_embedded_default_starts_migrates_and_stops_what_it_started(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "pg"
    server = start_server({"JQ_DB_EMBEDDED_DATA_DIR": str(data_dir)})
    embedded = EmbeddedPostgres(data_dir)
    assert embedded.is_running()
    assert await _history_count(embedded.dsn("jobq")) == MIGRATION_COUNT
    assert "embedded PostgreSQL" in server.log()
    assert server.terminate() == 0
    assert not embedded.is_running()


def _psql(
    embedded: EmbeddedPostgres, sql: str, no_passfile: Path, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """psql on the embedded server's socket, as this test's user: what a job could run."""
    env = {name: value for name, value in os.environ.items() if name != "PGPASSWORD"}
    env["PGPASSFILE"] = str(no_passfile)  # libpq finds no ~/.pgpass entry either
    if password is not None:
        env["PGPASSWORD"] = password
    target = ["-h", str(embedded.socket_dir), "-p", str(embedded.port), "-U", "postgres"]
    return subprocess.run(
        [str(bin_dir() / "psql"), "-X", "-w", "-At", *target, "-d", "jobq", "-c", sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_embedded_default_refuses_whoever_lacks_its_password(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "pg"
    server = start_server({"JQ_DB_EMBEDDED_DATA_DIR": str(data_dir), "JQ_LOGGING_LEVEL": "debug"})
    ok(jq_ctl_at(server, "job", "submit", "--", "echo", "private"))
    embedded = EmbeddedPostgres(data_dir)
    password = embedded.password_file.read_text().strip()
    no_passfile = tmp_path / "no-passfile"

    refused = _psql(embedded, "SELECT count(*) FROM jobs", no_passfile)
    assert refused.returncode != 0
    assert re.search(r"password authentication failed|no password supplied", refused.stderr), (
        refused.stderr
    )
    allowed = _psql(embedded, "SELECT count(*) FROM jobs", no_passfile, password=password)
    assert (allowed.returncode, allowed.stdout) == (0, "1\n"), allowed.stderr

    # A database outage makes jq-server log asyncpg's errors and tracebacks: still no password.
    embedded.stop()
    assert jq_ctl_at(server, "job", "submit", "--", "true").returncode != 0
    assert server.terminate() == 0
    log = server.log()
    assert '"action": "rpc.failed"' in log
    assert password not in log


async def test_embedded_default_reuses_a_running_server_and_leaves_it_running(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "pg"
    embedded = EmbeddedPostgres(data_dir)
    assert embedded.start() is True
    try:
        first = start_server({"JQ_DB_EMBEDDED_DATA_DIR": str(data_dir)})
        assert first.terminate() == 0
        assert embedded.is_running()
        # A second start finds the schema in place and applies nothing.
        second = start_server({"JQ_DB_EMBEDDED_DATA_DIR": str(data_dir)})
        assert '"applied": []' in second.log()
        assert second.terminate() == 0
        assert await _history_count(embedded.dsn("jobq")) == MIGRATION_COUNT
    finally:
        embedded.stop()


async def test_a_configured_dsn_is_used_instead_of_the_embedded_server(
    start_server: ServerFactory, empty_db_dsn: str, tmp_path: Path
) -> None:
    unused = tmp_path / "never"
    server = start_server({"JQ_DB_DSN": empty_db_dsn, "JQ_DB_EMBEDDED_DATA_DIR": str(unused)})
    assert await _history_count(empty_db_dsn) == MIGRATION_COUNT
    assert not unused.exists()
    assert server.terminate() == 0


async def test_host_port_name_user_and_password_from_the_environment(
    start_server: ServerFactory, empty_db_dsn: str, tmp_path: Path
) -> None:
    parts = urlsplit(empty_db_dsn)
    assert parts.hostname is not None
    server = start_server(
        {
            "JQ_DB_HOST": parts.hostname,
            "JQ_DB_PORT": str(parts.port or 5432),
            "JQ_DB_NAME": parts.path.lstrip("/"),
            "JQ_DB_USER": parts.username or "postgres",
            "JQ_DB_PASSWORD": parts.password or "",
            "JQ_DB_EMBEDDED_DATA_DIR": str(tmp_path / "never"),
        }
    )
    assert await _history_count(empty_db_dsn) == MIGRATION_COUNT
    assert server.terminate() == 0


async def test_a_changed_applied_migration_stops_start_up(
    start_server: ServerFactory, db_dsn: str
) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        # What a later edit of the applied file looks like from the database's side.
        await conn.execute("UPDATE flyway_schema_history SET checksum = 42 WHERE version = '3'")
    finally:
        await conn.close()
    server = start_server({"JQ_DB_DSN": db_dsn}, wait=False)
    assert server.process.wait(timeout=60) == 1
    log = server.log()
    assert "V3__create_jobs_table.sql was changed after it was applied" in log
    assert "Traceback" not in log


async def test_two_servers_started_together_apply_each_migration_once(
    start_server: ServerFactory, empty_db_dsn: str
) -> None:
    servers = [start_server({"JQ_DB_DSN": empty_db_dsn}, wait=False) for _ in range(2)]
    for server in servers:
        server.wait_serving()
    assert await _history_count(empty_db_dsn) == MIGRATION_COUNT
    for server in servers:
        assert server.terminate() == 0


async def test_an_unreachable_database_is_one_clear_error(
    start_server: ServerFactory,
) -> None:
    server = start_server(
        {"JQ_DB_DSN": "postgresql://nobody@127.0.0.1:1/nothing", "JQ_DB_CONNECT_TIMEOUT_S": "2"},
        wait=False,
    )
    assert server.process.wait(timeout=60) == 1
    log = server.log()
    assert "Traceback" not in log
    assert "server.failed" in log
