"""The README's HTTP API examples work as written: each curl command of the `## HTTP API`
section's ```sh block, run with bash against a real jq-server (dashboard port on, tokens
configured) and a real jq-worker that trusts jobq.demo_tasks, exits 0 and prints the JSON the
README says it does.

The commands run one at a time, in order, with JQ_URL and JQ_TOKEN in the environment as the
README asks; a line `VAR=$(...)` keeps what it captured for the lines after it (as one shell
would), and the test waits for the job to finish before the line that reads its result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.auth import Tokens
from support.processes import ServerFactory, WorkerFactory, free_port

from jobq.domain.scopes import Scope
from jobq.rpc.method_scopes import METHOD_SCOPES
from jobq.server.web.api_routes import API_ROUTES

README = Path(__file__).resolve().parents[2] / "README.md"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}")
ASSIGNMENT = re.compile(r"^([A-Z_]+)=\$\(")

pytestmark = pytest.mark.e2e


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("\n## HTTP API\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def commands() -> list[str]:
    """The commands of the section's ```sh blocks, a command's continuation lines (after a
    trailing backslash) kept with it, as written; comment lines dropped."""
    blocks = re.findall(r"^```sh\n(.*?)^```", section(), flags=re.MULTILINE | re.DOTALL)
    found: list[str] = []
    for block in blocks:
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending += line + "\n"
            if not line.endswith("\\"):
                found.append(pending.rstrip("\n"))
                pending = ""
        assert not pending, f"a command ends with a backslash: {pending}"
    return found


def test_the_section_shows_each_kind_of_call_with_curl_that_fails_loudly() -> None:
    found = commands()
    assert len(found) >= 6
    for line in found:
        assert "curl -sS --fail-with-body " in line, line
        assert '-H "Authorization: Bearer $JQ_TOKEN"' in line, line
        assert '"$JQ_URL/api/v1/' in line, line
    joined = "\n".join(found)
    for needle in [
        '/api/v1/jobs" ',  # submit
        '/api/v1/jobs/$JOB"',  # status
        "/api/v1/jobs?",  # list
        '/cancel"',
        '/retry"',
        "/api/v1/queues",
        '/api/v1/system"',
    ]:
        assert needle in joined, needle
    text = section()
    assert "GET /api/v1/openapi.json" in text
    assert "jq-server --dashboard-port" in text


def test_the_section_lists_every_route_with_its_method_and_scope() -> None:
    rows = re.findall(
        r"^\| `([A-Z]+) ([^`?]+)(?:\?[^`]*)?` \| `(\w+)` \| (\w+) \|$", section(), re.M
    )
    assert rows == [
        (
            route.http_method,
            route.full_path,
            route.rpc.rsplit("/", 1)[1],
            METHOD_SCOPES[route.rpc].value,
        )
        for route in API_ROUTES
    ]


def test_every_curl_example_of_the_readme_works_as_written(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    for tool in ("curl", "jq", "base64"):  # .ci/run installs them
        assert shutil.which(tool), f"{tool} is not installed"
    tokens = Tokens.new()
    port = free_port()
    server = start_server({"JQ_DB_DSN": db_dsn, "JQ_DASHBOARD_PORT": str(port), **tokens.env()})
    start_worker(
        server,
        "--import",
        "jobq.demo_tasks",
        env={"JQ_WORKER_TOKEN": tokens.by_scope[Scope.WORKER]},
    )
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "JQ_URL": url, "JQ_TOKEN": tokens.everything}
    outputs: list[tuple[str, str]] = []
    for line in commands():
        if ".job.result" in line:
            _wait_done(url, tokens.everything, env["JOB"])
        assigned = ASSIGNMENT.match(line)
        script = line + (f'\nprintf %s "${assigned.group(1)}"' if assigned else "")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, (line, result.stdout, result.stderr)
        if assigned:
            assert UUID.fullmatch(result.stdout), (line, result.stdout)
            env[assigned.group(1)] = result.stdout
        outputs.append((line, result.stdout))
    _check(outputs, env)


def _check(outputs: list[tuple[str, str]], env: dict[str, str]) -> None:
    """What each example printed, as the README's comments say."""
    job, later = env["JOB"], env["LATER"]
    checked = 0
    for line, out in outputs:
        if ASSIGNMENT.match(line):
            continue
        if ".job.result" in line:
            assert out.strip() == "5"
        else:
            body: Any = json.loads(out)
            if line.startswith('curl -sS --fail-with-body "$JQ_URL/api/v1/jobs/$JOB"'):
                assert body["job"]["job_id"] == job
                assert body["job"]["queue_name"] == "default"
            elif "/api/v1/jobs?" in line:
                assert job in [j["job_id"] for j in body["jobs"]]
                assert {j["status"] for j in body["jobs"]} == {"JOB_STATUS_DONE"}
            elif "/cancel" in line:
                assert body["job"]["job_id"] == later
                assert body["job"]["status"] == "JOB_STATUS_DEAD_LETTERED"
            elif "/retry" in line:
                assert body["job"]["job_id"] == later
                assert body["job"]["status"] == "JOB_STATUS_PENDING"
            elif line.endswith('-d \'{"name": "emails", "max_retries": 5}\''):
                assert body["queue"]["name"] == "emails"
                assert body["queue"]["max_retries"] == 5
            elif "/queues/emails/pause" in line:
                assert body["queue"]["paused"] is True
            elif "/queues/emails/stats" in line:
                assert body["stats"]["queue_name"] == "emails"
                assert body["stats"]["queue"]["paused"] is True
            elif "/api/v1/system" in line:
                states = {c["name"]: c["state"] for c in body["components"]}
                assert states["postgres"] == "COMPONENT_STATE_HEALTHY"
                assert body["workers_by_status"].get("ONLINE") == "1"
            else:
                raise AssertionError(f"no expectation for the README line: {line}")
        checked += 1
    assert checked == len(outputs) - 2  # every line but the two assignments


