"""A jq-worker restarted under the same --worker-id, as a Kubernetes StatefulSet or a systemd
unit restarts it, and a job that takes down whoever runs it: real processes, killed for real.

A restarted process registers as a new incarnation of its worker id: the jobs its dead
predecessor held are released at once (WORKER_RESTARTED), and a job whose deliveries keep ending
that way (or lost, or unacknowledged) more than its queue's max_interruptions times is
dead-lettered as POISON instead of looping forever.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.job_waits import job, logs, submit, wait_status
from support.processes import (
    ServerFactory,
    ServerProcess,
    WorkerProcess,
    free_port,
    program,
    worker_environment,
)
from support.protocol_worker import ProtocolWorker
from support.server_harness import Client, client_for

from jobq.rpc._gen import common_pb2 as cpb

DONE = cpb.JOB_STATUS_DONE
RUNNING = cpb.JOB_STATUS_RUNNING
DEAD_LETTERED = cpb.JOB_STATUS_DEAD_LETTERED


class OwnGroupWorkers:
    """jq-worker processes each leading a process group of its own, so a test can SIGKILL a
    worker's whole group (`os.killpg`) as a container runtime or systemd does, without
    touching the test runner (the `start_worker` fixture's workers share pytest's group)."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self.started: list[WorkerProcess] = []

    def start(self, server: ServerProcess, worker_id: str, *args: str) -> WorkerProcess:
        metrics_port, health_port = free_port(), free_port()
        env = worker_environment(server.grpc_port, metrics_port, health_port)
        log_path = self._tmp_path / f"jq-worker-{len(self.started)}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [program("jq-worker"), "--worker-id", worker_id, *args],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self._tmp_path,
                start_new_session=True,
            )
        worker = WorkerProcess(process, log_path, metrics_port, health_port)
        self.started.append(worker)
        return worker

    @staticmethod
    def kill_group(worker: WorkerProcess) -> None:
        """SIGKILL the worker's process group and reap the worker."""
        os.killpg(os.getpgid(worker.process.pid), signal.SIGKILL)
        worker.process.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[OwnGroupWorkers]:
    group = OwnGroupWorkers(tmp_path)
    yield group
    for worker in group.started:
        if worker.process.poll() is None:
            with_group = os.getpgid(worker.process.pid)
            os.killpg(with_group, signal.SIGKILL)
            worker.process.wait(timeout=10)


async def _wait_done(client: Client, ids: list[str], within: float) -> list[cpb.Job]:
    """The jobs once all are DONE; on timeout, fail with where each one is instead."""
    try:
        return await wait_status(client, ids, [DONE], within=within)
    except TimeoutError:
        stuck = [await job(client, job_id) for job_id in ids]
        pytest.fail(
            f"not DONE within {within}s: "
            + ", ".join(
                f"{cpb.JobStatus.Name(j.status)} attempt {j.attempt} retries {j.retry_count}"
                for j in stuck
            )
        )


async def test_a_worker_restarted_under_its_id_gets_back_what_its_dead_process_held(
    start_server: ServerFactory, workers: OwnGroupWorkers, db_dsn: str
) -> None:
    # The server's default heartbeat timeout (30 s) is longer than this test waits: the jobs
    # must come back because a new process registered, not because the old one fell silent
    # (and the new one heartbeats under the same id, so that would never happen anyway).
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker_id = str(uuid.uuid4())
    first = workers.start(server, worker_id, "--concurrency", "4")
    client = client_for(server.grpc_port)
    ids = [await submit(client, {"command": ["sleep", "3"]}) for _ in range(4)]
    await wait_status(client, ids, [RUNNING], within=30)
    workers.kill_group(first)
    second = workers.start(server, worker_id, "--concurrency", "4")
    # Before the fix the four stayed RUNNING at attempt 1 for good: the new process opened its
    # stream with its predecessor's jobs counted as its own, and heartbeated for them.
    finished = await _wait_done(client, ids, within=20)
    for done in finished:
        assert (done.attempt, done.retry_count, done.interruptions) == (2, 0, 1)
        assert done.worker_id == worker_id
        events = await logs(client, done.job_id)
        restarted = [e for e in events if e.reason == "WORKER_RESTARTED"]
        assert [(e.from_status, e.to_status) for e in restarted] == [
            (cpb.JOB_STATUS_RUNNING, cpb.JOB_STATUS_PENDING)
        ]
        assert "interruption 1 " in restarted[0].detail
        assert events[-1].reason == "COMPLETED"
    assert second.terminate() == 0
    await client.channel.close()


