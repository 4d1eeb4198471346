"""`make run`'s launcher: server and worker on the embedded default, a demo Python job, and
Ctrl-C (SIGINT) stopping both gracefully."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from support.job_waits import submit, wait_status
from support.make_run import start_run_local
from support.server_harness import client_for

from jobq.rpc._gen import common_pb2 as cpb

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent


async def test_run_local_serves_a_demo_job_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    run = start_run_local(tmp_path)
    launcher, log = run.process, run.log
    client = client_for(run.port)
    try:
        await run.wait_serving()
        job_id = await submit(client, {"handler": "jobq.demo_tasks:add", "args": [2, 3]})
        [done] = await wait_status(client, [job_id], [cpb.JOB_STATUS_DONE], within=60)
        assert done.result == b"5"
        # The dashboard is on for a newcomer, with the job in its API (no login: loopback).
        base = f"http://127.0.0.1:{run.dashboard_port}"
        async with httpx.AsyncClient(base_url=base) as http:
            page = await http.get("/")
            assert page.status_code == 200, page.text[:300]
            assert "<title>" in page.text
            answer = await http.get(f"/api/v1/jobs/{job_id}")
            assert answer.status_code == 200, answer.text[:300]
            assert job_id in answer.text
        announced = f"dashboard and HTTP API at http://127.0.0.1:{run.dashboard_port}/"
        assert announced in log.read_text()
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
