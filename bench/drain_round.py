"""One round of a scenario's drain: jq-server replicas in a schema of the round's own, the
round's no-op jobs, jq-workers started when the scenario says, and every program stopped
however the round ends.

The scenarios that set one mode against another (bench/events.py, bench/tracing.py,
bench/pinned_horizon.py) and the replicas scenario (bench/replicas.py) all drain this way; what
differs between them is passed in (the servers' and workers' environment: Kafka, OTEL_*; a
metrics port to scrape; how many servers) or written in the `async with` block, which is the
mode's own part: extra setup before the workers start (a pinned snapshot, a paused queue) and
what is measured. A schema per round gives each a fresh `jobs` table, so rounds do not read
each other's jobs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench import processes as p
from bench import scenarios as s

DONE_COUNT = "SELECT count(*) FROM jobs WHERE status = 'DONE'"
"""The round's finished jobs: what the scenarios wait on (a count of the round's own schema)."""


@dataclass
class DrainRound:
    """The running round: its database, schema and servers, and the workers it started."""

    dsn: str
    schema: str
    grpc_ports: list[int]
    servers: list[p.Program]
    metrics_port: int | None
    """jq-server's /metrics (the first server's) when the round asked for one, else None."""
    log_dir: Callable[[str], Path]
    workers: list[p.Program] = field(default_factory=list)

    @property
    def grpc_port(self) -> int:
        """The first server's gRPC port: where the jobs are submitted."""
        return self.grpc_ports[0]

    async def submit(self, jobs: int) -> None:
        """`jobs` no-op jobs into the default queue, two SubmitJobs calls in flight."""
        await s.submit_batches(self.grpc_port, jobs, s.NOOP, in_flight=2)

    def start_worker(self, concurrency: int, env: Mapping[str, str] | None = None) -> p.Program:
        """One more jq-worker on bench.handlers, connected to the servers in turn (worker i to
        server i mod N, as a load balancer would spread them); stopped when the round ends."""
        index = len(self.workers)
        port = self.grpc_ports[index % len(self.grpc_ports)]
        worker = p.start_program(
            "jq-worker",
            ["--import", "bench.handlers", "--concurrency", str(concurrency)],
            {
                "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{port}",
                "JQ_WORKER_METRICS_PORT": "0",
                "JQ_WORKER_HEALTH_PORT": "0",
                **(env or {}),
            },
            self.log_dir(f"worker-{index + 1}"),
        )
        self.workers.append(worker)
        return worker

    async def connect(self) -> asyncpg.Connection:
        """A connection to the round's database, its schema first on the search path."""
        return await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})

    async def fetch_int(self, sql: str) -> int:
        """One number (a count, a counter) read in the round's schema, on a connection of its
        own."""
        conn = await self.connect()
        try:
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()

    async def wait_count(
        self,
        sql: str,
        done: int,
        *,
        at_least: bool = False,
        within: float = 600,
        every: float = 0.02,
    ) -> float:
        """Seconds until `sql` (a count) equals `done` (or reaches it, `at_least`), polled
        every `every` seconds on one connection; TimeoutError after `within` seconds."""
        conn = await self.connect()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(within):
                while True:
                    count = await conn.fetchval(sql)
                    if count == done or (at_least and count >= done):
                        break
                    await asyncio.sleep(every)
            return time.perf_counter() - started
        finally:
            await conn.close()

    def stop(self) -> None:
        """Workers first (they hand back what they hold while the servers still answer), then
        the servers. Stopped, the programs' sessions end and flush their statistics, and they
        flush the spans they still hold; stopping twice is harmless."""
        for program in [*self.workers, *self.servers]:
            program.stop()


@asynccontextmanager
async def drain_round(
    dsn: str,
    workdir: Path,
    schema: str,
    *,
    servers: int = 1,
    env: Mapping[str, str] | None = None,
    metrics: bool = False,
    log_dir: Callable[[str], Path] | None = None,
) -> AsyncIterator[DrainRound]:
    """Start `servers` jq-servers on `dsn` in `schema` (with `env` added to theirs) and wait
    until they answer; `metrics` gives the first a /metrics port. `log_dir(name)` is where a
    program's log goes (`server-1`, `worker-2`...; by default all in `workdir`, each program's
    log after its program). Every program is stopped when the block ends."""
    where = log_dir or (lambda _name: workdir)
    metrics_port = p.free_port() if metrics else None
    ports = [p.free_port() for _ in range(servers)]
    round_ = DrainRound(dsn, schema, ports, [], metrics_port, where)
    try:
        # Started together: the migrations' advisory lock lets one replica create the schema
        # while the others wait, as replicas rolled out at once do.
        for i, port in enumerate(ports):
            server_env = {
                "JQ_DB_DSN": dsn,
                "JQ_DB_SCHEMA": schema,
                "JQ_METRICS_PORT": str(metrics_port) if metrics_port and i == 0 else "0",
                "JQ_HEALTH_PORT": "0",
                **(env or {}),
            }
            round_.servers.append(
                p.start_program(
                    "jq-server", ["--grpc-port", str(port)], server_env, where(f"server-{i + 1}")
                )
            )
        for port, server in zip(ports, round_.servers, strict=True):
            p.wait_for_port(port, server)
        if metrics_port is not None:
            p.wait_for_port(metrics_port, round_.servers[0])
        yield round_
    finally:
        round_.stop()