def _wait_done(url: str, token: str, job_id: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        reply = httpx.get(
            f"{url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
        )
        status = reply.json()["job"]["status"]
        if status == "JOB_STATUS_DONE":
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {status} after {timeout_s}s")


def test_a_command_job_over_http_needs_the_submit_scope_and_the_workers_consent(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    """The web side adds no way to run commands: submitting needs a `submit` token (a `read`
    or `admin` one is refused and nothing is queued), and a command job then runs only if the
    worker allows the command (`worker.allowed_commands`)."""
    tokens = Tokens.new()
    port = free_port()
    server = start_server({"JQ_DB_DSN": db_dsn, "JQ_DASHBOARD_PORT": str(port), **tokens.env()})
    start_worker(
        server,
        env={
            "JQ_WORKER_TOKEN": tokens.by_scope[Scope.WORKER],
            "JQ_WORKER_ALLOWED_COMMANDS": "echo",
        },
    )
    url = f"http://127.0.0.1:{port}/api/v1"

    def submit(token: str, command: list[str]) -> httpx.Response:
        return httpx.post(
            f"{url}/jobs",
            json={"queue_name": "default", "payload": {"command": command}, "max_retries": 0},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    for scope in (Scope.READ, Scope.ADMIN):
        refused = submit(tokens.by_scope[scope], ["echo", "no"])
        assert refused.status_code == 403, refused.text
        assert "lacks the submit scope" in refused.json()["error"]["message"]
    assert httpx.post(f"{url}/jobs", json={"queue_name": "default"}).status_code == 401
    everyone = {"Authorization": f"Bearer {tokens.everything}"}
    assert httpx.get(f"{url}/jobs", headers=everyone, timeout=10).json().get("jobs", []) == []

    allowed = submit(tokens.by_scope[Scope.SUBMIT], ["echo", "hello"]).json()["job_id"]
    other = submit(tokens.by_scope[Scope.SUBMIT], ["id"]).json()["job_id"]
    ended: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while len(ended) < 2:
        assert time.monotonic() < deadline, ended
        for job_id in (allowed, other):
            job = httpx.get(f"{url}/jobs/{job_id}", headers=everyone, timeout=10).json()["job"]
            if job["status"] in ("JOB_STATUS_DONE", "JOB_STATUS_DEAD_LETTERED"):
                ended[job_id] = job
        time.sleep(0.2)
    assert ended[allowed]["status"] == "JOB_STATUS_DONE"
    assert ended[other]["status"] == "JOB_STATUS_DEAD_LETTERED"
    assert "command not allowed: id" in ended[other]["error_message"]
