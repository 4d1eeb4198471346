"""The migration runner against a real PostgreSQL: apply, re-run, tamper, race."""

from __future__ import annotations

import asyncio
import shutil
import uuid
import zlib
from pathlib import Path

import asyncpg
import pytest

from jobq.domain.errors import MigrationError
from jobq.domain.states import JobStatus, WorkerStatus
from jobq.storage.migrations import (
    default_migrations_dir,
    flyway_checksum,
    load_migrations,
    migrate,
)

EXPECTED_SCRIPTS = (
    "V1__create_queues_table.sql",
    "V2__create_workers_table.sql",
    "V3__create_jobs_table.sql",
    "V4__create_job_events_table.sql",
    "V5__seed_default_queue.sql",
    "V6__add_job_attempt_fencing.sql",
    "V7__add_worker_shutdown_request.sql",
    "V8__claim_index_in_claim_order.sql",
    "V9__claim_index_per_queue.sql",
    "V10__create_audit_events_table.sql",
    "V11__worker_incarnations_claim_ids_and_poison.sql",
    "V12__suspect_jobs_claimed_one_per_worker.sql",
    "V13__idempotency_keys.sql",
    "V14__enqueued_jobs_outbox.sql",
    "V15__event_outbox.sql",
    "V16__job_events_without_foreign_key.sql",
    "V17__queue_flow_control.sql",
    "V18__cancel_requests_and_progress.sql",
    "V19__schedules.sql",
    "V20__job_dependencies.sql",
    "V21__job_trace_context.sql",
    "V22__ready_and_held_jobs.sql",
    "V23__partitioned_job_events.sql",
    "V24__partitioned_jobs.sql",
    "V25__shard_column.sql",
)


def _version(script: str) -> str:
    """The version of a script name: "20" for V20__job_dependencies.sql (the numbers of
    parallel branches may leave gaps until they are merged)."""
    return script.split("__", 1)[0].removeprefix("V")


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= (1 << 31) else value


def test_flyway_checksum_ignores_line_endings_and_bom() -> None:
    expected = _signed(zlib.crc32(b"SELECT 1;" + b"SELECT 2;"))
    assert flyway_checksum("SELECT 1;\nSELECT 2;\n") == expected
    assert flyway_checksum("\ufeffSELECT 1;\r\nSELECT 2;") == expected
    assert flyway_checksum("SELECT 1;\nSELECT 3;\n") != expected


def test_files_are_found_in_version_order() -> None:
    migrations = load_migrations(default_migrations_dir())
    assert tuple(m.script for m in migrations) == EXPECTED_SCRIPTS
    assert migrations[0].version == "1"
    assert migrations[0].description == "create queues table"


def test_a_badly_named_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "V1_missing_second_underscore.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"V1_missing_second_underscore\.sql"):
        load_migrations(tmp_path)


async def test_first_run_applies_all_and_records_flyway_history(empty_db_dsn: str) -> None:
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        report = await migrate(conn)
        assert report.applied == EXPECTED_SCRIPTS
        assert report.already_applied == ()
        rows = await conn.fetch(
            "SELECT installed_rank, version, description, type, script, checksum, installed_by,"
            " installed_on, execution_time, success FROM flyway_schema_history"
            " ORDER BY installed_rank"
        )
        assert [r["script"] for r in rows] == list(EXPECTED_SCRIPTS)
        assert [r["installed_rank"] for r in rows] == list(range(1, len(EXPECTED_SCRIPTS) + 1))
        assert [r["version"] for r in rows] == [_version(script) for script in EXPECTED_SCRIPTS]
        by_script = {m.script: m for m in load_migrations(default_migrations_dir())}
        for row in rows:
            assert row["checksum"] == by_script[row["script"]].checksum
            assert row["success"] is True
            assert row["type"] == "SQL"
            assert row["installed_by"] == "postgres"
            assert row["execution_time"] >= 0
            assert row["installed_on"] is not None
    finally:
        await conn.close()


async def test_second_run_is_a_no_op(empty_db_dsn: str) -> None:
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await migrate(conn)
        before = await conn.fetch("SELECT * FROM flyway_schema_history ORDER BY installed_rank")
        report = await migrate(conn)
        after = await conn.fetch("SELECT * FROM flyway_schema_history ORDER BY installed_rank")
        assert report.applied == ()
        assert report.already_applied == EXPECTED_SCRIPTS
        assert [dict(r) for r in after] == [dict(r) for r in before]
        assert await conn.fetchval("SELECT count(*) FROM queues WHERE name = 'default'") == 1
    finally:
        await conn.close()


