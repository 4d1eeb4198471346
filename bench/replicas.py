"""What a job costs each process when jq-server runs as several replicas (issue 21): the drain
by N servers and M workers, with every process's CPU per job, so the server's cost per job (the
first thing that binds at scale) is visible and tracked run over run.

`--replicas 1x1,2x2` (the default) lists the configurations, servers x workers. Each drains
`--replicas-jobs` no-op jobs (default: as many as the plain drain) in a schema of its own: N
jq-server processes on the one database, M jq-workers, worker i connected to server i mod N
(round-robin, as a load balancer would spread them). The jobs are submitted into the paused
queue, the workers started and registered, and only then is the queue resumed (a NOTIFY
reaches every replica): the figures cover the drain alone, not the submits or the workers'
start-up imports, which would otherwise weigh M times on a drain of a few seconds. Figures,
per configuration (e.g. `replicas_2x2_...`):

- `jobs_per_s`: from the resume until the last job is DONE;
- `cpu_us_per_job`: each process's CPU over that window per job (`server-1`.., `worker-1`..,
  and `postgres`, null on a DSN's server, which is not the bench's to watch);
- `server_cpu_us_per_job`: all servers' CPU per job, the figure that says how many server
  cores a job rate needs; `server_cpu_vs_drain`: that over the plain 1x1 drain's
  (`drain_cpu_s.server` per job, in the same run). The scenario's own 1x1 sits beside it,
  measured the same way, so a difference of method shows as its ratio's distance from 1;
- `jobs_done`: jobs found DONE, each claimed once (attempt 1) and completed by one event, and
  checked equal to those submitted (the scenario fails otherwise: a figure over jobs lost or
  run twice would be a fake); `jobs_by_worker`: how many each worker ran.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import grpc
import psutil

from bench import processes as p
from bench import scenarios as s
from bench.drain_round import drain_round
from bench.postgres import BenchPostgres
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import admin_service_pb2_grpc

QUEUE = "default"


@dataclass(frozen=True)
class Layout:
    """One configuration: how many jq-server replicas, how many jq-workers."""

    servers: int
    workers: int

    @property
    def name(self) -> str:
        return f"{self.servers}x{self.workers}"


def parse_layouts(value: str) -> list[Layout]:
    """`NxM[,NxM...]` (each at least 1x1) as layouts; "" as none."""
    layouts = []
    for item in filter(None, value.split(",")):
        found = re.fullmatch(r"\s*([1-9][0-9]*)x([1-9][0-9]*)\s*", item)
        if found is None:
            raise ValueError(f"expected SERVERSxWORKERS, e.g. 2x2: {item!r}")
        layout = Layout(int(found.group(1)), int(found.group(2)))
        if layout in layouts:  # its schema and its figures' names would be taken
            raise ValueError(f"{layout.name} is listed twice")
        layouts.append(layout)
    return layouts


def layouts_argument(value: str) -> str:
    """argparse `type=` for --replicas: the list, checked and written as the JSON's
    `parameters` shows it (`1x1,2x2`)."""
    try:
        return ",".join(layout.name for layout in parse_layouts(value))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--replicas`, `--replicas-jobs`, `--no-replicas` for python -m bench."""
    parser.add_argument(
        "--replicas",
        type=layouts_argument,
        default="1x1,2x2",
        metavar="NxM[,NxM...]",
        help="the replicas scenario's configurations, jq-servers x jq-workers on one database "
        "(bench/replicas.py; default 1x1,2x2)",
    )
    parser.add_argument(
        "--replicas-jobs",
        type=int,
        default=None,
        help="no-op jobs each replicas configuration drains (default: --drain-jobs)",
    )
    parser.add_argument(
        "--no-replicas",
        dest="replicas",
        action="store_const",
        const="",
        help="skip the replicas scenario (bench/replicas.py: N jq-servers and M jq-workers, "
        "CPU per job of each process)",
    )


async def measure_replicas(
    pg: BenchPostgres, workdir: Path, args: argparse.Namespace, results: dict[str, object]
) -> dict[str, object]:
    """Every configuration of `args.replicas`, its figures named `replicas_NxM_...`; `results`
    holds the plain drain's (`drain_cpu_s`), which the server's CPU per job is set against."""
    jobs = args.replicas_jobs or args.drain_jobs
    drain_cpu = results.get("drain_cpu_s")
    plain = None
    if isinstance(drain_cpu, dict) and drain_cpu.get("server"):
        plain = float(drain_cpu["server"]) / args.drain_jobs * 1e6
    figures: dict[str, object] = {}
    for layout in parse_layouts(args.replicas):
        measured = await _drain(pg, workdir, layout, jobs, args.concurrency)
        server = measured["server_cpu_us_per_job"]
        assert isinstance(server, float)
        measured["server_cpu_vs_drain"] = round(server / plain, 3) if plain else None
        figures.update({f"replicas_{layout.name}_{k}": v for k, v in measured.items()})
    return figures


