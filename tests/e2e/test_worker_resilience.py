"""jq-worker under stress: bounded concurrency, SIGKILL, server restarts, SIGTERM, drain and
shutdown commands — real processes throughout."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from pathlib import Path

from support.job_waits import job, logs, submit, wait_status
from support.processes import ServerFactory, WorkerFactory
from support.server_harness import client_for

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb

DONE = cpb.JOB_STATUS_DONE
RUNNING = cpb.JOB_STATUS_RUNNING
PENDING = cpb.JOB_STATUS_PENDING
FAST_RECOVERY = {
    "JQ_SCHEDULER_WORKER_HEARTBEAT_TIMEOUT_S": "2",
    "JQ_SCHEDULER_HEARTBEAT_CHECK_INTERVAL_S": "0.5",
    "JQ_SCHEDULER_RETRY_BASE_DELAY_S": "0",
    "JQ_SCHEDULER_RETRY_MAX_DELAY_S": "0",
}


def _spans(path: Path) -> list[tuple[float, float]]:
    spans = []
    for line in path.read_text().splitlines():
        _, start, end, _ = line.split()
        spans.append((float(start), float(end)))
    return spans


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    current = peak = 0
    for _, delta in edges:
        current += delta
        peak = max(peak, current)
    return peak


async def test_concurrency_bounds_and_fills_the_slots(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str, tmp_path: Path
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--concurrency", "3", "--import", "support.e2e_tasks")
    client = client_for(server.grpc_port)
    spans_file = tmp_path / "spans"
    ids = [
        await submit(
            client,
            {"handler": "support.e2e_tasks:record_span", "args": [str(spans_file), 0.6, str(i)]},
        )
        for i in range(7)
    ]
    await wait_status(client, ids, [DONE], within=60)
    spans = _spans(spans_file)
    assert len(spans) == 7
    assert _max_overlap(spans) == 3  # never more than 3 at once, and 3 did run together
    assert worker.terminate() == 0
    await client.channel.close()


async def test_sigkill_of_a_worker_loses_no_job(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn, **FAST_RECOVERY})
    doomed = start_worker(server, "--concurrency", "4")
    client = client_for(server.grpc_port)
    ids = [await submit(client, {"command": ["sleep", "1.5"]}) for _ in range(6)]
    async with asyncio.timeout(20):
        while sum([(await job(client, i)).status == RUNNING for i in ids]) < 4:
            await asyncio.sleep(0.05)
    doomed.process.kill()
    doomed.process.wait(timeout=10)
    survivor = start_worker(server, "--concurrency", "4")
    jobs = await wait_status(client, ids, [DONE], within=60)
    # The ones killed mid-run ran again: interrupted (WORKER_LOST), without using a retry.
    assert sum(j.interruptions >= 1 for j in jobs) >= 4
    assert {j.retry_count for j in jobs} == {0}
    for job_id in ids:
        reasons = [e.reason for e in await logs(client, job_id)]
        assert reasons[-1] == "COMPLETED"
    assert survivor.terminate() == 0
    await client.channel.close()


async def test_the_worker_reconnects_when_the_server_restarts(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    env = {"JQ_DB_DSN": db_dsn}
    first = start_server(env)
    worker = start_worker(first)
    client = client_for(first.grpc_port)
    before = await submit(client, {"command": ["true"]})
    await wait_status(client, [before], [DONE])
    await client.channel.close()
    assert first.terminate() == 0
    second = start_server(env, port=first.grpc_port)
    client = client_for(second.grpc_port)
    after = await submit(client, {"command": ["echo", "again"]})
    [done] = await wait_status(client, [after], [DONE], within=60)
    assert done.result == b"again\n"
    with urllib.request.urlopen(
        f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5
    ) as response:
        text = response.read().decode()
    reconnects = [
        line for line in text.splitlines() if line.startswith("jq_worker_reconnects_total")
    ]
    assert reconnects
    assert float(reconnects[0].split()[-1]) >= 1
    assert worker.process.poll() is None
    assert worker.terminate() == 0
    await client.channel.close()


async def test_sigterm_finishes_short_jobs_and_hands_back_long_ones(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(
        server, "--concurrency", "2", env={"JQ_WORKER_SHUTDOWN_GRACE_PERIOD_S": "2"}
    )
    client = client_for(server.grpc_port)
    short = await submit(client, {"command": ["sleep", "0.5"]})
    long = await submit(client, {"command": ["sleep", "60"]})
    async with asyncio.timeout(20):
        while not all([(await job(client, i)).status == RUNNING for i in (short, long)]):
            await asyncio.sleep(0.05)
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=30) == 0
    short_job, long_job = await job(client, short), await job(client, long)
    assert short_job.status == DONE
    assert long_job.status == PENDING
    assert long_job.retry_count == 0
    assert (await logs(client, long))[-1].reason == "WORKER_SHUTDOWN"
    workers = await client.admin.ListWorkers(apb.ListWorkersRequest(), timeout=5)
    assert [w.status for w in workers.workers] == [cpb.WORKER_STATUS_OFFLINE]
    await client.channel.close()


async def test_drain_stops_new_work_and_shutdown_stops_the_worker(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--concurrency", "1")
    client = client_for(server.grpc_port)
    running = await submit(client, {"command": ["sleep", "1"]})
    async with asyncio.timeout(20):
        while (await job(client, running)).status != RUNNING:
            await asyncio.sleep(0.05)
    [registered] = (await client.admin.ListWorkers(apb.ListWorkersRequest(), timeout=5)).workers
    await client.admin.DrainWorker(
        apb.DrainWorkerRequest(worker_id=registered.worker_id), timeout=5
    )
    waiting = await submit(client, {"command": ["true"]})
    await wait_status(client, [running], [DONE])
    await asyncio.sleep(1.0)  # a draining worker would have had ample time to take it
    assert (await job(client, waiting)).status == PENDING
    await client.admin.ShutdownWorker(
        apb.ShutdownWorkerRequest(worker_id=registered.worker_id), timeout=5
    )
    assert worker.process.wait(timeout=30) == 0
    assert (await job(client, waiting)).status == PENDING
    await client.channel.close()