async def test_a_changed_applied_file_stops_with_a_clear_error(
    empty_db_dsn: str, tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), directory)
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await migrate(conn, directory)
        target = directory / "V3__create_jobs_table.sql"
        target.write_text(target.read_text() + "\n-- an innocent-looking edit\n")
        (directory / "V99__later.sql").write_text("CREATE TABLE should_not_exist (id int);")
        with pytest.raises(MigrationError, match=r"V3__create_jobs_table\.sql was changed"):
            await migrate(conn, directory)
        # Nothing after the check ran: the pending V7 was not applied.
        assert await conn.fetchval("SELECT to_regclass('should_not_exist')") is None
    finally:
        await conn.close()


async def test_a_new_file_is_applied_on_the_next_run(empty_db_dsn: str, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), directory)
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await migrate(conn, directory)
        (directory / "V99__add_a_table.sql").write_text("CREATE TABLE later_table (id int);")
        report = await migrate(conn, directory)
        assert report.applied == ("V99__add_a_table.sql",)
        assert await conn.fetchval("SELECT to_regclass('later_table')::text") == "later_table"
    finally:
        await conn.close()


async def test_a_failing_migration_rolls_back_and_is_not_recorded(
    empty_db_dsn: str, tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), directory)
    (directory / "V99__broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;"
    )
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        with pytest.raises(MigrationError, match=r"V99__broken\.sql failed"):
            await migrate(conn, directory)
        assert await conn.fetchval("SELECT to_regclass('half_done')") is None
        assert await conn.fetchval("SELECT max(version::int) FROM flyway_schema_history") == int(
            _version(EXPECTED_SCRIPTS[-1])
        )
    finally:
        await conn.close()


async def test_two_runners_at_once_apply_each_migration_exactly_once(empty_db_dsn: str) -> None:
    conns = [await asyncpg.connect(empty_db_dsn) for _ in range(4)]
    try:
        reports = await asyncio.gather(*(migrate(conn) for conn in conns))
        applied = [script for report in reports for script in report.applied]
        assert sorted(applied) == sorted(EXPECTED_SCRIPTS)  # each once, by whichever ran first
        rows = await conns[0].fetch("SELECT script FROM flyway_schema_history")
        assert sorted(r["script"] for r in rows) == sorted(EXPECTED_SCRIPTS)
    finally:
        for conn in conns:
            await conn.close()


async def test_schema_enums_match_the_domain(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        job_statuses = await conn.fetchval("SELECT enum_range(NULL::job_status)::text[]")
        worker_statuses = await conn.fetchval("SELECT enum_range(NULL::worker_status)::text[]")
    finally:
        await conn.close()
    assert job_statuses == [s.value for s in JobStatus]
    assert worker_statuses == [s.value for s in WorkerStatus]


async def test_schema_constraints_and_indexes(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO jobs (queue_name, priority) VALUES ('default', 10)")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO jobs (queue_name, priority) VALUES ('default', -1)")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("INSERT INTO jobs (queue_name) VALUES ('no-such-queue')")
        with pytest.raises(asyncpg.CheckViolationError):  # DONE needs completed_at
            await conn.execute("INSERT INTO jobs (queue_name, status) VALUES ('default', 'DONE')")
        # V16 dropped job_events' reference to jobs (four integrity checks per job's life).
        assert not await conn.fetchval(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'job_events'::regclass"
            " AND contype = 'f'"
        )
        indexes = {
            r["indexname"]
            for r in await conn.fetch("SELECT indexname FROM pg_indexes WHERE schemaname='public'")
        }
        assert {
            "ready_jobs_claim_idx",
            "held_jobs_worker_idx",
            "job_events_job_id_idx",
        } <= indexes
        # V8 and V9 dropped these (see their comments): they slowed claims. V22 dropped every
        # index of jobs that named a column the lifecycle changes (HOT updates).
        assert (
            not {
                "jobs_queue_status_idx",
                "jobs_status_not_before_idx",
                "jobs_pending_claim_idx",
                "jobs_pending_queue_claim_idx",
                "jobs_worker_id_idx",
                "jobs_pending_suspect_idx",
                "jobs_held_suspect_idx",
                "jobs_held_queue_key_idx",
                "jobs_cancel_requested_idx",
                "jobs_waiting_idx",
            }
            & indexes
        )
        claim_index = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ready_jobs_claim_idx'"
        )
        assert "(shard, queue_name, priority DESC, created_at, job_id)" in claim_index
        default = await conn.fetchrow("SELECT * FROM queues WHERE name = 'default'")
        assert default is not None
        assert default["max_retries"] == 3
        assert default["ttl_seconds"] is None
    finally:
        await conn.close()