@pytest.mark.parametrize(
    ("delay_s", "dies"),
    [(0.5, cpb.JOB_STATUS_RUNNING), (0.0, cpb.JOB_STATUS_ASSIGNED)],
    ids=["after-its-start-was-acknowledged", "before-acknowledging"],
)
async def test_a_job_that_kills_every_worker_running_it_ends_as_poison(
    start_server: ServerFactory,
    workers: OwnGroupWorkers,
    db_dsn: str,
    delay_s: float,
    dies: int,
) -> None:
    # A short assignment timeout lets the old behaviour show itself within the test's deadline
    # (ASSIGNED → ASSIGNMENT_TIMEOUT, then RUNNING for good); heartbeats stay the default.
    server = start_server({"JQ_DB_DSN": db_dsn, "JQ_SCHEDULER_ASSIGNMENT_TIMEOUT_S": "2"})
    worker_id = str(uuid.uuid4())
    args = ("--concurrency", "2", "--import", "support.poison_tasks")
    client = client_for(server.grpc_port)
    poison = await submit(
        client, {"handler": "support.poison_tasks:kill_my_worker", "args": [delay_s]}
    )
    current = workers.start(server, worker_id, *args)
    deaths = 0
    # The supervisor (systemd, a StatefulSet) restarts the worker under its id whenever it dies.
    try:
        async with asyncio.timeout(60):
            while (await job(client, poison)).status != DEAD_LETTERED:
                if current.process.poll() is not None:
                    deaths += 1
                    current = workers.start(server, worker_id, *args)
                await asyncio.sleep(0.05)
    except TimeoutError:
        looping = await job(client, poison)
        history = [e.reason for e in await logs(client, poison)]
        pytest.fail(
            f"not dead-lettered within 60 s after {deaths} worker deaths: "
            f"{cpb.JobStatus.Name(looping.status)} attempt {looping.attempt} "
            f"retries {looping.retry_count}; history {history}"
        )
    dead = await job(client, poison)
    # The queue's default max_interruptions is 3: the fourth interruption ends it.
    assert (dead.retry_count, dead.interruptions, dead.attempt) == (0, 4, 4)
    assert "poison" in dead.error_message
    events = await logs(client, poison)
    assert events[-1].reason == "POISON"
    assert events[-1].to_status == DEAD_LETTERED
    assert "interrupted 4 times" in events[-1].detail or "interruption 4" in events[-1].detail
    interrupted = [e.reason for e in events if e.to_status == cpb.JOB_STATUS_PENDING][1:]
    assert len(interrupted) == 3
    if dies == cpb.JOB_STATUS_RUNNING:
        # Each death is seen when the supervisor's restart registers: at once.
        assert interrupted == ["WORKER_RESTARTED"] * 3
        assert [(e.from_status, e.to_status, e.reason) for e in events[-2:]] == [
            (cpb.JOB_STATUS_RUNNING, cpb.JOB_STATUS_FAILED, "WORKER_RESTARTED"),
            (cpb.JOB_STATUS_FAILED, DEAD_LETTERED, "POISON"),
        ]
    else:
        # An unacknowledged job may also time out before the restarted worker registers.
        assert set(interrupted) <= {"WORKER_RESTARTED", "ASSIGNMENT_TIMEOUT"}
        assert events[-1].from_status in (cpb.JOB_STATUS_ASSIGNED, cpb.JOB_STATUS_FAILED)
    assert deaths == 4
    # The worker now running was not handed the job again, and serves ordinary jobs.
    ordinary = await submit(client, {"command": ["true"]})
    await wait_status(client, [ordinary], [DONE], within=20)
    assert current.process.poll() is None
    assert current.terminate() == 0
    await client.channel.close()


async def test_a_superseded_jq_worker_kills_its_jobs_and_exits_without_fighting_back(
    start_server: ServerFactory, workers: OwnGroupWorkers, db_dsn: str, tmp_path: Path
) -> None:
    """The process a newer one replaced (cut off from the server while a supervisor started
    the newer one, or a second deployment under the same id) learns it at its next call: it
    kills its jobs, reports nothing, does not register again, and exits 3."""
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker_id = str(uuid.uuid4())
    superseded = workers.start(server, worker_id, "--concurrency", "1")
    client = client_for(server.grpc_port)
    pid_file = tmp_path / "job.pid"
    job_id = await submit(client, {"command": ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"]})
    await wait_status(client, [job_id], [RUNNING], within=30)
    async with asyncio.timeout(10):
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.05)
    job_pid = int(pid_file.read_text())

    newer = ProtocolWorker(client, worker_id=worker_id)
    await newer.register()  # a new process under the same id: the job is released

    assert await asyncio.to_thread(superseded.process.wait, 20) == 3
    log = superseded.log()
    assert '"action": "worker.superseded"' in log
    assert log.count('"action": "worker.registered"') == 1  # it did not register again
    async with asyncio.timeout(10):  # its job was killed with it
        while _alive(job_pid):
            await asyncio.sleep(0.05)
    job_now = await job(client, job_id)
    assert (job_now.status, job_now.interruptions) == (cpb.JOB_STATUS_PENDING, 1)
    assert (await logs(client, job_id))[-1].reason == "WORKER_RESTARTED"
    heartbeat = await newer.heartbeat()  # the newer process is not disturbed
    assert list(heartbeat.commands) == []
    await client.channel.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
