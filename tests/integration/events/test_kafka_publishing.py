"""Lifecycle events reach a real Kafka-protocol broker through the event outbox (issue 16):
every job_events row once per id, per job in order, with the id and correlation id headers;
a broker outage delays events but loses none, and shows as degraded, never as unready."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from support.kafka_broker import KafkaBroker, running_kafka_broker, start_kafka_broker
from support.kafka_events import EventReader, Published
from support.payloads import job_payload
from support.processes import free_port
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, running_server

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.app import ServerApp

PREFIX = "t."


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with running_kafka_broker(tmp_path / "kafka") as running:
        yield running


@pytest.fixture
def reader(broker: KafkaBroker) -> Iterator[EventReader]:
    events = EventReader(broker.bootstrap_servers, PREFIX)
    yield events
    events.close()


def kafka_overrides(broker: KafkaBroker) -> dict[str, object]:
    return {
        "kafka.enabled": True,
        "kafka.bootstrap_servers": broker.bootstrap_servers,
        "kafka.topic_prefix": PREFIX,
    }


@pytest.fixture
async def server(db_dsn: str, broker: KafkaBroker) -> AsyncIterator[tuple[ServerApp, Client]]:
    async with running_server(db_dsn, kafka_overrides(broker)) as running:
        yield running


async def job_events(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT e.id, e.job_id::text AS job_id, e.to_status::text AS to_status, e.reason,"
            " j.correlation_id FROM job_events e JOIN jobs j USING (job_id) ORDER BY e.id"
        )
    finally:
        await conn.close()


async def outbox_size(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        size: int = await conn.fetchval(
            "SELECT coalesce(sum(cardinality(event_ids)), 0) FROM event_outbox"
        )
        return size
    finally:
        await conn.close()


async def submit(client: Client, count: int, correlation_id: str = "") -> list[str]:
    metadata = (("x-correlation-id", correlation_id),) if correlation_id else None
    reply = await client.jobs.SubmitJobs(
        jpb.SubmitJobsRequest(
            jobs=[
                jpb.SubmitJobRequest(queue_name="default", payload=job_payload(i))
                for i in range(count)
            ]
        ),
        metadata=metadata,
        timeout=30,
    )
    return list(reply.job_ids)


async def run_all(worker: ProtocolWorker, count: int) -> None:
    done = 0
    while done < count:
        batch = await worker.take(min(count - done, 4), within=30)
        await worker.run(batch)
        done += len(batch)


def assert_match(published: list[Published], rows: list[asyncpg.Record]) -> None:
    """One message per job_events row, the same event; per job, ids in row order in every
    partition the job's messages went to."""
    by_id = {p.event_id: p for p in published}
    assert sorted(by_id) == [row["id"] for row in rows]
    status = {
        v.number: k.removeprefix("JOB_STATUS_")
        for k, v in common_pb2.JobStatus.DESCRIPTOR.values_by_name.items()
    }
    for row in rows:
        message = by_id[row["id"]]
        assert message.event.id == row["id"]
        assert message.key == message.event.job_id == row["job_id"]
        assert status[message.event.to_status] == row["to_status"]
        assert message.event.reason == row["reason"]
        assert message.headers["jobq-correlation-id"] == (row["correlation_id"] or row["job_id"])
    order: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for p in sorted(published, key=lambda p: (p.topic, p.partition, p.offset)):
        order[(p.key, p.topic, p.partition)].append(p.event_id)
    for ids in order.values():
        assert ids == sorted(ids)


async def test_every_transition_is_published_once_with_its_headers(
    server: tuple[ServerApp, Client], db_dsn: str, reader: EventReader
) -> None:
    _app, client = server
    worker = await ProtocolWorker(client, concurrency=4).start()
    ids = await submit(client, 20, correlation_id="order-4711")
    await run_all(worker, 20)
    await worker.heartbeat()
    rows = await job_events(db_dsn)
    assert len(rows) == 20 * 4  # SUBMITTED, ASSIGNED, STARTED, COMPLETED

    published = await asyncio.to_thread(reader.read_until, lambda got: len(got) >= len(rows))

    assert_match(published, rows)
    assert {p.headers["jobq-correlation-id"] for p in published} == {"order-4711"}
    assert {p.key for p in published} == set(ids)
    topics = {p.topic for p in published}
    assert topics == {"t.job.submitted", "t.job.started", "t.job.completed"}
    async with asyncio.timeout(10):
        while await outbox_size(db_dsn):
            await asyncio.sleep(0.1)
    await asyncio.to_thread(reader.read_until, lambda _: bool(reader.heartbeats), 20)
    assert reader.heartbeats[-1].worker_id == worker.worker_id
    status = await client.admin.GetSystemStatus(apb.GetSystemStatusRequest(), timeout=10)
    kafka = next(c for c in status.components if c.name == "kafka")
    assert kafka.state == apb.COMPONENT_STATE_HEALTHY, kafka.detail
    await worker.close()


async def test_a_broker_outage_delays_events_but_loses_none(db_dsn: str, tmp_path: Path) -> None:
    broker = start_kafka_broker(tmp_path / "kafka")
    port = broker.port
    try:
        overrides = {
            **kafka_overrides(broker),
            "health.port": free_port(),
            "metrics.port": free_port(),
        }
        async with running_server(db_dsn, overrides) as (app, client):
            worker = await ProtocolWorker(client, concurrency=8).start()
            await submit(client, 10)
            await run_all(worker, 10)
            async with asyncio.timeout(15):
                while await outbox_size(db_dsn):
                    await asyncio.sleep(0.1)

            broker.kill()
            for _ in range(10):  # 1,000 jobs while the broker is away
                await submit(client, 100)
                await run_all(worker, 100)
            rows = await job_events(db_dsn)
            assert len(rows) == 1010 * 4  # processing went on
            waiting = await outbox_size(db_dsn)
            assert waiting >= 4000

            status = await client.admin.GetSystemStatus(apb.GetSystemStatusRequest(), timeout=10)
            kafka = next(c for c in status.components if c.name == "kafka")
            assert kafka.state == apb.COMPONENT_STATE_DEGRADED, kafka.detail
            assert "waiting" in kafka.detail
            async with httpx.AsyncClient() as http:
                ready = await http.get(f"http://127.0.0.1:{app.health_port}/readyz")
                metrics = await http.get(f"http://127.0.0.1:{app.metrics_port}/metrics")
            assert ready.status_code == 200
            assert ready.text.startswith("ready; kafka degraded")
            assert "jq_events_outbox_lag_events" in metrics.text

            broker = start_kafka_broker(tmp_path / "kafka", port=port)
            reader = EventReader(broker.bootstrap_servers, PREFIX)
            try:
                after_outage = {row["id"] for row in rows[40:]}
                published = await asyncio.to_thread(
                    reader.read_until,
                    lambda got: after_outage <= {p.event_id for p in got},
                    90,
                )
            finally:
                reader.close()
            assert_match(
                [p for p in published if p.event_id in after_outage],
                [row for row in rows if row["id"] in after_outage],
            )
            await worker.close()
    finally:
        broker.stop()
