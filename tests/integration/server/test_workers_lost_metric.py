"""jq_workers_lost_total counts each lost worker once, however many replicas' heartbeat
monitors look: the one whose update marked it OFFLINE counts it. The heartbeat is backdated
instead of waited for."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from jobq.server.heartbeat_monitor import HeartbeatMonitor
from jobq.server.lifecycle import Lifecycle
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.workers import PgWorkerStore


def monitor(pool: asyncpg.Pool, counted: list[int]) -> HeartbeatMonitor:
    return HeartbeatMonitor(
        PgMaintenanceStore(pool),
        PgJobStore(pool),
        timeout_s=30,
        interval_s=3600,
        lifecycle=Lifecycle(),
        on_lost=counted.append,
    )


async def test_two_replicas_count_a_lost_worker_once(
    replicas: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    one, two = replicas
    workers = PgWorkerStore(one)
    silent = [uuid.uuid4() for _ in range(3)]
    alive = uuid.uuid4()
    for worker_id in [*silent, alive]:
        await workers.worker_register(worker_id, "test-host", 4, ["default"])
    await one.execute(
        "UPDATE workers SET last_heartbeat = now() - interval '1 hour'"
        " WHERE worker_id = ANY($1::uuid[])",
        silent,
    )
    counted_one: list[int] = []
    counted_two: list[int] = []

    await asyncio.gather(monitor(one, counted_one).run_once(), monitor(two, counted_two).run_once())
    # A later run finds nobody new to declare lost and counts nothing.
    await monitor(one, counted_one).run_once()

    assert sum(counted_one) + sum(counted_two) == len(silent)
    assert 0 not in counted_one + counted_two  # only runs that lost someone report
