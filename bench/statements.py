"""PostgreSQL's side of a drain, statement by statement: `python -m bench.statements`.

Starts a fresh server (`--postgres embedded|system`) with pg_stat_statements loaded, one
jq-server, submits `--jobs` no-op jobs in batches, starts one jq-worker, waits until all are
done, and prints the statements by total execution time: calls, total and mean milliseconds,
rows, and the share of the whole. With `--wal`, also the WAL bytes each statement wrote
(pg_stat_statements' wal_bytes). What `make bench` measures from outside (PostgreSQL's CPU per
job), this splits by statement: where to look first when the database is the cost.

Not part of `make bench` (pg_stat_statements costs a little on every statement, and the
benchmark's figures are of a server without it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from bench import processes as p
from bench import scenarios as s
from jobq.storage.embedded import EmbeddedPostgres, system_bin_dir

SETTINGS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}


async def profile(target: str, jobs: int, workdir: Path, top: int) -> list[asyncpg.Record]:
    binaries = system_bin_dir() if target == "system" else None
    if target == "system" and binaries is None:
        raise SystemExit(
            "--postgres system needs the distribution's server: apt-get install postgresql"
        )
    server = EmbeddedPostgres(
        workdir / "pg", port=p.free_port(), tcp=True, settings=SETTINGS, binaries=binaries
    )
    server.start()
    try:
        return await _profile_on(server, jobs, workdir, top)
    finally:
        server.stop()  # also when jq-server fails to start: no PostgreSQL left behind


async def _profile_on(
    server: EmbeddedPostgres, jobs: int, workdir: Path, top: int
) -> list[asyncpg.Record]:
    dsn = server.dsn("postgres")
    port = p.free_port()
    env = {"JQ_DB_DSN": dsn, "JQ_METRICS_PORT": "0", "JQ_HEALTH_PORT": "0"}
    jq_server = p.start_program("jq-server", ["--grpc-port", str(port)], env, workdir)
    worker: p.Program | None = None
    try:
        p.wait_for_port(port, jq_server)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            await s.submit_batches(port, jobs, s.NOOP, in_flight=2)
            await conn.execute("SELECT pg_stat_statements_reset()")  # the drain alone
            started = time.perf_counter()
            worker_env = {
                "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{port}",
                "JQ_WORKER_METRICS_PORT": "0",
                "JQ_WORKER_HEALTH_PORT": "0",
            }
            worker_args = ["--import", "bench.handlers", "--concurrency", "256"]
            worker = p.start_program("jq-worker", worker_args, worker_env, workdir)
            await s.wait_all_done(dsn, jobs)
            print(f"drain: {jobs / (time.perf_counter() - started):,.0f} jobs/s")
            return await conn.fetch(
                "SELECT calls, total_exec_time, mean_exec_time, rows, wal_bytes,"
                " 100 * total_exec_time / sum(total_exec_time) OVER () AS share,"
                " regexp_replace(left(query, 90), '\\s+', ' ', 'g') AS query"
                " FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $1",
                top,
            )
        finally:
            await conn.close()
    finally:
        if worker is not None:
            worker.stop()
        jq_server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.statements", description=__doc__)
    parser.add_argument("--postgres", choices=("embedded", "system"), default="embedded")
    parser.add_argument("--jobs", type=int, default=20_000, help="no-op jobs drained")
    parser.add_argument("--top", type=int, default=12, help="statements shown")
    parser.add_argument("--wal", action="store_true", help="show WAL bytes per statement too")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="jobq-statements-") as tmp:
        rows = asyncio.run(profile(args.postgres, args.jobs, Path(tmp), args.top))
    for row in rows:
        wal = f" {row['wal_bytes'] / args.jobs:8.0f} B/job" if args.wal else ""
        print(
            f"{row['share']:5.1f}% {row['calls']:7d} calls {row['total_exec_time']:9.1f} ms"
            f" {row['mean_exec_time']:7.3f} ms/call {row['rows']:7d} rows{wal}  {row['query']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
