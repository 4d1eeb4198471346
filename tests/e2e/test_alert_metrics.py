"""The metrics the alert rules (deploy/prometheus/rules) stand on, scraped from a real jq-server's
/metrics while a real jq-worker comes and is SIGKILLed, and while the server's PostgreSQL is
stopped:
- a job waiting with no worker: its queue's oldest pending age grows above 0 and the queue
  shows 0 workers online; a worker connects: 1; it is killed: jq_workers_lost_total 1 (a short
  heartbeat timeout), and the queue is back to 0 workers online;
- jq_server_ready is 1 while the server is ready and 0, still served, once its database is gone.

Gauges are refreshed on scrape at most once a second, so every check polls /metrics until the
value is there or a deadline passes.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.job_waits import submit
from support.postgres import create_database, stoppable_postgres
from support.processes import ServerFactory, WorkerFactory, free_port
from support.server_harness import client_for

from jobq.storage.embedded import EmbeddedPostgres

FAST_LOSS = {
    "JQ_SCHEDULER_WORKER_HEARTBEAT_TIMEOUT_S": "2",
    "JQ_SCHEDULER_HEARTBEAT_CHECK_INTERVAL_S": "0.5",
}
DEADLINE_S = 30.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int) -> Samples:
    """Every jq_ sample of the server's /metrics: {(name, sorted labels): value}."""
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert reply.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
        if sample.name.startswith("jq_")
    }


async def wait_for(port: int, what: str, holds: Callable[[Samples], bool]) -> Samples:
    """Scrape until `holds` is true of the samples; fail with the last ones after the deadline."""
    last: Samples = {}
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not holds(last := await scrape(port)):
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"{what}: not seen within {DEADLINE_S}s; last scrape: {last}")
    return last


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_waiting_jobs_online_workers_and_lost_workers_reach_metrics(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    port = free_port()
    server = start_server({"JQ_DB_DSN": db_dsn, "JQ_METRICS_PORT": str(port), **FAST_LOSS})
    client = client_for(server.grpc_port)
    try:
        await submit(client, {"command": ["true"]}, queue_name="default")

        waiting = await wait_for(
            port,
            "an old pending job and no worker for its queue",
            lambda s: (
                (value(s, "jq_queue_oldest_pending_age_seconds", queue="default") or 0) > 0
                and value(s, "jq_queue_workers_online", queue="default") == 0
            ),
        )
        assert value(waiting, "jq_server_ready") == 1
        assert value(waiting, "jq_workers_lost_total") == 0

        worker = start_worker(server, "--concurrency", "2")
        await wait_for(
            port,
            "one worker online for the queue",
            lambda s: value(s, "jq_queue_workers_online", queue="default") == 1,
        )
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=10)

        # The gauges follow within a refresh (a second) of the counter; its job ran before the
        # kill, so nothing waits and the age is back to 0, not stale.
        await wait_for(
            port,
            "the killed worker declared lost, and no worker online for the queue",
            lambda s: (
                value(s, "jq_workers_lost_total") == 1
                and value(s, "jq_queue_workers_online", queue="default") == 0
                and value(s, "jq_queue_oldest_pending_age_seconds", queue="default") == 0
            ),
        )
    finally:
        await client.channel.close()


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, which it stops."""
    with stoppable_postgres("jobq-ready-metric-pg-") as postgres:
        yield postgres


async def test_server_ready_is_zero_and_still_served_when_the_database_is_gone(
    start_server: ServerFactory, own_postgres: EmbeddedPostgres
) -> None:
    dsn = await create_database(own_postgres)
    port = free_port()
    start_server({"JQ_DB_DSN": dsn, "JQ_METRICS_PORT": str(port)})

    await wait_for(port, "a ready server", lambda s: value(s, "jq_server_ready") == 1)
    own_postgres.stop(mode="fast")
    await wait_for(port, "an unready server", lambda s: value(s, "jq_server_ready") == 0)
