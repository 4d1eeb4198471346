"""A job cannot reach jq-worker's secrets, and command jobs are opt-in: real jq-server,
jq-worker and jq-ctl processes.

The tests run as root (here and in CI). Scenarios of a worker that is not root start jq-worker
as `nobody` (cwd /), with an interpreter that user can run (see support.unprivileged); they
skip, saying why, where that is impossible.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from support.certs import make_pki
from support.ctl import as_json
from support.fake_worker_service import FakeWorkerService, start_fake_server
from support.job_waits import submit, wait_status
from support.processes import ServerFactory, WorkerFactory, free_port, program
from support.server_harness import client_for
from support.unprivileged import UnprivilegedPython, unprivileged_python

from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import worker_service_pb2 as wpb
from jobq.worker.command_executor import COMMANDS_OFF
from jobq.worker.job_user import ROOT_REFUSAL

DEAD, DONE = cpb.JOB_STATUS_DEAD_LETTERED, cpb.JOB_STATUS_DONE
WORKER_DEFAULTS = {"JQ_WORKER_ALLOWED_COMMANDS": "", "JQ_WORKER_ALLOW_ROOT_JOBS": "false"}
"""Undo the e2e fixture's permissive settings: the worker's own defaults."""
SECRET = "jobq-e2e-s3cret-password"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the scenario needs a root worker; the tests do not run as root"
)


def wait_for_log(read: Callable[[], str], text: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while text not in read():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{read()}"
        time.sleep(0.05)


async def test_with_default_settings_command_jobs_and_untrusted_handlers_are_dead_lettered_at_once(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, env=WORKER_DEFAULTS)
    client = client_for(server.grpc_port)
    command = await submit(client, {"command": ["id"]})  # the default queue: 3 retries
    system = await submit(client, {"handler": "os:system", "args": ["id"]})
    jobs = await wait_status(client, [command, system], [DEAD])
    for job, message in zip(jobs, (COMMANDS_OFF, "handler not allowed: os:system"), strict=True):
        assert (job.retry_count, job.attempt, job.error_message) == (0, 1, message)
        assert job.max_retries == 3
        document = as_json(server, "job", "logs", job.job_id)
        events = [(e["to_status"], e["reason"], e["detail"]) for e in document["events"]]
        assert events == [
            ("PENDING", "SUBMITTED", ""),
            ("ASSIGNED", "ASSIGNED", ""),
            ("FAILED", "FAILED", message),
            ("DEAD_LETTERED", "REFUSED", ""),
        ]
    assert worker.log().count('"action": "job.refused"') == 2
    assert worker.terminate() == 0
    await client.channel.close()


@needs_root
async def test_a_root_worker_refuses_command_jobs_without_a_job_user(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, env={"JQ_WORKER_ALLOW_ROOT_JOBS": "false"})  # commands: "*"
    client = client_for(server.grpc_port)
    job_id = await submit(client, {"command": ["id", "-u"]})
    [job] = await wait_status(client, [job_id], [DEAD])
    assert (job.retry_count, job.error_message) == (0, ROOT_REFUSAL)
    log = worker.log()
    assert log.count('"action": "worker.root_jobs_refused"') == 1  # one warning, at start
    assert worker.terminate() == 0
    await client.channel.close()


@needs_root
async def test_a_root_worker_runs_command_jobs_as_the_job_user(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("this system has no user 'nobody'")
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(
        server,
        env={
            "JQ_WORKER_ALLOWED_COMMANDS": "id,sh",
            "JQ_WORKER_ALLOW_ROOT_JOBS": "false",
            "JQ_WORKER_RUN_AS_USER": "nobody",
        },
    )
    client = client_for(server.grpc_port)
    uid = await submit(client, {"command": ["id", "-u"], "cwd": "/"})
    home = await submit(client, {"command": ["sh", "-c", 'printf %s "$HOME"'], "cwd": "/"})
    jobs = await wait_status(client, [uid, home], [DONE])
    assert [j.result for j in jobs] == [f"{nobody.pw_uid}\n".encode(), nobody.pw_dir.encode()]
    assert '"action": "worker.run_as"' in worker.log()
    assert worker.terminate() == 0
    await client.channel.close()


def run_worker_briefly(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run jq-worker as root and expect it to exit at start-up."""
    return subprocess.run(
        [program("jq-worker"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{free_port()}", **env},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        ({"JQ_WORKER_RUN_AS_USER": "jobq-no-such-user"}, [], ["worker.run_as_user: no such"]),
        (
            {"JQ_HEALTH_HOST": "0.0.0.0", "JQ_METRICS_HOST": "0.0.0.0"},
            [],
            ["health.host is 0.0.0.0", "metrics.host is 0.0.0.0"],
        ),
        ({"JQ_WORKER_TOKEN": SECRET}, ["--token-file", "/nonexistent/token"], ["not both"]),
        ({}, ["--tls-cert", "/nonexistent/cert.pem"], ["worker.tls_cert and worker.tls_key"]),
    ],
)
def test_start_up_mistakes_exit_2_before_anything_starts(
    env: dict[str, str], args: list[str], expected: list[str]
) -> None:
    result = run_worker_briefly(*args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(expected)
    for line, text in zip(lines, expected, strict=True):
        assert line.startswith("jq-worker: ")
        assert text in line
    assert SECRET not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


async def test_insecure_allows_exposed_worker_endpoints(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--insecure", env={"JQ_HEALTH_HOST": "0.0.0.0"})
    wait_for_log(worker.log, '"action": "worker.registered"')
    assert worker.terminate() == 0


# --- a worker that is not root ------------------------------------------------------------


@pytest.fixture
def unprivileged() -> UnprivilegedPython:
    return unprivileged_python()


@pytest.fixture
def worker_as_nobody(
    unprivileged: UnprivilegedPython, tmp_path: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """jq-worker processes started as the unprivileged user by `start_unprivileged_worker`."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


WORKER_MAIN = "import sys; from jobq.worker.cli import main; sys.exit(main())"


def start_unprivileged_worker(
    python: UnprivilegedPython,
    started: list[subprocess.Popen[bytes]],
    log_path: Path,
    *args: str,
    env: dict[str, str],
) -> subprocess.Popen[bytes]:
    """The real jq-worker entry point run as the unprivileged user, cwd /, in a clean
    environment (nothing of root's), with its output in `log_path`."""
    full_env = python.environment(
        JQ_WORKER_METRICS_PORT="0", JQ_WORKER_HEALTH_PORT="0", JQ_LOGGING_LEVEL="debug", **env
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [python.interpreter, "-c", WORKER_MAIN, *args],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            **python.popen_options(),
        )
    started.append(process)
    return process


async def test_a_job_cannot_read_the_workers_environment(
    start_server: ServerFactory,
    db_dsn: str,
    unprivileged: UnprivilegedPython,
    worker_as_nobody: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """jq-worker runs as `nobody` with a secret in its environment; a job of the same user
    tries to read /proc/<worker pid>/environ and is denied. The control shows the mechanism
    would notice a leak: the same job against a plain process of that user reads its secret."""
    server = start_server({"JQ_DB_DSN": db_dsn})
    log_path = tmp_path / "jq-worker-nobody.log"
    worker = start_unprivileged_worker(
        unprivileged,
        worker_as_nobody,
        log_path,
        env={
            "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{server.grpc_port}",
            "JQ_WORKER_ALLOWED_COMMANDS": "cat",
            "JQ_DB_PASSWORD": SECRET,
        },
    )
    wait_for_log(lambda: log_path.read_text(errors="replace"), '"action": "worker.registered"')
    assert os.stat(f"/proc/{worker.pid}/environ").st_uid == 0  # non-dumpable: owned by root
    plain = subprocess.Popen(
        ["sleep", "300"],
        env=unprivileged.environment(JQ_DB_PASSWORD=SECRET),
        **unprivileged.popen_options(),
    )
    client = client_for(server.grpc_port)
    try:
        attack = await submit(
            client, {"command": ["cat", f"/proc/{worker.pid}/environ"]}, max_retries=0
        )
        control = await submit(
            client, {"command": ["cat", f"/proc/{plain.pid}/environ"]}, max_retries=0
        )
        [denied, leaked] = await wait_status(client, [attack, control], [DONE, DEAD])
    finally:
        plain.kill()
        plain.wait(timeout=10)
        await client.channel.close()
    assert denied.status == DEAD
    assert "Permission denied" in denied.error_message
    assert SECRET.encode() not in denied.result
    assert SECRET not in denied.error_message
    assert leaked.status == DONE, leaked.error_message
    assert f"JQ_DB_PASSWORD={SECRET}".encode() in leaked.result
    worker.terminate()
    assert worker.wait(timeout=60) == 0
    assert SECRET not in log_path.read_text(errors="replace")


def test_a_worker_that_is_not_root_refuses_to_switch_users(
    unprivileged: UnprivilegedPython,
    worker_as_nobody: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "jq-worker-nobody.log"
    worker = start_unprivileged_worker(
        unprivileged,
        worker_as_nobody,
        log_path,
        env={
            "JQ_WORKER_SERVER_ADDR": f"127.0.0.1:{free_port()}",
            "JQ_WORKER_RUN_AS_USER": "root",
            "JQ_WORKER_ALLOW_ROOT_JOBS": "true",
        },
    )
    assert worker.wait(timeout=60) == 2
    [line] = log_path.read_text().strip().splitlines()
    assert line.startswith("jq-worker: worker.run_as_user is 'root' (uid 0, gid 0), but ")
    assert f"runs as uid {unprivileged.user.pw_uid}" in line
    assert "not root" in line


# --- credentials and refusals, seen from a stand-in server ---------------------------------


async def test_the_worker_presents_its_token_and_client_certificate_on_every_call_and_refuses_loader_variables(  # noqa: E501
    tmp_path: Path,
) -> None:
    """The real jq-worker against a stand-in WorkerService (mutual TLS) that records what each
    call carried, and that feeds it a payload the real server refuses at submit: an env
    variable from the deny list. The worker refuses it (JOB_OUTCOME_REFUSED), runs nothing,
    and never logs its token."""
    pki = make_pki(tmp_path)  # the README's certificate commands
    token_file = tmp_path / "token"
    token_file.write_text(f"{SECRET}\n")
    fake = FakeWorkerService()
    server, port = await start_fake_server(
        fake,
        grpc.ssl_server_credentials(
            [(pki.read("server.key"), pki.read("server.crt"))],
            root_certificates=pki.read("ca.crt"),
            require_client_auth=True,
        ),
    )
    marker = tmp_path / "ran"
    preload = fake.assign(
        json.dumps(
            {"command": ["touch", str(marker)], "env": {"LD_PRELOAD": str(tmp_path / "x.so")}}
        ).encode()
    )
    log_path = tmp_path / "jq-worker.log"
    args = [
        "--token-file", str(token_file),
        "--tls-ca", pki.ca,
        "--tls-cert", pki.file("worker-1.crt"),
        "--tls-key", pki.file("worker-1.key"),
    ]  # fmt: skip
    env = {
        **os.environ,
        "JQ_WORKER_SERVER_ADDR": f"localhost:{port}",
        "JQ_WORKER_ALLOWED_COMMANDS": "*",
        "JQ_WORKER_ALLOW_ROOT_JOBS": "true",
        "JQ_WORKER_HEARTBEAT_INTERVAL_S": "0.2",
        "JQ_WORKER_METRICS_PORT": "0",
        "JQ_WORKER_HEALTH_PORT": "0",
        "JQ_LOGGING_LEVEL": "debug",
    }
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [program("jq-worker"), *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        result = await fake.result_for(preload, within=60)
        async with asyncio.timeout(30):
            while "Heartbeat" not in fake.methods_called():
                await asyncio.sleep(0.05)
        worker.terminate()
        assert await asyncio.to_thread(worker.wait, 60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        await server.stop(None)
    assert result.outcome == wpb.JOB_OUTCOME_REFUSED
    assert "LD_PRELOAD" in result.error_message
    assert not marker.exists()
    assert preload not in {ack.job_id for ack in fake.acks}
    methods = fake.methods_called()
    assert {"RegisterWorker", "StreamJobBatches", "Heartbeat", "ReportResults"} <= methods
    assert "Deregister" in methods
    for call in fake.calls:
        assert call.metadata.get("authorization") == f"Bearer {SECRET}", call.method
        assert call.peer_common_name == "worker-1", call.method
    assert SECRET not in log_path.read_text(errors="replace")
