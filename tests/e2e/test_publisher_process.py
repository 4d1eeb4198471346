"""The event publisher's own process (server/publisher_process.py), driven through a real
jq-server: it runs beside the server at a lower priority, dies with it however the server
dies, is started again when it dies alone, hands the lease back when the server stops, and
its status reaches the server's /metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from support.kafka_broker import KafkaBroker, running_kafka_broker
from support.payloads import job_payload
from support.processes import ServerFactory, ServerProcess, free_port
from support.server_harness import client_for

from jobq.rpc._gen import job_service_pb2 as jpb

PUBLISHER = "jobq.server.publisher_main"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with running_kafka_broker(tmp_path / "kafka") as running:
        yield running


def start(
    start_server: ServerFactory, db_dsn: str, broker: KafkaBroker
) -> tuple[ServerProcess, int]:
    metrics_port = free_port()
    server = start_server(
        {
            "JQ_DB_DSN": db_dsn,
            "JQ_KAFKA_ENABLED": "true",
            "JQ_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "JQ_METRICS_PORT": str(metrics_port),
        }
    )
    return server, metrics_port


def publisher_of(pid: int, within: float = 15.0) -> psutil.Process:
    """The publisher process jq-server `pid` started."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for child in psutil.Process(pid).children():
            if PUBLISHER in " ".join(child.cmdline()):
                return child
        time.sleep(0.1)
    raise AssertionError(f"jq-server {pid} started no publisher process within {within} s")


def gone(process: psutil.Process, within: float = 10.0) -> bool:
    try:
        process.wait(timeout=within)
    except psutil.TimeoutExpired:
        return False
    return True


async def lease(dsn: str) -> tuple[str | None, bool]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT owner, lease_until > clock_timestamp() AS live FROM event_publishers"
        )
        assert row is not None
        return row["owner"], row["live"]
    finally:
        await conn.close()


async def lease_taken(dsn: str, within: float = 15.0) -> str:
    """The owner once a publisher holds the lease (the process takes a moment to start)."""
    async with asyncio.timeout(within):
        while True:
            owner, live = await lease(dsn)
            if live and owner is not None:
                return owner
            await asyncio.sleep(0.1)


async def outbox_empties(dsn: str, within: float = 30.0) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(within):
            while await conn.fetchval("SELECT count(*) FROM event_outbox"):
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def submit(port: int, count: int) -> None:
    client = client_for(port)
    try:
        await client.jobs.SubmitJobs(
            jpb.SubmitJobsRequest(
                jobs=[
                    jpb.SubmitJobRequest(queue_name="default", payload=job_payload(i))
                    for i in range(count)
                ]
            ),
            timeout=30,
        )
    finally:
        await client.channel.close()


async def test_the_publisher_runs_niced_and_dies_with_a_killed_server(
    start_server: ServerFactory, db_dsn: str, broker: KafkaBroker
) -> None:
    server, _ = start(start_server, db_dsn, broker)
    publisher = publisher_of(server.process.pid)
    owner = await lease_taken(db_dsn)  # published: the process has set itself up
    assert publisher.nice() == os.nice(0) + 10  # below the server's priority
    assert owner.split("/")[1] == str(server.process.pid)  # the server's pid names it

    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=10)
    assert gone(publisher), "the publisher outlived its jq-server"


async def test_a_publisher_that_dies_alone_is_started_again_and_goes_on(
    start_server: ServerFactory, db_dsn: str, broker: KafkaBroker
) -> None:
    server, metrics_port = start(start_server, db_dsn, broker)
    first = publisher_of(server.process.pid)
    await submit(server.grpc_port, 5)
    await outbox_empties(db_dsn)

    first.kill()
    assert gone(first)
    second = publisher_of(server.process.pid)
    assert second.pid != first.pid
    await submit(server.grpc_port, 5)  # its events wait for the new one
    await outbox_empties(db_dsn)
    assert "the event publisher process ended" in server.log()

    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    published = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('jq_events_published_total{topic="job.submitted"}')
    ]
    assert published
    assert published[0] >= 10  # both processes' counts reached the server's metrics
    assert "jq_events_publisher_active 1.0" in text


async def test_a_stopping_server_hands_the_lease_back_at_once(
    start_server: ServerFactory, db_dsn: str, broker: KafkaBroker
) -> None:
    server, _ = start(start_server, db_dsn, broker)
    publisher = publisher_of(server.process.pid)
    await lease_taken(db_dsn)
    assert server.terminate() == 0
    assert gone(publisher)
    owner, live = await lease(db_dsn)
    assert owner is None
    assert not live  # another replica may take it now, not in 8 s
