"""The pgqueuer worker of the peer benchmark (bench/pgqueuer_peer.py):
`python -m bench.pgqueuer_worker [--batch-size N]`.

It does what `pgq run bench.pgqueuer_worker:create --batch-size N --log-level warning` does
(pgqueuer's logging set up at that level, then `pgqueuer.run`, the CLI's own supervisor, on
uvloop as the CLI picks it when installed; SIGTERM stops it gracefully), because that command
fails before starting in this environment: pgqueuer 1.6.0's `--log-level` parser hands
`setup_fancy_logger` a str where it expects a LogLevel under the installed typer, whatever
the level (the default included).

Two entrypoints: `bench_noop` does nothing (the drain measures the queue's own cost per job,
as bench.handlers:noop does for jq-worker) and `bench_stamp` appends `job_id start_unix_time`
to the file named by BENCH_PGQ_STAMPS (pickup latency, as bench.handlers:started_at). The
DSN comes in BENCH_PGQ_DSN. The session turns JIT off, as jobq's sessions do.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TextIO

import asyncpg
import pgqueuer
import uvloop
from pgqueuer import PgQueuer
from pgqueuer.core.logconfig import LogLevel, setup_fancy_logger
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

NOOP = "bench_noop"
STAMP = "bench_stamp"
SESSION_SETTINGS = {"jit": "off"}
"""Every pgqueuer session of the benchmark, worker and bench side (see pgqueuer_peer)."""

DEFAULT_BATCH_SIZE = 10
"""Jobs per dequeue: pgqueuer's default (`pgq run --batch-size`), what its figures run with."""
TUNED_BATCH_SIZE = 100
"""Jobs per dequeue of the tuned drain (bench/pgqueuer_peer.py says why)."""


def open_stamps() -> TextIO:
    """Line-buffered: each stamp reaches the file as its job runs, for the bench to read."""
    return open(os.environ["BENCH_PGQ_STAMPS"], "a", buffering=1)


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    """The factory: one asyncpg connection, as pgqueuer's performance guide advises for a
    QueueManager (its LISTEN stays on it; a pool is for producers)."""
    connection = await asyncpg.connect(
        os.environ["BENCH_PGQ_DSN"], server_settings=SESSION_SETTINGS
    )
    stamps = open_stamps()
    try:
        pgq = PgQueuer(AsyncpgDriver(connection))

        @pgq.entrypoint(NOOP)
        async def noop(job: Job) -> None:
            """Does nothing."""

        @pgq.entrypoint(STAMP)
        async def stamp(job: Job) -> None:
            started = time.time()  # first, before the write
            stamps.write(f"{job.id} {started}\n")

        yield pgq
    finally:
        stamps.close()
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pgqueuer_worker")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args()
    setup_fancy_logger(LogLevel.WARNING)  # as jq-worker's, warnings and errors only
    # pgq run's defaults otherwise: dequeue and heartbeat timeouts of 30 s, no
    # max_concurrent_tasks, continuous mode.
    uvloop.run(
        pgqueuer.run(
            create,
            batch_size=args.batch_size,
            dequeue_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=30),
        )
    )


if __name__ == "__main__":
    main()
