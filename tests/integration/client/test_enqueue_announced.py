"""A job enqueued in an application's transaction is announced by jq-server as a submit is:
its SUBMITTED transition is published on the lifecycle stream (so jq_jobs_submitted counts it
and whatever subscribes sees it) exactly once, before its assignment, and a rolled-back
enqueue is never announced. Through the outbox of db/migrations/V14, woken by the 'enqueued'
notification at commit, or found when a server starts."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from typing import Any
from uuid import UUID

import asyncpg
from prometheus_client.parser import text_string_to_metric_families
from support.enqueue_apps import App
from support.processes import free_port
from support.protocol_worker import ProtocolWorker
from support.server_harness import running_server

from jobq.client import AsyncClient
from jobq.domain.records import Transition
from jobq.domain.states import Reason

NO_PERIODIC_PASS = {"scheduler.interval_ms": 60000}
SUBMITTED_COUNT = "jq_jobs_submitted_total"


def submitted_count(port: int, queue: str = "default") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == SUBMITTED_COUNT and sample.labels.get("queue") == queue:
                return sample.value
    return 0.0


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


def reasons(published: list[Transition], job_id: str) -> list[Reason]:
    return [t.reason for t in published if t.job_id == UUID(job_id)]


async def test_an_enqueued_job_is_counted_and_published_as_a_submit(
    app: App, db_dsn: str, pool: asyncpg.Pool
) -> None:
    settings: dict[str, Any] = {**NO_PERIODIC_PASS, "metrics.port": free_port()}
    async with running_server(db_dsn, settings) as (server, stubs):
        assert server.metrics_port is not None
        published: list[Transition] = []
        server.lifecycle.subscribe(published.extend)
        async with AsyncClient(f"127.0.0.1:{server.grpc_port}", timeout_s=10) as client:
            over_grpc = await client.submit("shop:send_receipt", 1)
        await app.begin()
        rolled_back = await app.enqueue("shop:send_receipt", 2)
        await app.rollback()
        await app.begin()
        enqueued = await app.enqueue("shop:send_receipt", 3)
        await app.commit()

        await until(lambda: bool(reasons(published, enqueued.job_id)))
        assert reasons(published, enqueued.job_id) == [Reason.SUBMITTED]
        assert reasons(published, rolled_back.job_id) == []
        assert await asyncio.to_thread(submitted_count, server.metrics_port) == 2
        assert await pool.fetchval("SELECT count(*) FROM enqueued_jobs") == 0

        worker = await ProtocolWorker(stubs).start()
        try:
            assignments = await worker.take(2)
            await worker.run(assignments)
            done = [Reason.SUBMITTED, Reason.ASSIGNED, Reason.STARTED, Reason.COMPLETED]
            await until(lambda: reasons(published, enqueued.job_id) == done)
            await until(lambda: reasons(published, over_grpc.id) == done)
        finally:
            await worker.close()
        assert await asyncio.to_thread(submitted_count, server.metrics_port) == 2


async def test_what_was_enqueued_while_no_server_ran_is_announced_at_start(
    app: App, db_dsn: str, pool: asyncpg.Pool
) -> None:
    ids = []
    for order in range(3):
        await app.begin()
        ids.append((await app.enqueue("shop:send_receipt", order)).job_id)
        await app.commit()
    settings: dict[str, Any] = {**NO_PERIODIC_PASS, "metrics.port": free_port()}
    async with running_server(db_dsn, settings) as (server, _stubs):
        assert server.metrics_port is not None
        port = server.metrics_port
        async with asyncio.timeout(10):
            while await asyncio.to_thread(submitted_count, port) < 3:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # a second announcement would come as soon as the first
        assert await asyncio.to_thread(submitted_count, port) == 3
        assert await pool.fetchval("SELECT count(*) FROM enqueued_jobs") == 0