async def test_the_audit_trail_table(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        columns = {
            r["column_name"]: (r["data_type"], r["is_nullable"])
            for r in await conn.fetch(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                " WHERE table_name = 'audit_events'"
            )
        }
        assert columns == {
            "id": ("bigint", "NO"),
            "occurred_at": ("timestamp with time zone", "NO"),
            "actor": ("text", "NO"),
            "action": ("text", "NO"),
            "target": ("text", "NO"),
            "outcome": ("text", "NO"),
            "detail": ("text", "YES"),
        }
        row = await conn.fetchrow(
            "INSERT INTO audit_events (actor, action, target, outcome)"
            " VALUES ('anonymous', 'queue.delete', 'q', 'ok') RETURNING id, occurred_at"
        )
        assert row is not None
        assert row["id"] >= 1
        assert row["occurred_at"] is not None
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO audit_events (actor, action, target, outcome)"
                " VALUES ('', 'queue.delete', 'q', 'ok')"
            )
        newest = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'audit_events_newest_idx'"
        )
        assert "(occurred_at DESC, id DESC)" in newest
        # No foreign keys: deleting a queue or a job keeps the records that name it.
        assert not await conn.fetchval(
            "SELECT count(*) FROM pg_constraint"
            " WHERE conrelid = 'audit_events'::regclass AND contype = 'f'"
        )
    finally:
        await conn.close()


async def test_incarnations_claim_ids_and_interruptions(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        columns = {
            (r["table_name"], r["column_name"]): (r["data_type"], r["is_nullable"])
            for r in await conn.fetch(
                "SELECT table_name, column_name, data_type, is_nullable"
                " FROM information_schema.columns WHERE column_name = ANY($1::text[])"
                # job_events' (V23) and jobs' (V24) partitions are tables with their columns.
                " AND NOT table_name LIKE 'job\\_events\\_%'"
                " AND NOT table_name LIKE 'jobs\\_%'",
                ["incarnation", "claim_id", "interruptions", "max_interruptions"],
            )
        }
        assert columns == {
            ("workers", "incarnation"): ("uuid", "YES"),
            ("jobs", "claim_id"): ("uuid", "YES"),
            ("jobs", "interruptions"): ("integer", "NO"),
            ("job_events", "claim_id"): ("uuid", "YES"),
            ("queues", "max_interruptions"): ("integer", "NO"),
        }
        default = await conn.fetchrow("SELECT * FROM queues WHERE name = 'default'")
        assert default is not None
        assert default["max_interruptions"] == 3
        job = await conn.fetchrow(
            "INSERT INTO jobs (queue_name) VALUES ('default') RETURNING interruptions, claim_id"
        )
        assert job is not None
        assert (job["interruptions"], job["claim_id"]) == (0, None)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO jobs (queue_name, interruptions) VALUES ('default', -1)"
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO queues (name, max_interruptions) VALUES ('q', 1001)")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO queues (name, max_interruptions) VALUES ('q', -1)")
    finally:
        await conn.close()


async def test_queue_flow_control_columns(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        default = await conn.fetchrow("SELECT * FROM queues WHERE name = 'default'")
        assert default is not None
        assert (default["paused"], default["max_running"], default["flow_limited"]) == (
            False,
            None,
            False,
        )
        limited = await conn.fetchval(
            "UPDATE queues SET key_rate_limit = 5, key_rate_period_ms = 1000"
            " WHERE name = 'default' RETURNING flow_limited"
        )
        assert limited is True
        with pytest.raises(asyncpg.CheckViolationError):  # a rate needs its period
            await conn.execute("UPDATE queues SET rate_limit = 5 WHERE name = 'default'")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE queues SET max_running = 0 WHERE name = 'default'")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO jobs (queue_name, concurrency_key) VALUES ('default', '')"
            )
        # the held jobs by queue and key: in held_jobs since V22
        held = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'held_jobs_queue_key_idx'"
        )
        assert "(shard, queue_name, concurrency_key)" in held
    finally:
        await conn.close()


