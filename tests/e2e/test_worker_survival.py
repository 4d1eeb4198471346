"""A worker keeps reporting through a pause of its server replica (real processes throughout).

Two jq-server replicas share one database; one jq-worker is connected to replica A only. A is
frozen with SIGSTOP long enough for the worker's heartbeats to fail (so it closes its channel
and reconnects) while a job's result is on its way, then thawed with SIGCONT. Every job, those
running across the pause, submitted (through replica B) during it and submitted after it, must
be acknowledged and credited by that worker, each run exactly once, and nothing may be left
undelivered at shutdown.

The defect this pins down: closing the old channel cancelled the reporter's in-flight call with
`asyncio.CancelledError`, which ended the reporter task silently; the worker went on running
jobs whose starts and results never reached the server, so they timed out and were re-assigned
to it again and again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request

from support.ctl import as_json
from support.job_waits import job, submit, wait_status
from support.processes import ServerFactory, WorkerFactory
from support.server_harness import client_for

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb

DONE, RUNNING = cpb.JOB_STATUS_DONE, cpb.JOB_STATUS_RUNNING
PAUSE_S = 9.0
"""Longer than three failed heartbeats (the worker then drops the channel: 0.5 s interval, 1 s
timeout each), shorter than the server's heartbeat timeout (30 s: the worker is not lost)."""
UNDELIVERED = "could not deliver"


def _successes(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    for line in text.splitlines():
        if line.startswith('jq_worker_jobs_total{result="success"}'):
            return float(line.split()[-1])
    return 0.0


async def test_a_worker_keeps_reporting_after_its_server_replica_pauses(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    env = {"JQ_DB_DSN": db_dsn}
    paused, other = start_server(env), start_server(env)
    worker = start_worker(
        paused, "--server-addr", f"127.0.0.1:{paused.grpc_port}", "--concurrency", "4"
    )
    client_a, client_b = client_for(paused.grpc_port), client_for(other.grpc_port)
    try:
        warm = await submit(client_a, {"command": ["echo", "before"]})
        await wait_status(client_a, [warm], [DONE])
        # One job finishes while the replica is frozen, before the worker gives up on the
        # channel (its result is then in flight when the channel closes); one finishes after.
        in_flight = await submit(client_a, {"command": ["sleep", "2.5"]})
        outlasting = await submit(client_a, {"command": ["sleep", "6"]})
        async with asyncio.timeout(20):
            while (await job(client_a, in_flight)).status != RUNNING:
                await asyncio.sleep(0.05)
        os.kill(paused.process.pid, signal.SIGSTOP)
        paused_at = time.monotonic()
        try:
            during = [
                await submit(client_b, {"command": ["echo", f"during-{i}"]}) for i in range(3)
            ]
            await asyncio.sleep(PAUSE_S - (time.monotonic() - paused_at))
        finally:
            os.kill(paused.process.pid, signal.SIGCONT)
        after = [await submit(client_b, {"command": ["echo", f"after-{i}"]}) for i in range(3)]
        ids = [warm, in_flight, outlasting, *during, *after]
        jobs = await wait_status(client_b, ids, [DONE], within=60)
        [registered] = (
            await client_b.admin.ListWorkers(apb.ListWorkersRequest(), timeout=5)
        ).workers
        assert {j.worker_id for j in jobs} == {registered.worker_id}
        for job_id in ids:
            events = as_json(other, "job", "logs", job_id)["events"]
            reasons = [e["reason"] for e in events]
            assert reasons[-1] == "COMPLETED", reasons
            assert "ASSIGNMENT_TIMEOUT" not in reasons, reasons  # its start was acknowledged
            assert events[-1]["worker_id"] == registered.worker_id
        assert _successes(worker.metrics_port) == len(ids), "some job ran more than once"
        assert worker.terminate() == 0
        assert UNDELIVERED not in worker.log()
    finally:
        for client in (client_a, client_b):
            await client.channel.close()
