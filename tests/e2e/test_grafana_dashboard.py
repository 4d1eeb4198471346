"""deploy/grafana's dashboard against real data: a real Prometheus scrapes a real jq-server and
jq-worker while they run a small workload, then every query of every panel runs through
Prometheus's API the way Grafana would send it, and must parse and return data.

The workload is what the panels show: jobs that succeed, a job that fails, is retried and is
dead-lettered, a job parked in a queue no worker serves (queue depth), and an RPC that fails
(an unknown job id), with Redis (claim locks) and a Kafka-protocol broker (lifecycle events)
on, as deploy/compose.yaml runs them. It runs in two rounds with a scrape between them: a
labelled series appears only on its first use, so a counter first scraped at 1 has rate 0 and
a histogram first scraped with all its observations has no quantile; the second round gives
every series an increase that Prometheus saw happen.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.grafana_dashboard import (
    ALL_QUEUES,
    as_prometheus_query,
    label_values_query,
    load_dashboard,
    panel_queries,
    variable,
)
from support.job_waits import submit, wait_status
from support.kafka_broker import KafkaBroker, running_kafka_broker
from support.processes import ServerFactory, WorkerFactory, free_port
from support.prometheus_server import PrometheusServer, running_prometheus
from support.redis_server import RedisServer, running_redis_server
from support.server_harness import Client, client_for

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb

pytestmark = pytest.mark.e2e

DONE, DEAD = cpb.JOB_STATUS_DONE, cpb.JOB_STATUS_DEAD_LETTERED
FAST_RETRY = {"JQ_SCHEDULER_RETRY_BASE_DELAY_S": "0", "JQ_SCHEDULER_RETRY_MAX_DELAY_S": "0"}
JOBS_PER_ROUND = 5
RATE_INTERVAL = "30s"
"""What `$__rate_interval` stands for here: wide enough to hold the scrapes on both sides of the
second round (scrape interval 1 s), narrow enough to be a real rate window."""
PARKED_QUEUE = "parked"
"""A queue no worker serves: its job stays PENDING, so the queue-depth gauges have a value."""


async def run_round(client: Client) -> None:
    """Successful jobs, a job dead-lettered after one retry, and an RPC answered NOT_FOUND."""
    ok = [await submit(client, {"command": ["true"]}) for _ in range(JOBS_PER_ROUND)]
    failing = await submit(client, {"command": ["false"]}, max_retries=1)
    await wait_status(client, ok, [DONE])
    [dead] = await wait_status(client, [failing], [DEAD])
    assert dead.retry_count == 1
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await client.jobs.GetJobStatus(jpb.GetJobStatusRequest(job_id=str(uuid.uuid4())), timeout=5)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def scraped(prometheus: PrometheusServer, rounds: int) -> None:
    """Wait until Prometheus has scraped the end of `rounds` rounds of the workload."""
    prometheus.wait_until(f'sum(jq_jobs_dead_lettered_total{{job="jq-server"}}) >= {rounds}')
    prometheus.wait_until(
        f'sum(jq_worker_jobs_total{{job="jq-worker"}}) >= {rounds * (JOBS_PER_ROUND + 2)}'
    )
    prometheus.wait_until(f'sum(jq_grpc_requests_total{{code="NOT_FOUND"}}) >= {rounds}')


RISING = (
    "jq_jobs_dead_lettered_total",
    "jq_job_retries_total",
    "jq_job_wait_seconds_count",
    "jq_job_duration_seconds_count",
    "jq_worker_job_duration_seconds_count",
    "jq_scheduler_jobs_assigned_total",
    "jq_redis_operation_duration_seconds_count",
    "jq_events_published_total",
    'jq_grpc_requests_total{code="NOT_FOUND"}',
)
"""Counters the panels show rising in the second round: until Prometheus has samples of each
from before and after that rise, their rates are 0 and their quantiles NaN."""


def rose(prometheus: PrometheusServer) -> None:
    """Wait until Prometheus has seen each of RISING grow (the second round, scraped)."""
    for counter in RISING:
        prometheus.wait_until(f"sum(increase({counter}[{RATE_INTERVAL}])) > 0")


def has_data(result: list[dict[str, object]]) -> bool:
    """True when some series of a range query's matrix has a number (not NaN: a quantile
    of buckets that never grew is NaN, and a panel of NaN is an empty panel)."""
    for series in result:
        values = series["values"]
        assert isinstance(values, list)
        if any(not math.isnan(float(value)) for _, value in values):
            return True
    return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    with running_kafka_broker(tmp_path / "kafka") as running:
        yield running


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis_server(tmp_path / "redis") as running:
        yield running


async def test_every_panel_query_parses_and_returns_data(
    # Redis and the broker first: fixtures stop in reverse order, and redis-server, asked to
    # stop while jq-server is still connected, takes seconds to do so.
    redis: RedisServer,
    broker: KafkaBroker,
    db_dsn: str,
    start_server: ServerFactory,
    start_worker: WorkerFactory,
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    server = start_server(
        {
            "JQ_DB_DSN": db_dsn,
            "JQ_METRICS_HOST": "127.0.0.1",
            "JQ_METRICS_PORT": str(metrics_port),
            # Redis and Kafka on, as in deploy/compose.yaml: their panels need their metrics.
            "JQ_REDIS_ENABLED": "true",
            "JQ_REDIS_URL": redis.url,
            "JQ_KAFKA_ENABLED": "true",
            "JQ_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            **FAST_RETRY,
        }
    )
    worker = start_worker(server, "--concurrency", "2")
    client = client_for(server.grpc_port)
    targets = {
        "jq-server": f"127.0.0.1:{metrics_port}",
        "jq-worker": f"127.0.0.1:{worker.metrics_port}",
    }
    with running_prometheus(tmp_path / "prometheus", targets) as prometheus:
        started = time.time()
        await client.admin.CreateQueue(apb.CreateQueueRequest(name=PARKED_QUEUE), timeout=5)
        await submit(client, {"command": ["true"]}, queue_name=PARKED_QUEUE)
        await run_round(client)
        scraped(prometheus, rounds=1)
        await run_round(client)
        scraped(prometheus, rounds=2)
        rose(prometheus)
        prometheus.wait_until(f'max(jq_job_queue_depth{{queue="{PARKED_QUEUE}"}}) >= 1')
        end = time.time()
        # A whole number of steps back from `end`, so the range query's last step is `end`,
        # when everything waited for above was already scraped.
        seconds = math.ceil(end - started) + 1

        dashboard = load_dashboard()
        metric, label = label_values_query(variable(dashboard, "queue")["definition"])
        queues = prometheus.api("label/" + label + "/values", {"match[]": metric})["data"]
        assert {"default", PARKED_QUEUE} <= set(queues)

        window = f"{seconds}s"
        failures = []
        queries = panel_queries(dashboard)
        for query in queries:
            expr = as_prometheus_query(
                query.expr,
                rate_interval=RATE_INTERVAL,
                interval="1s",
                time_range=window,
                queue=ALL_QUEUES,
            )
            reply = prometheus.api(
                "query_range",
                {"query": expr, "start": str(end - seconds), "end": str(end), "step": "1"},
            )
            if reply["status"] != "success":
                failures.append(f"{query}\n  does not run: {reply.get('error')}")
            elif not has_data(reply["data"]["result"]):
                failures.append(f"{query}\n  returns no data")
    await client.channel.close()
    assert queries
    assert not failures, "\n".join(failures)