def _migrations_up_to(tmp_path: Path, last: int) -> Path:
    """A directory with the migrations EXPECTED_SCRIPTS[0..last], to upgrade from there."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    for script in EXPECTED_SCRIPTS[: last + 1]:
        shutil.copy(default_migrations_dir() / script, directory / script)
    return directory


async def test_v11_gives_the_jobs_held_at_the_upgrade_a_claim_id(
    empty_db_dsn: str, tmp_path: Path
) -> None:
    """Jobs held when V11 runs were claimed without a claim id: each gets one, so the server's
    own fenced paths (rescue, timeout, release) can still move them."""
    v11 = EXPECTED_SCRIPTS.index("V11__worker_incarnations_claim_ids_and_poison.sql")
    directory = _migrations_up_to(tmp_path, v11 - 1)
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await migrate(conn, directory)
        worker = await conn.fetchval(
            "INSERT INTO workers (worker_id) VALUES (gen_random_uuid()) RETURNING worker_id"
        )
        for status in ("PENDING", "ASSIGNED", "RUNNING"):
            await conn.execute(
                "INSERT INTO jobs (queue_name, status, worker_id, attempt)"
                " VALUES ('default', $1, $2, 1)",
                status,
                None if status == "PENDING" else worker,
            )
        shutil.copy(default_migrations_dir() / EXPECTED_SCRIPTS[v11], directory)
        report = await migrate(conn, directory)
        assert report.applied == (EXPECTED_SCRIPTS[v11],)
        rows = await conn.fetch("SELECT status::text, claim_id FROM jobs ORDER BY jobs.status")
        assert [(r["status"], r["claim_id"] is not None) for r in rows] == [
            ("PENDING", False),
            ("ASSIGNED", True),
            ("RUNNING", True),
        ]
        assert await conn.fetchval("SELECT incarnation FROM workers") is None
    finally:
        await conn.close()


SUSPECT_INDEXES = {
    "jobs_pending_suspect_idx": (
        "(queue_name, priority DESC, created_at, job_id)",
        "WHERE ((status = 'PENDING'::job_status) AND (interruptions >= 2))",
    ),
    "jobs_held_suspect_idx": (
        "(worker_id)",
        "WHERE ((status = ANY (ARRAY['ASSIGNED'::job_status, 'RUNNING'::job_status]))"
        " AND (interruptions >= 2))",
    ),
}


async def test_v12_indexes_the_suspects_a_database_already_has(
    empty_db_dsn: str, tmp_path: Path
) -> None:
    """V12 on top of V11 with jobs in every state: its two partial indexes hold exactly the
    suspects (interrupted twice or more) that are pending, and those that are held."""
    v12 = EXPECTED_SCRIPTS.index("V12__suspect_jobs_claimed_one_per_worker.sql")
    directory = _migrations_up_to(tmp_path, v12 - 1)
    conn = await asyncpg.connect(empty_db_dsn)
    try:
        await migrate(conn, directory)
        worker = await conn.fetchval(
            "INSERT INTO workers (worker_id) VALUES (gen_random_uuid()) RETURNING worker_id"
        )
        expected: dict[str, set[uuid.UUID]] = {name: set() for name in SUSPECT_INDEXES}
        for status in ("PENDING", "ASSIGNED", "RUNNING", "DONE"):
            for interruptions in (0, 1, 2, 3):
                job_id = await conn.fetchval(
                    "INSERT INTO jobs (queue_name, status, worker_id, interruptions, completed_at)"
                    " VALUES ('default', $1::job_status, $2, $3,"
                    "         CASE WHEN $1::job_status = 'DONE' THEN now() END) RETURNING job_id",
                    status,
                    None if status == "PENDING" else worker,
                    interruptions,
                )
                if interruptions >= 2 and status == "PENDING":
                    expected["jobs_pending_suspect_idx"].add(job_id)
                elif interruptions >= 2 and status in ("ASSIGNED", "RUNNING"):
                    expected["jobs_held_suspect_idx"].add(job_id)
        shutil.copy(default_migrations_dir() / EXPECTED_SCRIPTS[v12], directory)
        report = await migrate(conn, directory)
        assert report.applied == (EXPECTED_SCRIPTS[v12],)
        for name, (columns, predicate) in SUSPECT_INDEXES.items():
            definition = await conn.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE indexname = $1", name
            )
            assert columns in definition
            assert definition.endswith(predicate)
            # What the index holds: read through the index alone (amcheck is not installed).
            async with conn.transaction():
                await conn.execute(
                    "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"
                )
                where = predicate.removeprefix("WHERE ")
                plan = await conn.fetchval(
                    f"EXPLAIN (FORMAT JSON) SELECT job_id FROM jobs WHERE {where}"
                )
                assert name in plan
                rows = await conn.fetch(f"SELECT job_id FROM jobs WHERE {where}")
            assert {r["job_id"] for r in rows} == expected[name]
    finally:
        await conn.close()