async def _drain(
    pg: BenchPostgres, workdir: Path, layout: Layout, jobs: int, concurrency: int
) -> dict[str, object]:
    schema = f"bench_replicas_{layout.name}"
    logs = functools.partial(_log_dir, workdir)
    async with drain_round(pg.dsn, workdir, schema, servers=layout.servers, log_dir=logs) as round_:
        ports = round_.grpc_ports
        await _set_paused(ports[0], paused=True)
        await round_.submit(jobs)
        for _ in range(layout.workers):
            round_.start_worker(concurrency)  # worker i to server i mod N
        workers, servers = round_.workers, round_.servers
        await _wait_registered(pg.dsn, schema, workers)
        await asyncio.sleep(0.5)  # each worker's job stream opens just after it registers
        watched = {f"server-{i + 1}": psutil.Process(x.process.pid) for i, x in enumerate(servers)}
        watched |= {f"worker-{i + 1}": psutil.Process(x.process.pid) for i, x in enumerate(workers)}
        before = {name: p.cpu_seconds([proc]) for name, proc in watched.items()}
        pg_before = _pg_cpu(pg)
        started = time.perf_counter()
        await _set_paused(ports[-1], paused=False)  # another replica than the pause's, if any
        await s.wait_all_done(_in_schema(pg.dsn, schema), jobs)
        elapsed = time.perf_counter() - started
        cpu: dict[str, float | None] = {
            name: p.cpu_seconds([proc]) - before[name] for name, proc in watched.items()
        }
        pg_after = _pg_cpu(pg)
        cpu["postgres"] = None if pg_after is None or pg_before is None else pg_after - pg_before
        checked = await _check_once(pg.dsn, schema, jobs)
    server_s = sum(v for k, v in cpu.items() if k.startswith("server-") and v is not None)
    return {
        "jobs_per_s": round(jobs / elapsed, 1),
        "cpu_us_per_job": {
            name: None if value is None else round(value / jobs * 1e6, 1)
            for name, value in cpu.items()
        },
        "server_cpu_us_per_job": round(server_s / jobs * 1e6, 1),
        **checked,
    }


def _log_dir(workdir: Path, name: str) -> Path:
    """A directory per process: start_program names its log after the program."""
    directory = workdir / "replicas" / name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def _set_paused(port: int, *, paused: bool) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    admin = admin_service_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
    try:
        if paused:
            await admin.PauseQueue(apb.PauseQueueRequest(name=QUEUE), timeout=10)
        else:
            await admin.ResumeQueue(apb.ResumeQueueRequest(name=QUEUE), timeout=10)
    finally:
        await channel.close()


async def _connect(dsn: str, schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"search_path": schema})


async def _wait_registered(
    dsn: str, schema: str, workers: list[p.Program], within: float = 120
) -> None:
    """Until every worker is ONLINE in the schema's workers table (or one of them exits)."""
    conn = await _connect(dsn, schema)
    try:
        async with asyncio.timeout(within):
            online = "SELECT count(*) FROM workers WHERE status = 'ONLINE'"
            while await conn.fetchval(online) < len(workers):
                for worker in workers:
                    if worker.process.poll() is not None:
                        log = worker.log.read_text()[-2000:]
                        raise RuntimeError(f"a jq-worker exited:\n{log}")
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


def _in_schema(dsn: str, schema: str) -> str:
    """`dsn` with the schema as its search_path (asyncpg passes a DSN's query parameters it
    does not know on as session settings), for the plain drain's wait (bench/scenarios.py
    wait_all_done), so that both drains are polled alike however that probe changes."""
    parts = urlsplit(dsn)
    query = [*parse_qsl(parts.query), ("search_path", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _check_once(dsn: str, schema: str, jobs: int) -> dict[str, object]:
    """Every job submitted was done exactly once: as many jobs as submitted, all DONE, each
    claimed once (attempt 1: no claim lost or repeated between replicas) and completed by one
    event. Raises otherwise; returns the count and how the jobs fell to the workers."""
    conn = await _connect(dsn, schema)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS total, count(*) FILTER (WHERE status = 'DONE') AS done, "
            "count(*) FILTER (WHERE attempt <> 1) AS not_once FROM jobs"
        )
        completions = await conn.fetchrow(
            "SELECT count(*) AS events, count(DISTINCT job_id) AS jobs FROM job_events "
            "WHERE to_status = 'DONE'"
        )
        by_worker = await conn.fetch(
            "SELECT count(*) AS n FROM jobs WHERE status = 'DONE' GROUP BY worker_id "
            "ORDER BY n DESC"
        )
    finally:
        await conn.close()
    assert row is not None
    assert completions is not None
    found = (row["total"], row["done"], row["not_once"], completions["events"], completions["jobs"])
    if found != (jobs, jobs, 0, jobs, jobs):
        raise RuntimeError(
            f"replicas drain in {schema}: {jobs} jobs submitted, found (jobs, DONE, claimed "
            f"other than once, DONE events, jobs with one) = {found}"
        )
    return {"jobs_done": row["done"], "jobs_by_worker": [r["n"] for r in by_worker]}


def _pg_cpu(pg: BenchPostgres) -> float | None:
    """The local server's CPU so far (backends that exited meanwhile are lost: the drain's
    stay connected throughout); None on a DSN's server, which is not the bench's to watch."""
    processes = pg.processes()
    return None if processes is None else p.cpu_seconds(processes)
