"""A job's processes die with their worker: SIGKILL a real jq-worker (alone, or with its whole
process group, as an operator's `kill -9 -PGID` or a container runtime does) while it runs
command jobs, and within a second no process of those jobs is left, children and grandchildren
alike, whoever they run as. Otherwise a job retried elsewhere would run twice at once.

Each test marks its jobs with a unique argv item (`sleep 120.<n>`) and looks for survivors in
/proc; whatever it finds is killed at the end, so a failure leaves nothing running."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.job_waits import submit
from support.proc_scan import kill_all_with, owner, processes_with, unique_sleep
from support.processes import ServerFactory, free_port, program, worker_environment
from support.server_harness import client_for

GONE_WITHIN_S = 1.0
JOB_USER = "nobody"


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique `sleep` duration for this test's jobs; survivors are killed afterwards."""
    value = unique_sleep()
    yield value
    kill_all_with(value)


SessionWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_session_worker(tmp_path: Path) -> Iterator[SessionWorker]:
    """jq-worker as the leader of a session and process group of its own, so a test can
    SIGKILL that group without hitting pytest."""
    started: list[subprocess.Popen[bytes]] = []

    def start(grpc_port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        full_env = worker_environment(grpc_port, free_port(), free_port(), env)
        with open(tmp_path / f"jq-worker-{len(started)}.log", "wb") as log:
            process = subprocess.Popen(
                [program("jq-worker"), "--concurrency", "4"],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                start_new_session=True,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _job_user_env(user: str) -> dict[str, str]:
    if user == "worker":
        return {}
    if os.geteuid() != 0:
        pytest.skip("running jobs as another user needs a root worker; the tests are not root")
    try:
        pwd.getpwnam(JOB_USER)
    except KeyError:
        pytest.skip(f"this system has no user {JOB_USER!r}")
    return {"JQ_WORKER_RUN_AS_USER": JOB_USER, "JQ_WORKER_ALLOW_ROOT_JOBS": "false"}


@pytest.mark.parametrize("kill", ["process", "group"])
@pytest.mark.parametrize("user", ["worker", JOB_USER])
async def test_a_killed_workers_job_processes_die_with_it(
    start_server: ServerFactory,
    start_session_worker: SessionWorker,
    db_dsn: str,
    marker: str,
    kill: str,
    user: str,
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_session_worker(server.grpc_port, _job_user_env(user))
    client = client_for(server.grpc_port)
    try:
        await submit(client, {"command": ["sleep", marker]})
        # The job's first process forks a grandchild that runs beside it.
        await submit(client, {"command": ["sh", "-c", f"sleep {marker} & sleep {marker}"]})
        async with asyncio.timeout(30):
            while len(processes_with(marker)) < 3:
                assert worker.poll() is None, "jq-worker exited"
                await asyncio.sleep(0.05)
        running = processes_with(marker)
        if user == JOB_USER:
            assert {owner(pid) for pid in running} == {pwd.getpwnam(JOB_USER).pw_uid}
        if kill == "group":
            os.killpg(worker.pid, signal.SIGKILL)
        else:
            worker.kill()
        killed_at = time.monotonic()
        worker.wait(timeout=10)
        while processes_with(marker) and time.monotonic() - killed_at < GONE_WITHIN_S:
            await asyncio.sleep(0.02)
        survivors = processes_with(marker)
        assert not survivors, f"job processes outlived their worker: {survivors}"
    finally:
        await client.channel.close()
