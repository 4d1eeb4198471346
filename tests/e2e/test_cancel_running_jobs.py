"""Cancelling RUNNING jobs and reporting progress, end to end: real jq-server, jq-worker and
jq-ctl processes. `jq-ctl job cancel` answers at once (cancel requested, still RUNNING); the
worker stops the job its way, and the job ends DEAD_LETTERED (CANCELLED) with the canceller."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

from support.ctl import as_json, ok, wait_for_status
from support.ctl import jq_ctl_at as jq_ctl
from support.job_waits import logs, submit
from support.processes import ServerFactory, ServerProcess, WorkerFactory
from support.server_harness import client_for

FAST_GRACE = {"JQ_WORKER_CANCEL_GRACE_S": "1"}


def _wait_for(condition: object, what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _exists(path: str) -> bool:
    return Path(path).exists()


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _cancel(server: ServerProcess, job_id: str) -> dict[str, object]:
    """`jq-ctl job cancel` of a RUNNING job: the answer says requested, the job still RUNNING."""
    job: dict[str, object] = as_json(server, "job", "cancel", job_id)["job"]
    assert job["status"] == "RUNNING"
    assert job["cancelled_by"] == "anonymous"
    assert job["cancel_requested_at"]
    return job


async def _reasons(server: ServerProcess, job_id: str) -> list[str]:
    client = client_for(server.grpc_port)
    try:
        return [e.reason for e in await logs(client, job_id)]
    finally:
        await client.channel.close()


async def test_a_running_command_is_stopped_and_ends_cancelled(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str, tmp_path: Path
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--concurrency", "2", env=FAST_GRACE)
    pids = {name: tmp_path / f"{name}.pid" for name in ("polite", "stubborn")}
    polite = ok(
        jq_ctl(
            server, "job", "submit", "--", "sh", "-c", f"echo $$ > {pids['polite']}; exec sleep 60"
        )
    ).strip()
    # Ignores SIGTERM: SIGKILL after the grace (1 s here) ends its whole group.
    stubborn = ok(
        jq_ctl(
            server, "job", "submit", "--", "sh", "-c",
            f"trap '' TERM; echo $$ > {pids['stubborn']}; while :; do sleep 1; done",
        )
    ).strip()  # fmt: skip
    for job_id in (polite, stubborn):
        wait_for_status(server, job_id, "RUNNING")
    _wait_for(lambda: all(p.exists() and p.read_text().strip() for p in pids.values()), "pids")
    pid = {name: int(path.read_text()) for name, path in pids.items()}

    for job_id in (polite, stubborn):
        _cancel(server, job_id)
        ended = wait_for_status(server, job_id, "DEAD_LETTERED")
        assert ended["error_message"] == "cancelled by anonymous"
        assert ended["cancelled_by"] == "anonymous"
    for name in pids:
        _wait_for(lambda name=name: _pid_gone(pid[name]), f"the {name} job's process to go")  # type: ignore[misc]

    for job_id, how in ((polite, "stopped by SIGTERM"), (stubborn, "stopped by SIGKILL")):
        reasons = await _reasons(server, job_id)
        assert reasons == [
            "SUBMITTED", "ASSIGNED", "STARTED", "CANCEL_REQUESTED", "CANCELLED"
        ]  # fmt: skip
        client = client_for(server.grpc_port)
        events = await logs(client, job_id)
        await client.channel.close()
        assert events[-1].detail == f"cancelled: {how}"
    # The table view says it too.
    table = ok(jq_ctl(server, "job", "status", polite))
    assert "Cancelled by" in table
    assert "anonymous" in table
    assert worker.process.poll() is None
    assert worker.terminate() == 0


async def test_python_handlers_are_cancelled_and_report_progress(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str, tmp_path: Path
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(
        server, "--import", "support.e2e_tasks", "--concurrency", "2", env=FAST_GRACE
    )
    sync_marker, async_marker = tmp_path / "sync", tmp_path / "async"
    sync_job = as_json(
        server, "job", "submit", "--payload",
        f'{{"handler": "support.e2e_tasks:cancellable_loop", "args": ["{sync_marker}"]}}',
    )["job_id"]  # fmt: skip
    async_job = as_json(
        server, "job", "submit", "--payload",
        f'{{"handler": "support.e2e_tasks:sleep_until_cancelled", "args": ["{async_marker}"]}}',
    )["job_id"]  # fmt: skip
    for job_id in (sync_job, async_job):
        wait_for_status(server, job_id, "RUNNING")
    _wait_for(lambda: sync_marker.exists() and async_marker.exists(), "the handlers to start")
    # jobq.current_job() named the job it runs.
    assert sync_marker.read_text().split() == [sync_job, "1"]

    # Progress: reported by the handler, sent within a second, shown by jq-ctl.
    def progress_shown() -> bool:
        return as_json(server, "job", "status", sync_job)["job"].get("progress") == 0.42

    _wait_for(progress_shown, "the progress")
    shown = as_json(server, "job", "status", sync_job)["job"]
    assert shown["progress_message"] == "resized 42 of 100"
    assert shown["progress_updated_at"]
    assert "42% resized 42 of 100" in ok(jq_ctl(server, "job", "status", sync_job))
    assert "resized 42 of 100" in ok(jq_ctl(server, "-o", "yaml", "job", "status", sync_job))

    for job_id in (sync_job, async_job):
        _cancel(server, job_id)
        ended = wait_for_status(server, job_id, "DEAD_LETTERED")
        assert ended["error_message"] == "cancelled by anonymous"
        assert (await _reasons(server, job_id))[-2:] == ["CANCEL_REQUESTED", "CANCELLED"]
    assert _exists(f"{sync_marker}.seen")  # the thread saw the flag
    assert _exists(f"{async_marker}.cancelled")  # the task was cancelled
    assert worker.process.poll() is None
    assert worker.terminate() == 0


async def test_a_cancel_sent_to_another_replica_reaches_the_worker(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str, tmp_path: Path
) -> None:
    """The worker's stream is on replica A; the cancel goes to replica B, which tells A through
    PostgreSQL's notification. A long heartbeat interval (and A's log) shows it was the stream,
    not a heartbeat's answer, that carried it."""
    env = {"JQ_DB_DSN": db_dsn, "JQ_SCHEDULER_WORKER_HEARTBEAT_TIMEOUT_S": "120"}
    holder = start_server(env)
    other = start_server(env)
    worker = start_worker(holder, env={**FAST_GRACE, "JQ_WORKER_HEARTBEAT_INTERVAL_S": "60"})
    pid_file = tmp_path / "job.pid"
    job_id = ok(
        jq_ctl(holder, "job", "submit", "--", "sh", "-c", f"echo $$ > {pid_file}; exec sleep 60")
    ).strip()
    wait_for_status(holder, job_id, "RUNNING")
    _wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the pid")
    requested_at = time.monotonic()
    _cancel(other, job_id)
    ended = wait_for_status(other, job_id, "DEAD_LETTERED")
    assert time.monotonic() - requested_at < 20  # far less than a heartbeat interval
    assert ended["error_message"] == "cancelled by anonymous"
    assert "job.cancel_sent" in holder.log_path.read_text()
    assert "job.cancel_sent" not in other.log_path.read_text()
    _wait_for(lambda: _pid_gone(int(pid_file.read_text())), "the job's process to go")
    assert worker.terminate() == 0


