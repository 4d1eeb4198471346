"""Every example in examples/ runs as its docstring says, against the real programs.

A real jq-server on this test's database and a real jq-worker started as the examples say
(`PYTHONPATH=examples jq-worker --import tasks`, with the worker's own defaults: no command
jobs); then each example runs as `python examples/<name>.py` from the repository, its only
setting the server's address in JQ_CTL_SERVER_ADDR, as a user of jq-ctl would have it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.processes import ServerFactory, WorkerFactory, WorkerProcess

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
EXPECTED = {
    "submit_and_wait.py": "5",  # add.delay(2, 3)
    "submit_many.py": "9900",  # the sum of add(i, i) for i < 100
}
WORKER_DEFAULTS = {
    "PYTHONPATH": str(EXAMPLES),  # examples/ only: not the tests directory the fixture adds
    "JQ_WORKER_ALLOWED_COMMANDS": "",
    "JQ_WORKER_ALLOW_ROOT_JOBS": "false",
}


def test_every_example_is_tested() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py")} - {"tasks.py"}
    assert scripts == EXPECTED.keys(), "add the new example to EXPECTED"


def example_environment(grpc_port: int) -> dict[str, str]:
    """This environment without any jq-ctl setting or PYTHONPATH of its own (an example finds
    examples/tasks.py by itself), and the test server's address."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("JQ_") and name != "PYTHONPATH"
    }
    return {**env, "JQ_CTL_SERVER_ADDR": f"127.0.0.1:{grpc_port}"}


def run_example(name: str, grpc_port: int, worker: WorkerProcess) -> str:
    result = subprocess.run(
        [sys.executable, f"examples/{name}"],
        cwd=REPO,
        env=example_environment(grpc_port),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, (
        f"{name} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        f"\njq-worker:\n{worker.log()[-3000:]}"
    )
    return result.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_example_prints_its_result(
    name: str, start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--import", "tasks", env=WORKER_DEFAULTS)
    stdout = run_example(name, server.grpc_port, worker)
    assert stdout.strip() == EXPECTED[name]
    assert worker.process.poll() is None
    assert worker.terminate() == 0
