"""The fault soak (`make soak`): one cluster under a steady feed of jobs for JQ_SOAK_MINUTES
(default 10), hit by a random sequence of the fault suite's faults, one after another with
random calm in between, then one ledger over everything (see ledger.py): lost = stuck =
excess = overlap = stale = orphans = 0, and the measured recovery per kind of fault.

The cluster: two jq-server replicas with Redis claim locks on, four supervised workers (a
supervisor restarts any that dies, under its id), one of them behind a TCP proxy. The faults:
worker SIGKILL (back after a random delay, under its id), worker restarted at once, worker
SIGSTOP (a short stall, or past the heartbeat timeout), partition of the proxied worker, server
SIGKILL (restarted after a random delay), server SIGSTOP, PostgreSQL stopped, Redis stopped, a
poison job, a job that blocks its worker's event loop.

Not in `make test` and not in CI: pytest collects only `test_*.py`, and this file is named
`soak_run.py`, so only `make soak` (which names it) runs it. JQ_SOAK_SEED replays a sequence;
the seed is printed first.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from fault.cluster import HEARTBEAT_TIMEOUT_S, Cluster
from fault.feed import Feed, JobMix
from fault.ledger import TERMINAL
from fault.processes import Replica, Worker, hold
from fault.report import Report
from fault.sink_tasks import command_payload, handler_payload
from fault.tcp_proxy import TcpProxy
from support.redis_server import RedisServer, start_redis_server

from jobq.storage.embedded import EmbeddedPostgres

MINUTES = float(os.environ.get("JQ_SOAK_MINUTES") or 10)
SEED = int(os.environ.get("JQ_SOAK_SEED") or random.randrange(1 << 31))
RATE_PER_S = 6.0
CALM_S = (3.0, 10.0)
"""Seconds between one fault's end and the next fault."""


