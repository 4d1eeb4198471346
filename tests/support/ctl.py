"""Running the installed jq-ctl in end-to-end tests, and reading what it printed."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from support.processes import ServerProcess, program


def run_jq_ctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed jq-ctl; the caller's JQ_CTL_* variables are dropped."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JQ_CTL_")}
    environment.update(env or {})
    return subprocess.run(
        [program("jq-ctl"), *args], capture_output=True, text=True, env=environment, timeout=60
    )


def jq_ctl_at(
    server: ServerProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed jq-ctl against `server` (`env` may still override the address)."""
    return run_jq_ctl(
        *args, env={"JQ_CTL_SERVER_ADDR": f"127.0.0.1:{server.grpc_port}", **(env or {})}
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def failure(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one stderr line of a failed run, without its `jq-ctl: ` prefix."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("jq-ctl: ")
    return line.removeprefix("jq-ctl: ")


def as_json(server: ServerProcess, *args: str) -> Any:
    return json.loads(ok(jq_ctl_at(server, "--output", "json", *args)))


def wait_for_status(server: ServerProcess, job_id: str, status: str, within: float = 30) -> Any:
    """Poll `jq-ctl job status` until the job is in `status`; returns the job document."""
    deadline = time.monotonic() + within
    while True:
        found = as_json(server, "job", "status", job_id)["job"]
        if found["status"] == status:
            return found
        assert time.monotonic() < deadline, f"job {job_id} is {found['status']}, not {status}"
        time.sleep(0.1)
