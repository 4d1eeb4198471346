"""`make run`'s launcher: server and worker on the embedded default, a demo Python job, and
Ctrl-C (SIGINT) stopping both gracefully."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.job_waits import submit, wait_status
from support.processes import free_port, grpc_serving
from support.server_harness import client_for

from jobq.rpc._gen import common_pb2 as cpb

REPO = Path(__file__).resolve().parents[2]


async def test_run_local_serves_a_demo_job_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "JQ_DB_EMBEDDED_DATA_DIR": str(tmp_path / "pg"),
        "JQ_GRPC_PORT": str(port),
        "JQ_GRPC_HOST": "127.0.0.1",
        "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{port}",
        "JQ_METRICS_PORT": "0",
        "JQ_HEALTH_PORT": "0",
        "JQ_WORKER_METRICS_PORT": "0",
        "JQ_WORKER_HEALTH_PORT": "0",
    }
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, str(REPO / "tools" / "run_local.py")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = client_for(port)
    try:
        deadline = time.monotonic() + 60
        while not grpc_serving(port, timeout=0.5):
            assert launcher.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "jq-server did not start"
            await asyncio.sleep(0.1)
        job_id = await submit(client, {"handler": "jobq.demo_tasks:add", "args": [2, 3]})
        [done] = await wait_status(client, [job_id], [cpb.JOB_STATUS_DONE], within=60)
        assert done.result == b"5"
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=90) == 0, log.read_text()
    finally:
        if launcher.poll() is None:
            launcher.kill()
        await client.channel.close()
    text = log.read_text()
    assert "deregistered" in text
    assert "stopped" in text
    assert "Traceback" not in text
    # The server is down now; the embedded database it started was stopped with it.
    assert not (tmp_path / "pg" / "postmaster.pid").exists()
