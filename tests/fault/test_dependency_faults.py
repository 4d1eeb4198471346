"""Faults of what jq-server depends on, under a steady feed of jobs through two replicas:
PostgreSQL stopped for 10 s (`pg_ctl stop -m fast`, then started again), and Redis (claim
locks on) killed for a while and started again. cluster.py says what runs, ledger.py what is
counted. Submits refused during an outage are not accepted jobs; they are counted by code.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from fault.cluster import Cluster
from fault.feed import Feed, JobMix
from fault.processes import hold
from support.redis_server import start_redis_server

from jobq.storage.embedded import EmbeddedPostgres

RATE_PER_S = 6.0
"""Submits per second: about half of what the workers left after a fault can run at once."""
POSTGRES_DOWN_S = 10.0
REDIS_DOWN_S = 5.0


async def test_postgres_stopped_for_ten_seconds(
    cluster: Cluster, fault_postgres: EmbeddedPostgres
) -> None:
    """PostgreSQL goes away for 10 s, longer than the heartbeat timeout, while jobs run (some
    of them longer than the heartbeat timeout) and submits arrive: every accepted job ends
    DONE, and the jobs the outage interrupted run again once it is over."""
    servers = await cluster.start_replicas(2)
    for server in servers:
        cluster.start_worker(server)
    mix = JobMix(cluster.sink, random.Random(9), long_share=0.4)
    feed = Feed(mix, RATE_PER_S)
    feed.route([cluster.client(server) for server in servers])
    feed.start()
    try:
        await cluster.wait_runs(None, at_least=1, tagged=mix.is_long)
        await cluster.wait_runs(None, at_least=4)
        running = len(cluster.live_runs())
        stopping = time.time()
        await asyncio.to_thread(fault_postgres.stop, "fast")
        await hold(stopping, POSTGRES_DOWN_S)  # the outage itself
        await asyncio.to_thread(fault_postgres.start)
        up = time.time()
        cluster.fault("PostgreSQL down", stopping, until=up)
        back = [await cluster.ran_after(worker, up + 1.0) for worker in cluster.workers]
    finally:
        await feed.stop()
    report = await cluster.ledger(feed)
    late = [r.seconds - (up - stopping) for r in report.recoveries if r.seconds is not None]
    report.details.append(f"{running} executions running at the stop; down {up - stopping:.1f}s")
    if late:
        report.details.append(f"interrupted jobs running again {max(late):.2f}s after the start")
    report.expect(all(back), "a worker took no job after the outage")
    report.assert_clean()


async def test_redis_stopped(cluster: Cluster, tmp_path: Path) -> None:
    """redis-server (per-job claim locks on) is killed for a while and started again: jobs go
    on running meanwhile (the locks fail open) and none is interrupted, lost or run twice."""
    redis = start_redis_server(tmp_path / "redis")
    try:
        cluster.server_env.update({"JQ_REDIS_ENABLED": "true", "JQ_REDIS_URL": redis.url})
        servers = await cluster.start_replicas(2)
        for server in servers:
            cluster.start_worker(server)
        feed = Feed(JobMix(cluster.sink, random.Random(10)), RATE_PER_S)
        feed.route([cluster.client(server) for server in servers])
        feed.start()
        try:
            await cluster.wait_runs(None, at_least=4)
            redis.kill()
            down = time.time()
            during = await cluster.ran_after_any(down + 1.0)
            await hold(down, REDIS_DOWN_S)  # the outage itself
            redis = start_redis_server(tmp_path / "redis", port=redis.port)
            up = time.time()
            cluster.fault("Redis down", down, until=up)
            after = await cluster.ran_after_any(up + 1.0)
        finally:
            await feed.stop()
    finally:
        redis.stop()
    report = await cluster.ledger(feed)
    report.expect(during, "no job started while Redis was down")
    report.expect(after, "no job started after Redis was back")
    report.expect(report.interrupted == 0, f"{report.interrupted} jobs were interrupted")
    report.assert_clean()
