"""Faults of jq-server replicas, two of them on one database, under a steady feed of jobs:
SIGKILL in the middle of dispatching (restarted at once, as a supervisor would), and SIGSTOP
past the heartbeat timeout then SIGCONT. cluster.py says what runs, ledger.py what is counted.
"""

from __future__ import annotations

import asyncio
import random
import time

import asyncpg
from fault.cluster import RECOVERY_BOUND_S, Cluster
from fault.feed import Feed, JobMix
from fault.processes import hold

RATE_PER_S = 6.0
"""Submits per second: about half of what the workers left after a fault can run at once."""
BURST = 16
"""Jobs submitted through the doomed replica just before it is killed: it is claiming and
handing them out when it dies."""
FREEZE_S = RECOVERY_BOUND_S + 1.0


async def _assigned_soon(dsn: str, within: float) -> int:
    """Wait (briefly) until some job is ASSIGNED: claimed, not yet started. How many."""
    deadline = time.monotonic() + within
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            count: int = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'ASSIGNED'")
            if count or time.monotonic() > deadline:
                return count
            await asyncio.sleep(0.002)
    finally:
        await conn.close()


async def test_server_sigkill_mid_dispatch_with_two_replicas(cluster: Cluster) -> None:
    """One of two replicas is SIGKILLed right after a burst of submits, while it claims and
    hands out jobs, and is started again at once on its port. Its workers reconnect; the jobs
    it had claimed or handed out are not lost, stuck or run twice at once."""
    doomed, other = await cluster.start_replicas(2)
    attached = [cluster.start_worker(doomed) for _ in range(2)]
    cluster.start_worker(other)
    mix = JobMix(cluster.sink, random.Random(7), long_share=0.2)
    feed = Feed(mix, RATE_PER_S)
    feed.route([cluster.client(doomed), cluster.client(other)])
    feed.start()
    try:
        await cluster.wait_runs(attached[0], at_least=2)
        burst = [
            asyncio.create_task(feed.submit(f"burst{i:02d}", mix(f"burst{i:02d}"), target=0))
            for i in range(BURST)
        ]
        assigned = await _assigned_soon(cluster.dsn, within=2.0)
        feed.route([cluster.client(other)])
        killed = doomed.kill()
        cluster.fault("server SIGKILL", killed, workers=attached)
        await asyncio.gather(*burst)
        held = await cluster.held(attached)
        await doomed.restart()
        feed.route([cluster.client(doomed), cluster.client(other)])
        back = [await cluster.ran_after(worker, killed) for worker in attached]
    finally:
        await feed.stop()
    report = await cluster.ledger(feed)
    report.details.append(
        f"at the kill: {assigned} ASSIGNED seen, held by its workers {dict(held)};"
        f" restarted in {doomed.starts - 1} start(s)"
    )
    report.expect(sum(held.values()) > 0, "its workers held no job when it was killed")
    report.expect(all(back), "a worker of the killed replica took no job after its restart")
    report.assert_clean()


async def test_server_sigstop_past_the_heartbeat_timeout(cluster: Cluster) -> None:
    """One of two replicas is SIGSTOPped for longer than the recovery bound, then SIGCONTed.
    Its worker cannot heartbeat meanwhile: the other replica declares it lost and its jobs run
    again within the bound; the worker stops them itself; after SIGCONT the woken replica
    acts on nothing stale, and its worker takes jobs again."""
    frozen, other = await cluster.start_replicas(2)
    attached = cluster.start_worker(frozen)
    for _ in range(2):
        cluster.start_worker(other)
    mix = JobMix(cluster.sink, random.Random(8), python_share=0.4, long_share=0.3)
    feed = Feed(mix, RATE_PER_S)
    feed.route([cluster.client(frozen), cluster.client(other)])
    feed.start()
    try:
        await cluster.wait_runs(attached, at_least=1, tagged=mix.is_long)
        await cluster.wait_runs(attached, at_least=3)
        hit = [tag for tag, _ in cluster.live_runs(attached)]
        feed.route([cluster.client(other)])
        stopped = frozen.pause()
        await cluster.wait_rerun(hit, after=stopped, within=FREEZE_S)
        await hold(stopped, FREEZE_S)  # the pause itself
        resumed = frozen.resume()
        cluster.fault("server SIGSTOP", stopped, until=resumed, workers=[attached])
        feed.route([cluster.client(frozen), cluster.client(other)])
        back = await cluster.ran_after(attached, resumed)
    finally:
        await feed.stop()
    report = await cluster.ledger(feed, bound_s=RECOVERY_BOUND_S)
    report.expect(report.interrupted >= 3, f"only {report.interrupted} jobs were interrupted")
    report.expect(back, "the stopped replica's worker took no job after SIGCONT")
    report.assert_clean()
