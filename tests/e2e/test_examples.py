"""Every example in examples/ runs as its docstring says, against the real programs.

A real jq-server on this test's database and a real jq-worker started as the examples say
(`PYTHONPATH=examples jq-worker --import tasks`, with the worker's own defaults: no command
jobs); then each example runs as `python examples/<name>.py` from the repository, its only
setting the server's address in JQ_CTL_SERVER_ADDR, as a user of jq-ctl would have it. The web
example (web_orders.py) is served by a real `uvicorn` instead, and spoken to over HTTP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from support.processes import (
    ServerFactory,
    WorkerFactory,
    WorkerProcess,
    accepts_connections,
    free_port,
    program,
)

import jobq

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
EXPECTED = {
    "submit_and_wait.py": "5",  # add.delay(2, 3)
    "submit_many.py": "9900",  # the sum of add(i, i) for i < 100
}
TESTED_APART = {"web_orders.py": "test_web_orders_commits_an_order_with_its_job_or_neither"}
"""Examples that are not scripts to run and read, and the test of each."""
WORKER_DEFAULTS = {
    "PYTHONPATH": str(EXAMPLES),  # examples/ only: not the tests directory the fixture adds
    "JQ_WORKER_ALLOWED_COMMANDS": "",
    "JQ_WORKER_ALLOW_ROOT_JOBS": "false",
}


def test_every_example_is_tested() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py")} - {"tasks.py"}
    assert scripts == EXPECTED.keys() | TESTED_APART.keys(), (
        "add the new example to EXPECTED (or TESTED_APART)"
    )
    assert not EXPECTED.keys() & TESTED_APART.keys()
    assert all(callable(globals().get(test)) for test in TESTED_APART.values())


def user_environment() -> dict[str, str]:
    """This environment without any jobq setting or PYTHONPATH of its own: an example finds
    examples/tasks.py by itself."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("JQ_") and name != "PYTHONPATH"
    }


def example_environment(grpc_port: int) -> dict[str, str]:
    """The user's environment and the test server's address."""
    return {**user_environment(), "JQ_CTL_SERVER_ADDR": f"127.0.0.1:{grpc_port}"}


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


@contextmanager
def web_orders_app(db_dsn: str, log_path: Path) -> Iterator[str]:
    """examples/web_orders.py served as its docstring says (`uvicorn --app-dir examples
    web_orders:app`, JQ_EXAMPLE_DB_DSN naming jq-server's database) on a free loopback port;
    yields its base URL once it accepts connections, and stops it in any case."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                program("uvicorn"),
                *("--app-dir", "examples", "--host", "127.0.0.1", "--port", str(port)),
                "web_orders:app",
            ],
            cwd=REPO,
            env={**user_environment(), "JQ_EXAMPLE_DB_DSN": db_dsn},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # uvicorn runs the lifespan (the pool, the orders table) before it binds the port.
        deadline = time.monotonic() + 30
        while not accepts_connections(port):
            assert process.poll() is None, f"uvicorn exited {process.returncode}"
            assert time.monotonic() < deadline, "uvicorn did not listen within 30 s"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
        # uvicorn shuts down gracefully (the lifespan closes the pool), then re-raises the
        # signal so that it ends as it would have without a handler (uvicorn 0.29 and later).
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM
        assert "Application shutdown complete" in log_path.read_text(errors="replace")
    except BaseException:
        print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _counts(db_dsn: str) -> tuple[int, int, int]:
    """Rows of orders and of jobs, and the last order id handed out (written or rolled back)."""
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM jobs),"
            " pg_sequence_last_value(pg_get_serial_sequence('orders', 'id')::regclass)"
        ).fetchone()
    assert row is not None
    return row


def test_web_orders_commits_an_order_with_its_job_or_neither(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str, tmp_path: Path
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--import", "tasks", env=WORKER_DEFAULTS)
    order = {"email": "ada@example.com", "amount_cents": 1250}
    with (
        web_orders_app(db_dsn, tmp_path / "uvicorn.log") as url,
        httpx.Client(base_url=url, timeout=30) as http,
        jobq.Client(f"127.0.0.1:{server.grpc_port}") as client,
    ):
        created = http.post("/orders", json=order)
        assert created.status_code == 201, created.text
        order_id, job_id = created.json()["order_id"], created.json()["job_id"]
        result = client.result(job_id, timeout=60)
        assert result == f"receipt for order {order_id} sent to ada@example.com", worker.log()
        assert client.get(job_id).status is jobq.JobStatus.DONE
        with psycopg.connect(db_dsn) as conn:
            row = conn.execute(
                "SELECT email, amount_cents FROM orders WHERE id = %s", (order_id,)
            ).fetchone()
        assert row == ("ada@example.com", 1250)

        before = _counts(db_dsn)
        refused = http.post("/orders", json={**order, "amount_cents": 0})
        assert refused.status_code == 400, refused.text
        assert refused.json() == {"error": "amount_cents must be positive"}
        orders, jobs, last_id = _counts(db_dsn)
        assert (orders, jobs) == before[:2], "the refused order or its job was committed"
        assert last_id == before[2] + 1, "the refused order was never inserted: no rollback shown"
    assert worker.process.poll() is None
    assert worker.terminate() == 0
