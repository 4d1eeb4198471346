"""jq-worker end to end: real jq-server and jq-worker processes on the embedded PostgreSQL."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from support.job_waits import logs, submit, wait_status
from support.processes import ServerFactory, WorkerFactory
from support.server_harness import client_for

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb

DONE, DEAD = cpb.JOB_STATUS_DONE, cpb.JOB_STATUS_DEAD_LETTERED
FAST_RETRY = {"JQ_SCHEDULER_RETRY_BASE_DELAY_S": "0", "JQ_SCHEDULER_RETRY_MAX_DELAY_S": "0"}


async def test_a_command_job_runs_through_every_state_once(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--concurrency", "2")
    client = client_for(server.grpc_port)
    job_id = await submit(client, {"command": ["echo", "hello"]})
    [done] = await wait_status(client, [job_id], [DONE])
    assert done.result == b"hello\n"
    assert done.started_at.seconds > 0
    assert done.completed_at.seconds > 0
    events = await logs(client, job_id)
    assert [e.reason for e in events] == ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"]
    assert [e.to_status for e in events] == [
        cpb.JOB_STATUS_PENDING,
        cpb.JOB_STATUS_ASSIGNED,
        cpb.JOB_STATUS_RUNNING,
        cpb.JOB_STATUS_DONE,
    ]
    worker_ids = {e.worker_id for e in events[1:]}
    assert len(worker_ids) == 1
    assert worker_ids != {""}
    assert worker.terminate() == 0
    await client.channel.close()


async def test_python_handlers_sync_and_async(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--import", "support.e2e_tasks")
    client = client_for(server.grpc_port)
    added = await submit(client, {"handler": "support.e2e_tasks:add", "args": [1, 2]})
    greeted = await submit(
        client, {"handler": "support.e2e_tasks:async_greet", "kwargs": {"name": "ada"}}
    )
    shouted = await submit(client, {"handler": "shout", "args": ["hey"]})
    demo = await submit(client, {"handler": "greet", "kwargs": {"name": "Ada"}}, max_retries=0)
    refused = await submit(client, {"handler": "os:system", "args": ["true"]}, max_retries=0)
    # The server refuses what no worker could parse (tests/integration/server/
    # test_input_at_the_door.py); the worker's own defence is tested with a protocol worker.
    jobs = await wait_status(client, [added, greeted, shouted], [DONE])
    assert jobs[0].result == b"3"
    assert jobs[1].result == b'{"greeting": "hello ada"}'
    assert jobs[2].result == b'"HEY"'
    # jobq.demo_tasks is not trusted by this worker: its @task names were never registered.
    [untrusted] = await wait_status(client, [demo], [DEAD])
    assert "handler not found" in untrusted.error_message
    [not_allowed] = await wait_status(client, [refused], [DEAD])
    assert "not allowed" in not_allowed.error_message
    assert worker.process.poll() is None  # bad payloads never crash the worker
    assert worker.terminate() == 0
    await client.channel.close()


async def test_a_failing_job_is_retried_dead_lettered_and_retried_by_hand(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str, tmp_path: Path
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn, **FAST_RETRY})
    worker = start_worker(server, "--import", "support.e2e_tasks", "--queues", "default,flaky")
    client = client_for(server.grpc_port)
    await client.admin.CreateQueue(apb.CreateQueueRequest(name="flaky", max_retries=2), timeout=5)
    marker = tmp_path / "marker"
    job_id = await submit(
        client,
        {"handler": "support.e2e_tasks:fail_until_marker", "args": [str(marker)]},
        queue_name="flaky",
    )
    [dead] = await wait_status(client, [job_id], [DEAD])
    assert dead.retry_count == 2
    assert "marker" in dead.error_message
    reasons = [e.reason for e in await logs(client, job_id)]
    assert reasons.count("FAILED") == 3
    assert reasons.count("RETRY") == 2
    assert reasons[-1] == "RETRIES_EXHAUSTED"
    marker.write_text("now it may succeed")
    await client.jobs.RetryJob(jpb.RetryJobRequest(job_id=job_id), timeout=5)
    [done] = await wait_status(client, [job_id], [DONE])
    assert done.result == b'"ok"'
    assert done.retry_count == 0
    assert worker.terminate() == 0
    await client.channel.close()


async def test_command_environment_is_minimal(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, env={"JQ_SECRET_FOR_TEST": "hunter2"})
    client = client_for(server.grpc_port)
    job_id = await submit(client, {"command": ["env"], "env": {"GIVEN": "yes"}})
    [done] = await wait_status(client, [job_id], [DONE])
    assert b"GIVEN=yes" in done.result
    assert b"hunter2" not in done.result
    assert b"JQ_SECRET_FOR_TEST" not in done.result
    assert worker.terminate() == 0
    await client.channel.close()


async def test_worker_metrics_and_health_endpoints(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server)
    client = client_for(server.grpc_port)
    job_id = await submit(client, {"command": ["true"]})
    await wait_status(client, [job_id], [DONE])
    with urllib.request.urlopen(
        f"http://127.0.0.1:{worker.health_port}/healthz", timeout=5
    ) as response:
        assert response.status == 200
    with urllib.request.urlopen(
        f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5
    ) as response:
        text = response.read().decode()
    assert 'jq_worker_jobs_total{result="success"} 1.0' in text
    assert "jq_worker_active_jobs 0.0" in text
    assert "jq_worker_slots 4.0" in text  # the default worker.concurrency
    assert "jq_worker_job_duration_seconds_count 1.0" in text
    assert "jq_worker_reconnects_total 0.0" in text
    assert worker.terminate() == 0
    await client.channel.close()
