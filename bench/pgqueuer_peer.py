"""pgqueuer, measured beside jobq in the same run: `measure_peer`, or alone with
`python -m bench.pgqueuer_peer [--postgres embedded|system|DSN] [--drain-jobs N] ...`.

It runs on the same server and database as jobq (`pg.dsn`); pgqueuer's objects are all named
pgqueuer* (no clash with jobq's), its schema is installed if absent (upgraded if present), and
nothing of jobq's is touched. Same durability as jobq's figures: the server's fsync and
synchronous_commit (on) stay as they are, and pgqueuer's tables are LOGGED (its `durable`
default). Every pgqueuer session, here and in the worker, sets `jit = off`, as jobq's do, so
the comparison is about the queues and not about PostgreSQL 15's LLVM JIT compiling short
statements whose estimated cost is high (see jobq.storage.pool). One difference stays, as
the queues are built: every pgqueuer commit, its dequeues included, waits for the WAL flush,
while jobq's claim sessions commit without waiting (`synchronous_commit = off` for those
sessions only, jobq.storage.pool.create_claim_pool); pgqueuer has no such setting.

The scenarios mirror jobq's (bench/scenarios.py, bench/sdk_submits.py):

- enqueue_bulk: `Queries.enqueue` with lists, batches of 1,000, two in flight on two
  connections (jobq: SubmitJobs of 1,000, two in flight);
- enqueue_single: one caller, one connection, each enqueue awaited before the next (jobq: the
  SDK's plain submit in sequence);
- drain: no-op jobs (`async def` doing nothing) enqueued in bulk, then one worker process
  (`python -m bench.pgqueuer_worker`: what `pgq run` does, which fails here, see there)
  timed from its start until every job is done:
  pgqueuer deletes a finished job from its queue table and logs it in pgqueuer_log in the same
  statement, so "done" is no queued or picked row left, then every job's 'successful' row;
- pickup: jobs enqueued one at a time at a fixed rate into the idle worker; start - submit.

The worker runs with pgqueuer's defaults (`settings` in the result; `pgq run`'s: a batch of 10
per dequeue, no `max_concurrent_tasks`, dequeue and heartbeat timeouts of 30 s, NOTIFY waking
it, uvloop), on one asyncpg connection (AsyncpgDriver; the guide's advice for a QueueManager),
after `pgq autovac` (the guide's autovacuum and fillfactor for its high-churn queue table).
These are the figures the ratios compare with, as issue 17 measured pgqueuer (3,119 jobs/s).

The drain runs a second time tuned as pgqueuer's performance guide advises for short jobs
(`tuned`: a batch of 100, which also sizes its status-log buffer, so one dequeue and one log
statement, each a commit, serve 100 jobs instead of 10; in 8,000-job drains on this kind of
machine 10 ran about half as fast, 50 and 200 a little slower than 100). Its ratio is
reported beside the others (`ratio_vs_pgqueuer.drain_python_vs_tuned`): a team that tunes
pgqueuer sees that one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import asyncpg
import psutil
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from bench import postgres as pg_target
from bench import processes as p
from bench import scenarios as s
from bench.pgqueuer_worker import (
    DEFAULT_BATCH_SIZE,
    NOOP,
    SESSION_SETTINGS,
    STAMP,
    TUNED_BATCH_SIZE,
)

BATCH = 1000
BULK, SINGLE = "bench_bulk", "bench_single"  # entrypoints no worker runs
SETTINGS = {
    "batch_size": f"{DEFAULT_BATCH_SIZE} (default)",
    "max_concurrent_tasks": "unlimited (default)",
    "dequeue_timeout_s": "30 (default)",
    "heartbeat_timeout_s": "30 (default)",
    "log_aggregation_interval_s": "30 (default)",
    "driver": "AsyncpgDriver, one connection",
    "event_loop": "uvloop (pgq run's choice when installed)",
    "runner": "pgqueuer.run (pgq run's supervisor; pgq run itself fails, see pgqueuer_worker)",
    "durability": "durable (default)",
    "autovacuum": "pgq autovac",
    "log_level": "warning",
}


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings=SESSION_SETTINGS)


async def install(queries: Queries) -> None:
    """pgqueuer's schema in this database, whether or not it was there (install fails on an
    existing schema; upgrade converges one), with its recommended autovacuum settings."""
    if await queries.schema_is_installed():
        await queries.upgrade()
    else:
        await queries.install()
    await queries.optimize_autovacuum()


async def enqueue_batches(lanes: Sequence[Queries], entrypoint: str, count: int) -> list[int]:
    """`count` jobs in batches of BATCH, one batch in flight per lane; their ids."""
    sizes = [min(BATCH, count - offset) for offset in range(0, count, BATCH)]
    ids: list[int] = []

    async def lane(queries: Queries) -> None:
        while sizes:
            size = sizes.pop()  # built on its turn, as a producer would
            payloads: list[bytes | None] = [None] * size
            ids.extend(await queries.enqueue([entrypoint] * size, payloads, [0] * size))

    await asyncio.gather(*(lane(queries) for queries in lanes))
    return ids


async def enqueue_single(queries: Queries, count: int) -> float:
    await queries.enqueue(SINGLE, None)  # statements prepared before the clock
    started = time.perf_counter()
    for _ in range(count):
        await queries.enqueue(SINGLE, None)
    return count / (time.perf_counter() - started)


def start_worker(dsn: str, stamps: Path, workdir: Path, batch_size: int) -> p.Program:
    """`python -m bench.pgqueuer_worker` (`pgq run`'s equivalent, see there), importing jobq
    and bench from this tree as bench.processes.start_program's programs do."""
    log = workdir / "pgqueuer-worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join((str(p.REPO / "src"), str(p.REPO))),
        "BENCH_PGQ_DSN": dsn,
        "BENCH_PGQ_STAMPS": str(stamps),
    }
    args = [sys.executable, "-m", "bench.pgqueuer_worker", "--batch-size", str(batch_size)]
    with open(log, "wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    return p.Program("pgqueuer-worker", process, log)


async def wait_drained(
    conn: asyncpg.Connection, queries: Queries, ids: list[int], worker: p.Program
) -> None:
    """Until no job of `ids`' entrypoint is queued or picked (polled every 20 ms; both probes
    use pgqueuer's partial indexes), then check that each one was logged successful."""
    table, log = queries.qbe.settings.queue_table, queries.qbe.settings.queue_table_log
    busy = (
        f"SELECT EXISTS (SELECT 1 FROM {table} WHERE entrypoint = $1 AND status = 'queued') "
        f"OR EXISTS (SELECT 1 FROM {table} WHERE entrypoint = $1 AND status = 'picked')"
    )
    async with asyncio.timeout(600):
        while await conn.fetchval(busy, NOOP):
            if worker.process.poll() is not None:
                raise RuntimeError(f"pgq exited:\n{worker.log.read_text()[-2000:]}")
            await asyncio.sleep(0.02)
    done = await conn.fetchval(
        f"SELECT count(*) FROM {log} WHERE job_id = ANY($1::bigint[]) AND status = 'successful'",
        ids,
    )
    if done != len(ids):
        raise RuntimeError(f"{len(ids) - done} of {len(ids)} pgqueuer jobs did not succeed")


async def settle(conn: asyncpg.Connection, queries: Queries) -> None:
    """As bench.scenarios.settle: vacuum what the drain churned and checkpoint, so the pickup
    measures an idle system."""
    names = queries.qbe.settings
    await conn.execute(f"VACUUM (ANALYZE) {names.queue_table}, {names.queue_table_log}")
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await conn.execute("CHECKPOINT")


def read_stamps(stamps: Path) -> dict[int, float]:
    """The worker's `job_id start_time` lines so far (a few KB: read whole, synchronously)."""
    text = stamps.read_text() if stamps.exists() else ""
    complete = text[: text.rfind("\n") + 1]  # a line still being written is not read
    return {int(i): float(t) for i, t in (line.split() for line in complete.splitlines())}


async def pickup_latency(
    queries: Queries, stamps: Path, count: int, rate: float
) -> dict[str, float]:
    """As bench.scenarios.pickup_latency: `count` jobs at `rate`/s, start - submit in ms."""
    submitted: dict[int, float] = {}
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for _ in range(count):
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += interval
        sent = time.time()
        (job_id,) = await queries.enqueue(STAMP, None)
        submitted[job_id] = sent
    async with asyncio.timeout(120):
        while True:  # polled every 20 ms, as bench.scenarios polls job results
            started = read_stamps(stamps)
            if submitted.keys() <= started.keys():
                break
            await asyncio.sleep(0.02)
    latencies = [(started[job_id] - sent) * 1000 for job_id, sent in submitted.items()]
    return s.latency_quantiles(latencies)


async def drain(
    pg: pg_target.BenchPostgres,
    workdir: Path,
    lanes: list[Lane],
    jobs: int,
    batch_size: int,
) -> tuple[dict[str, object], p.Program, p.PeakRss]:
    """`jobs` no-op jobs enqueued in bulk, then one worker started and timed until all are
    done; the figures, and the worker (still running, idle) with its RSS sampler."""
    ids = await enqueue_batches(lanes, NOOP, jobs)
    pg_before = p.cpu_seconds(pg.processes() or [])
    started = time.perf_counter()
    worker = start_worker(pg.dsn, workdir / "pgqueuer-stamps.txt", workdir, batch_size)
    rss = p.PeakRss(worker.process.pid).start()
    try:
        await wait_drained(lanes[0].driver_connection, lanes[0], ids, worker)
        elapsed = time.perf_counter() - started
        pg_procs = pg.processes()  # None on a DSN's server: not ours to measure
        # Inside the try: psutil raises if the worker has exited meanwhile, and the caller
        # only gets the worker to stop when this returns.
        figures: dict[str, object] = {
            "drain_jobs_per_s": round(jobs / elapsed, 1),
            "drain_cpu_s": {
                "worker": round(p.cpu_seconds([psutil.Process(worker.process.pid)]), 2),
                "postgres": None
                if pg_procs is None
                else round(p.cpu_seconds(pg_procs) - pg_before, 2),
            },
        }
    except BaseException:
        worker.stop()
        rss.stop()
        raise
    return figures, worker, rss


async def measure_peer(
    pg: pg_target.BenchPostgres,
    workdir: Path,
    *,
    drain_jobs: int,
    bulk_jobs: int,
    single_jobs: int,
    pickup_jobs: int,
    pickup_rate: float,
) -> dict[str, object]:
    """The peer's figures at pgqueuer's defaults, and its drain tuned (`tuned`)."""
    results: dict[str, object] = {
        "version": version("pgqueuer"),
        "settings": dict(SETTINGS),
    }
    conns: list[asyncpg.Connection] = []
    try:
        for _ in range(2):  # one by one, so that `finally` closes whatever was opened
            conns.append(await connect(pg.dsn))
        lanes = [Lane(conn) for conn in conns]
        queries = lanes[0]
        await install(queries)

        started = time.perf_counter()
        await enqueue_batches(lanes, BULK, bulk_jobs)
        elapsed = time.perf_counter() - started
        results["enqueue_bulk_jobs_per_s"] = round(bulk_jobs / elapsed, 1)
        single = await enqueue_single(queries, single_jobs)
        results["enqueue_single_jobs_per_s"] = round(single, 1)
        await queries.clear_queue([BULK, SINGLE])  # the drain's queue holds its jobs only

        figures, worker, rss = await drain(pg, workdir, lanes, drain_jobs, DEFAULT_BATCH_SIZE)
        results.update(figures)
        try:
            await settle(conns[0], queries)
            await asyncio.sleep(1.0)  # let the worker go idle
            stamps = workdir / "pgqueuer-stamps.txt"
            results.update(await pickup_latency(queries, stamps, pickup_jobs, pickup_rate))
        finally:
            worker.stop()
            results["worker_peak_rss_mb"] = rss.stop()

        figures, worker, rss = await drain(pg, workdir, lanes, drain_jobs, TUNED_BATCH_SIZE)
        worker.stop()
        figures["worker_peak_rss_mb"] = rss.stop()
        results["tuned"] = {"batch_size": TUNED_BATCH_SIZE, **figures}
    finally:
        for conn in conns:
            await conn.close()
    return results


class Lane(Queries):
    """pgqueuer's Queries on one asyncpg connection, which the bench also reads from."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(AsyncpgDriver(conn))
        self.driver_connection = conn


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pgqueuer_peer", description=__doc__)
    pg_target.add_target_argument(parser, "the PostgreSQL to run on, as for python -m bench")
    parser.add_argument("--drain-jobs", type=int, default=20_000)
    parser.add_argument("--bulk-jobs", type=int, default=20_000)
    parser.add_argument("--single-jobs", type=int, default=1_000)
    parser.add_argument("--pickup-jobs", type=int, default=500)
    parser.add_argument("--pickup-rate", type=float, default=50.0, help="jobs per second")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    pg = await pg_target.start(args.postgres, workdir / "pg", p.free_port())
    try:
        return {
            "postgres": await pg_target.describe(pg),
            "pgqueuer": await measure_peer(
                pg,
                workdir,
                drain_jobs=args.drain_jobs,
                bulk_jobs=args.bulk_jobs,
                single_jobs=args.single_jobs,
                pickup_jobs=args.pickup_jobs,
                pickup_rate=args.pickup_rate,
            ),
        }
    finally:
        await pg.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="jobq-pgqueuer-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
