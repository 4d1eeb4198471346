"""jq-server and jq-worker behind the distribution's PgBouncer, as real processes.

Session pooling works: migrations, prepared statements, session settings and LISTEN/NOTIFY all
go through PgBouncer. Transaction and statement pooling are refused at start, before anything
is migrated, with one line that says why and what to do.
"""

from __future__ import annotations

import json
import time

import asyncpg
import pytest
from support.job_waits import logs, submit, wait_status
from support.pgbouncer import PgBouncerFactory, PoolMode
from support.pgbouncer import pgbouncers_fixture as pgbouncers_fixture  # the `pgbouncers` fixture
from support.processes import ServerFactory, ServerProcess, WorkerFactory
from support.server_harness import client_for

from jobq.rpc._gen import common_pb2 as cpb
from jobq.storage.migrations import default_migrations_dir, load_migrations

DONE = cpb.JOB_STATUS_DONE
MIGRATION_COUNT = len(load_migrations(default_migrations_dir()))
SLOW_FALLBACK = {"JQ_SCHEDULER_INTERVAL_MS": "60000"}
"""A one-minute dispatch interval: a job that starts sooner was delivered by a wake-up."""
SMALL_POOLS = {"JQ_DB_POOL_MAX_SIZE": "4"}
"""Two replicas' pools (plus claim pools and notifiers) within PgBouncer's default pool size of
20 server sessions per database and user; at jobq's defaults two replicas could ask for 26."""


async def _applied_migrations(direct_dsn: str) -> int:
    conn = await asyncpg.connect(direct_dsn)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM flyway_schema_history")
        return count
    finally:
        await conn.close()


async def _user_objects(direct_dsn: str) -> list[str]:
    """The schemas (besides public) and relations anyone created in the database, in any
    schema: whichever db.schema a migration would have used."""
    conn = await asyncpg.connect(direct_dsn)
    try:
        not_system = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
        rows = await conn.fetch(
            f"SELECT n.nspname AS name FROM pg_namespace n WHERE {not_system}"
            " AND n.nspname <> 'public'"
            " UNION ALL"
            " SELECT n.nspname || '.' || c.relname FROM pg_class c"
            f" JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {not_system}"
        )
        return [row["name"] for row in rows]
    finally:
        await conn.close()


def _wait_for_log(server: ServerProcess, text: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while text not in server.log():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{server.log()}"
        time.sleep(0.05)


async def test_jobs_run_to_done_through_a_session_pooling_pgbouncer(
    start_server: ServerFactory,
    start_worker: WorkerFactory,
    pgbouncers: PgBouncerFactory,
    empty_db_dsn: str,
) -> None:
    bouncer = pgbouncers("session")
    env = {"JQ_DB_DSN": bouncer.through(empty_db_dsn), **SLOW_FALLBACK, **SMALL_POOLS}
    first = start_server(env)  # migrates the empty database through PgBouncer
    assert await _applied_migrations(empty_db_dsn) == MIGRATION_COUNT
    second = start_server(env)
    assert '"applied": []' in second.log()  # the advisory lock and the history, seen through it
    worker = start_worker(first, "--import", "support.e2e_tasks", "--concurrency", "4")
    _wait_for_log(first, "worker.stream_opened")
    on_first, on_second = client_for(first.grpc_port), client_for(second.grpc_port)

    # The second replica has no worker: its submit NOTIFYs, the first one's LISTEN (a session
    # of its own through PgBouncer) hears it and dispatches at once, not a minute later.
    woken = await submit(on_second, {"handler": "support.e2e_tasks:add", "args": [2, 3]})
    [done] = await wait_status(on_first, [woken], [DONE], within=20)
    assert done.result == b"5"

    commands = [await submit(on_first, {"command": ["echo", f"job {i}"]}) for i in range(8)]
    handlers = [
        await submit(on_second, {"handler": "support.e2e_tasks:add", "args": [i, i]})
        for i in range(8)
    ]
    jobs = await wait_status(on_first, commands + handlers, [DONE], within=30)
    assert [j.result for j in jobs[:8]] == [f"job {i}\n".encode() for i in range(8)]
    assert [j.result for j in jobs[8:]] == [str(2 * i).encode() for i in range(8)]
    reasons = [event.reason for event in await logs(on_first, commands[0])]
    assert reasons == ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"]

    assert worker.terminate() == 0
    for server in (first, second):
        assert server.terminate() == 0
        assert '"level": "error"' not in server.log(), server.log()
    await on_first.channel.close()
    await on_second.channel.close()


@pytest.mark.parametrize("pool_mode", ["transaction", "statement"])
async def test_jq_server_refuses_to_start_behind_a_pooler_that_shares_sessions(
    start_server: ServerFactory,
    pgbouncers: PgBouncerFactory,
    empty_db_dsn: str,
    pool_mode: PoolMode,
) -> None:
    bouncer = pgbouncers(pool_mode)
    server = start_server({"JQ_DB_DSN": bouncer.through(empty_db_dsn)}, wait=False)
    assert server.process.wait(timeout=60) == 1
    log = server.log()
    failures = [line for line in log.splitlines() if "server.failed" in line]
    assert len(failures) == 1, log
    message = json.loads(failures[0])["message"]
    assert message.startswith("db.dsn leads to a connection pooler in transaction or statement")
    assert "set pool_mode = session for jobq's database in pgbouncer.ini" in message
    assert "Traceback" not in log
    assert "db.migrated" not in log
    assert await _user_objects(empty_db_dsn) == []  # nothing migrated