async def test_a_job_that_reports_no_progress_shows_none(
    start_server: ServerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    client = client_for(server.grpc_port)
    job_id = await submit(client, {"command": ["true"]})
    await client.channel.close()
    shown = as_json(server, "job", "status", job_id)["job"]
    assert (shown["progress"], shown["progress_updated_at"]) == (None, None)  # not 0
    assert "Progress" not in ok(jq_ctl(server, "job", "status", job_id))


async def test_a_cancel_its_dead_worker_never_heard_still_wins(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    """The worker is frozen (SIGSTOP) when the cancel comes, then killed; its replacement
    registers under the same id, which would put the job back to PENDING (WORKER_RESTARTED):
    the cancel wins instead, and the job never runs again."""
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker_id = str(uuid.uuid4())
    frozen = start_worker(server, "--worker-id", worker_id)
    job_id = ok(jq_ctl(server, "job", "submit", "--", "sleep", "60")).strip()
    wait_for_status(server, job_id, "RUNNING")
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        _cancel(server, job_id)
    finally:
        frozen.process.kill()  # SIGKILL ends a stopped process too
        frozen.process.wait(timeout=10)
    replacement = start_worker(server, "--worker-id", worker_id)
    ended = wait_for_status(server, job_id, "DEAD_LETTERED")
    assert ended["error_message"] == "cancelled by anonymous"
    client = client_for(server.grpc_port)
    events = await logs(client, job_id)
    await client.channel.close()
    assert [e.reason for e in events] == [
        "SUBMITTED", "ASSIGNED", "STARTED", "CANCEL_REQUESTED", "CANCELLED"
    ]  # fmt: skip
    assert "WORKER_RESTARTED" in events[-1].detail
    assert replacement.terminate() == 0