class Soak:
    """The cluster, its parts, and one method per kind of fault."""

    def __init__(
        self,
        cluster: Cluster,
        postgres: EmbeddedPostgres,
        redis: RedisServer,
        redis_dir: Path,
        rng: random.Random,
    ) -> None:
        self.cluster = cluster
        self.postgres = postgres
        self.redis = redis
        self.redis_dir = redis_dir
        self.rng = rng
        self.feed: Feed | None = None
        self.replicas: list[Replica] = []
        self.workers: list[Worker] = []
        self.proxy: TcpProxy | None = None
        self.specials = 0
        self.log: list[str] = []

    async def start(self) -> None:
        cluster = self.cluster
        self.replicas = await cluster.start_replicas(2)
        first, second = self.replicas
        self.workers = [
            cluster.start_worker(first, via_proxy=True, supervised=True),
            cluster.start_worker(first, supervised=True),
            cluster.start_worker(second, supervised=True),
            cluster.start_worker(second, supervised=True),
        ]
        [self.proxy] = cluster.proxies
        mix = JobMix(cluster.sink, random.Random(self.rng.random()), long_share=0.2)
        self.feed = Feed(mix, RATE_PER_S)
        self._route()
        self.feed.start()

    def _route(self, without: Replica | None = None) -> None:
        assert self.feed is not None
        self.feed.route([self.cluster.client(r) for r in self.replicas if r is not without])

    def _note(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {text}"
        self.log.append(line)
        print(f"[soak] {line}", flush=True)

    # --- faults --------------------------------------------------------------------------------

    async def worker_sigkill(self) -> None:
        worker = self.rng.choice(self.workers)
        delay = self.rng.uniform(0.0, 2 * HEARTBEAT_TIMEOUT_S)
        died = worker.kill()
        self._note(f"SIGKILL {worker.name}, back after {delay:.1f}s")
        self.cluster.fault("worker SIGKILL", died, workers=[worker])
        await hold(died, delay)
        worker.launch()

    async def worker_restart(self) -> None:
        worker = self.rng.choice(self.workers)
        died = worker.kill(restart=True)
        self._note(f"SIGKILL {worker.name}, restarted at once under its id")
        self.cluster.fault("worker restarted", died, workers=[worker])

    async def worker_sigstop(self) -> None:
        worker = self.rng.choice(self.workers)
        seconds = self.rng.choice([self.rng.uniform(0.3, 2.0), self.rng.uniform(4.0, 8.0)])
        self._note(f"SIGSTOP {worker.name} for {seconds:.1f}s")
        stopped = worker.pause()
        await hold(stopped, seconds)
        resumed = worker.resume()
        self.cluster.fault("worker SIGSTOP", stopped, resumed, workers=[worker], frozen=True)

    async def partition(self) -> None:
        assert self.proxy is not None
        seconds = self.rng.uniform(1.0, 8.0)
        self._note(f"partition {self.workers[0].name} for {seconds:.1f}s")
        frozen = self.proxy.freeze()
        await hold(frozen, seconds)
        thawed = self.proxy.thaw()
        self.cluster.fault("partition", frozen, thawed, workers=[self.workers[0]])

    async def server_sigkill(self) -> None:
        replica = self.rng.choice(self.replicas)
        delay = self.rng.uniform(0.0, 2 * HEARTBEAT_TIMEOUT_S)
        self._note(f"SIGKILL {replica.name}, restarted after {delay:.1f}s")
        self._route(without=replica)
        killed = replica.kill()
        await hold(killed, delay)
        await replica.restart()
        self.cluster.fault("server SIGKILL", killed, time.time(), workers=self._on(replica))
        self._route()

    async def server_sigstop(self) -> None:
        replica = self.rng.choice(self.replicas)
        seconds = self.rng.uniform(0.5, 8.0)
        self._note(f"SIGSTOP {replica.name} for {seconds:.1f}s")
        self._route(without=replica)
        stopped = replica.pause()
        await hold(stopped, seconds)
        resumed = replica.resume()
        self.cluster.fault("server SIGSTOP", stopped, resumed, workers=self._on(replica))
        self._route()

    async def postgres_down(self) -> None:
        seconds = self.rng.uniform(2.0, 12.0)
        self._note(f"PostgreSQL down for {seconds:.1f}s")
        stopping = time.time()
        await asyncio.to_thread(self.postgres.stop, "fast")
        await hold(stopping, seconds)
        await asyncio.to_thread(self.postgres.start)
        self.cluster.fault("PostgreSQL down", stopping, time.time())

    async def redis_down(self) -> None:
        seconds = self.rng.uniform(1.0, 8.0)
        self._note(f"Redis down for {seconds:.1f}s")
        self.redis.kill()
        down = time.time()
        await hold(down, seconds)
        self.redis = start_redis_server(self.redis_dir, port=self.redis.port)
        self.cluster.fault("Redis down", down, time.time())

    async def poison(self) -> None:
        await self._special("poison", command_payload, poison=True)

    async def blocker(self) -> None:
        await self._special("blocker", handler_payload, blocking=True)

    async def _special(self, kind: str, make: Callable[..., bytes], **how: bool) -> None:
        assert self.feed is not None
        self.specials += 1
        tag = f"{kind}{self.specials}"
        seconds = HEARTBEAT_TIMEOUT_S + 2.0
        self._note(f"{kind} job {tag}")
        job_id = await self.feed.submit(
            tag, make(self.cluster.sink, tag, seconds, **how), expect=TERMINAL, max_retries=1
        )
        status = await self.cluster.wait_terminal(job_id, within=40)
        runs = self.cluster.faults_at_runs(tag, kind)
        self._note(f"{tag} {status} after {runs} executions")

    def _on(self, replica: Replica) -> list[Worker]:
        return [w for w in self.workers if w.server_port in (replica.port, self._proxied(replica))]

    def _proxied(self, replica: Replica) -> int | None:
        proxy = self.proxy
        return proxy.port if proxy is not None and proxy.upstream_port == replica.port else None

    def faults(self) -> list[Callable[[], Awaitable[None]]]:
        return [
            self.worker_sigkill,
            self.worker_restart,
            self.worker_sigstop,
            self.partition,
            self.server_sigkill,
            self.server_sigstop,
            self.postgres_down,
            self.redis_down,
            self.poison,
            self.blocker,
        ]


def _per_kind(report: Report) -> str:
    kinds: dict[str, list[float]] = {}
    for recovery in report.recoveries:
        if recovery.seconds is not None:
            kinds.setdefault(recovery.fault, []).append(recovery.seconds)
    return "; ".join(
        f"{kind}: max {max(s):.2f}s p50 {statistics.median(s):.2f}s n={len(s)}"
        for kind, s in sorted(kinds.items())
    )


@pytest.mark.timeout(MINUTES * 60 + 600)
async def test_soak(cluster: Cluster, fault_postgres: EmbeddedPostgres, tmp_path: Path) -> None:
    print(f"\n[soak] {MINUTES:g} minutes, JQ_SOAK_SEED={SEED}", flush=True)
    rng = random.Random(SEED)
    redis_dir = tmp_path / "redis"
    redis = start_redis_server(redis_dir)
    cluster.server_env.update({"JQ_REDIS_ENABLED": "true", "JQ_REDIS_URL": redis.url})
    soak = Soak(cluster, fault_postgres, redis, redis_dir, rng)
    try:
        await soak.start()
        await cluster.wait_runs(None, at_least=4)
        end = time.monotonic() + MINUTES * 60
        while time.monotonic() < end:
            await rng.choice(soak.faults())()
            await asyncio.sleep(rng.uniform(*CALM_S))  # the soak's rhythm, not a wait
        assert soak.feed is not None
        await soak.feed.stop()
        report = await cluster.ledger(soak.feed)
    finally:
        if soak.feed is not None:
            await soak.feed.stop()
        soak.redis.stop()
    report.details.append(f"{len(cluster.faults)} faults, seed {SEED}")
    report.details.append(f"recovery by fault: {_per_kind(report)}")
    report.assert_clean()
