"""`make run`'s worker runs the README tour's command jobs and nothing else: echo, true, false,
sleep and date are allowed, other commands are refused, and started as root it runs them as
`nobody`. Real launcher, jq-server, jq-worker and jq-ctl."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from support.ctl import run_jq_ctl
from support.job_waits import logs, wait_status
from support.make_run import start_run_local
from support.server_harness import Client, client_for

from jobq.rpc._gen import common_pb2 as cpb

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent

DONE, DEAD, PENDING = (
    cpb.JOB_STATUS_DONE,
    cpb.JOB_STATUS_DEAD_LETTERED,
    cpb.JOB_STATUS_PENDING,
)


class Launcher:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    def ctl(self, *args: str) -> str:
        result = run_jq_ctl(*args, env={"JQ_CTL_SERVER_ADDR": f"127.0.0.1:{self.port}"})
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()


@pytest.fixture
async def make_run(tmp_path: Path) -> AsyncIterator[tuple[Launcher, Client]]:
    run = start_run_local(
        tmp_path, drop_env=("JQ_WORKER_ALLOWED_COMMANDS", "JQ_WORKER_RUN_AS_USER")
    )
    process, port, log = run.process, run.port, run.log
    client = client_for(port)
    try:
        await run.wait_serving()
        yield Launcher(process, port, log), client
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=90) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        await client.channel.close()


async def test_the_tour_commands_run_and_others_are_refused(
    make_run: tuple[Launcher, Client],
) -> None:
    launcher, client = make_run
    hello = launcher.ctl("job", "submit", "--", "echo", "hello")
    failing = launcher.ctl("job", "submit", "--max-retries", "0", "--", "false")
    later = launcher.ctl("job", "submit", "--delay", "5m", "--", "echo", "later")
    other = launcher.ctl("job", "submit", "--", "id")
    [done] = await wait_status(client, [hello], [DONE], within=60)
    assert done.result == b"hello\n"
    [dead] = await wait_status(client, [failing], [DEAD], within=60)
    assert dead.error_message == "exit status 1"
    assert (await logs(client, failing))[-1].reason == "RETRIES_EXHAUSTED"
    [refused] = await wait_status(client, [other], [DEAD], within=60)
    assert refused.error_message.startswith("command not allowed: id")
    assert (await logs(client, other))[-1].reason == "REFUSED"
    [waiting] = await wait_status(client, [later], [PENDING])
    launcher.ctl("job", "cancel", waiting.job_id)


@pytest.mark.skipif(os.geteuid() != 0, reason="make run switches users only when run as root")
async def test_started_as_root_it_runs_command_jobs_as_nobody(
    make_run: tuple[Launcher, Client],
) -> None:
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this system has no user 'nobody'")
    launcher, client = make_run
    job_id = launcher.ctl("job", "submit", "--", "sleep", "3")
    launched = psutil.Process(launcher.process.pid)
    deadline = time.monotonic() + 30
    sleepers: list[psutil.Process] = []
    while not sleepers:
        assert time.monotonic() < deadline, "the sleep job never started"
        await asyncio.sleep(0.05)
        sleepers = [p for p in launched.children(recursive=True) if _is_sleep(p)]
    assert sleepers[0].uids().real == nobody.pw_uid
    assert sleepers[0].uids().effective == nobody.pw_uid
    await wait_status(client, [job_id], [DONE], within=30)


def _is_sleep(process: psutil.Process) -> bool:
    try:
        return process.name() == "sleep"
    except psutil.NoSuchProcess:  # a process of the launcher's tree that ended meanwhile
        return False
