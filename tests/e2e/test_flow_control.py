"""Flow control end to end (issue 18): pause and resume with jq-ctl, concurrency limits per
queue and per key held by two jq-server replicas and several jq-worker processes, and a rate
limit, each checked from the jobs' own records."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta

import asyncpg
import grpc
import pytest
import yaml
from support.ctl import as_json, failure, ok
from support.ctl import jq_ctl_at as jq_ctl
from support.processes import ServerFactory, WorkerFactory
from support.server_harness import client_for

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb


def _command(*argv: str) -> bytes:
    return json.dumps({"command": list(argv)}).encode()


async def _wait_all(dsn: str, status: str, count: int, within: float = 90) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        async with asyncio.timeout(within):
            while (
                await conn.fetchval("SELECT count(*) FROM jobs WHERE status = $1", status) < count
            ):
                await asyncio.sleep(0.1)
    finally:
        await conn.close()


def _most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant; one that ends as another begins does not overlap."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


async def test_pause_and_resume_with_jq_ctl_survive_a_restart(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    env = {"JQ_DB_DSN": db_dsn}
    server = start_server(env)
    worker = start_worker(server, "--queues", "default")
    paused = as_json(server, "queue", "pause", "default")["queue"]
    assert paused["paused"] is True
    assert ok(jq_ctl(server, "queue", "pause", "default")) == "queue 'default' paused: paused\n"
    job_id = ok(jq_ctl(server, "job", "submit", "--", "true")).strip()
    # Restarted, the server still holds the queue paused (the state is in PostgreSQL).
    assert server.terminate() == 0
    server = start_server(env)
    listed = yaml.safe_load(ok(jq_ctl(server, "-o", "yaml", "queue", "list")))["queues"]
    assert listed[0]["paused"] is True
    assert "paused" in ok(jq_ctl(server, "queue", "list"))
    stats = as_json(server, "queue", "stats", "default")["stats"]
    assert stats["queue"]["paused"] is True
    assert "Flow                 paused" in ok(jq_ctl(server, "queue", "stats", "default"))
    # The worker reconnects to the new server and gets nothing while the queue is paused: a
    # while of nothing happening is the only way to see that nothing happens.
    known = {w["worker_id"] for w in as_json(server, "worker", "list").get("workers", [])}
    worker2 = start_worker(server, "--queues", "default")
    deadline = time.monotonic() + 30
    while not any(
        w["worker_id"] not in known and w["status"] == "ONLINE"
        for w in as_json(server, "worker", "list").get("workers", [])
    ):
        assert time.monotonic() < deadline, "the new worker did not come online"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    assert as_json(server, "job", "status", job_id)["job"]["status"] == "PENDING"
    resumed = as_json(server, "queue", "resume", "default")["queue"]
    assert "paused" not in resumed or resumed["paused"] is False
    await _wait_all(db_dsn, "DONE", 1, within=30)
    worker.terminate()  # served the first server, gone since: it only tries to reconnect
    assert worker2.terminate() == 0


async def test_limits_with_jq_ctl_and_bad_input_at_the_door(
    start_server: ServerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    queue = as_json(
        server,
        "queue",
        "limit",
        "default",
        "--max-running",
        "20",
        "--key-max-running",
        "2",
        "--rate",
        "100/1m",
        "--key-rate",
        "3/500ms",
    )["queue"]
    assert queue["max_running"] == 20
    assert queue["key_max_running"] == 2
    assert queue["rate"] == {"limit": 100, "period": 60.0}
    assert queue["key_rate"] == {"limit": 3, "period": 0.5}
    line = ok(jq_ctl(server, "queue", "limit", "default", "--rate", "0"))
    assert line == (
        "queue 'default' limits set: max 20 running, max 2 running per key, 3/500ms per key\n"
    )
    assert "FLOW" in ok(jq_ctl(server, "queue", "list")).splitlines()[0]
    assert "--rate" in failure(jq_ctl(server, "queue", "limit", "default", "--rate", "10"), 2)
    assert "at least one" in failure(jq_ctl(server, "queue", "limit", "default"), 2)
    assert "--max-running" in failure(
        jq_ctl(server, "queue", "limit", "default", "--max-running", "-1"), 2
    )
    assert failure(jq_ctl(server, "queue", "pause", "nope")) == "queue 'nope' not found"
    job = as_json(server, "job", "submit", "--key", "customer-7", "--", "true")
    assert as_json(server, "job", "status", job["job_id"])["job"]["concurrency_key"] == "customer-7"

    client = client_for(server.grpc_port)
    try:
        bad = [
            apb.SetQueueLimitsRequest(name="default"),
            apb.SetQueueLimitsRequest(name="default", max_running=1_000_001),
            apb.SetQueueLimitsRequest(name="default", key_max_running=-1),
            apb.SetQueueLimitsRequest(name="default", rate=cpb.RateLimit(limit=5)),
            apb.SetQueueLimitsRequest(
                name="default", key_rate=cpb.RateLimit(limit=-5, period={"seconds": 1})
            ),
            apb.SetQueueLimitsRequest(
                name="default", rate=cpb.RateLimit(limit=5, period={"seconds": 86401})
            ),
            apb.SetQueueLimitsRequest(name="bad name", max_running=1),
        ]
        for request in bad:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.admin.SetQueueLimits(request, timeout=10)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await client.admin.PauseQueue(apb.PauseQueueRequest(name="nope"), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        for key in ("x" * 256, "tab\there"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.jobs.SubmitJob(
                    jpb.SubmitJobRequest(
                        queue_name="default", payload=_command("true"), concurrency_key=key
                    ),
                    timeout=10,
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "concurrency_key" in (refused.value.details() or "")
        unchanged = await client.admin.ListQueues(apb.ListQueuesRequest(), timeout=10)
        assert unchanged.queues[0].max_running == 20
    finally:
        await client.channel.close()


async def test_two_replicas_and_many_workers_never_exceed_the_limits(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    env = {"JQ_DB_DSN": db_dsn, "JQ_LOGGING_LEVEL": "warning"}
    servers = [start_server(env, wait=False) for _ in range(2)]
    for server in servers:
        server.wait_serving()
    ok(jq_ctl(servers[0], "queue", "create", "limited"))
    ok(jq_ctl(servers[0], "queue", "create", "rated"))
    ok(jq_ctl(servers[1], "queue", "limit", "limited", "--max-running", "6"))
    ok(jq_ctl(servers[1], "queue", "limit", "limited", "--key-max-running", "2"))
    ok(jq_ctl(servers[0], "queue", "limit", "rated", "--rate", "4/500ms"))
    workers = [
        start_worker(server, "--queues", "limited,rated", "--concurrency", "4")
        for server in servers
        for _ in range(2)
    ]
    clients = [client_for(server.grpc_port) for server in servers]
    try:
        for index, client in enumerate(clients):
            await client.jobs.SubmitJobs(
                jpb.SubmitJobsRequest(
                    jobs=[
                        jpb.SubmitJobRequest(
                            queue_name="limited",
                            payload=_command("sleep", "0.2"),
                            concurrency_key=f"customer-{i % 4}",
                        )
                        for i in range(index, 48, 2)
                    ]
                    + [
                        jpb.SubmitJobRequest(queue_name="rated", payload=_command("true"))
                        for _ in range(10)
                    ]
                ),
                timeout=30,
            )
        await _wait_all(db_dsn, "DONE", 68)
    finally:
        for client in clients:
            await client.channel.close()
    conn = await asyncpg.connect(db_dsn)
    try:
        # Held from the claim (assigned_at) to the end (completed_at): what the limits count.
        limited = await conn.fetch(
            "SELECT concurrency_key, assigned_at, completed_at, attempt FROM jobs"
            " WHERE queue_name = 'limited'"
        )
        starts = [
            r["occurred_at"]
            for r in await conn.fetch(
                "SELECT e.occurred_at FROM job_events e JOIN jobs j USING (job_id)"
                " WHERE j.queue_name = 'rated' AND e.reason = 'ASSIGNED' ORDER BY 1"
            )
        ]
    finally:
        await conn.close()
    assert {r["attempt"] for r in limited} == {1}
    spans = [(r["assigned_at"], r["completed_at"]) for r in limited]
    assert 2 <= _most_at_once(spans) <= 6
    for key in {r["concurrency_key"] for r in limited}:
        mine = [
            (r["assigned_at"], r["completed_at"]) for r in limited if r["concurrency_key"] == key
        ]
        assert _most_at_once(mine) <= 2, key
    assert len(starts) == 20
    window = timedelta(milliseconds=500)
    assert max(sum(1 for t in starts if end - window < t <= end) for end in starts) <= 4
    # Any five consecutive starts span a window at least: twenty of them, four windows.
    assert starts[-1] - starts[0] >= 4 * window
    for worker in workers:
        assert worker.terminate() == 0
    for server in servers:
        assert server.terminate() == 0
