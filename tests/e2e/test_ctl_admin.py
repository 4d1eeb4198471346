"""`jq-ctl queue|worker|system ...` end to end against a real jq-server and jq-worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import yaml
from support.ctl import as_json, failure, ok, wait_for_status
from support.ctl import jq_ctl_at as jq_ctl
from support.processes import ServerFactory, WorkerFactory

from jobq import __version__


def eventually(condition: Callable[[], Any], within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
    return result


async def test_queue_lifecycle(start_server: ServerFactory, db_dsn: str) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    created = as_json(
        server,
        "queue",
        "create",
        "emails",
        "--max-retries",
        "7",
        "--ttl",
        "1h",
        "--max-interruptions",
        "2",
    )
    assert created["queue"]["name"] == "emails"
    assert created["queue"]["max_retries"] == 7
    assert created["queue"]["ttl_seconds"] == 3600
    assert created["queue"]["max_interruptions"] == 2
    assert created["queue"]["created_at"].endswith("Z")
    line = ok(jq_ctl(server, "queue", "create", "plain"))
    assert line == "queue 'plain' created (max retries 3, max interruptions 3, ttl none)\n"
    assert "--max-interruptions" in failure(
        jq_ctl(server, "queue", "create", "bad", "--max-interruptions", "-1"), code=2
    )
    assert failure(jq_ctl(server, "queue", "create", "emails")) == "queue 'emails' already exists"
    assert "invalid queue name" in failure(jq_ctl(server, "queue", "create", "no spaces"))

    queues = as_json(server, "queue", "list")["queues"]
    assert [q["name"] for q in queues] == ["default", "emails", "plain"]
    table = ok(jq_ctl(server, "queue", "list")).splitlines()
    assert table[0].split() == [
        "NAME",
        "MAX",
        "RETRIES",
        "MAX",
        "INTERRUPTIONS",
        "TTL",
        "FLOW",
        "CREATED",
    ]
    assert table[2].split()[:4] == ["emails", "7", "2", "1h"]

    for _ in range(3):
        ok(jq_ctl(server, "job", "submit", "-q", "emails", "--", "true"))
    stats = yaml.safe_load(ok(jq_ctl(server, "-o", "yaml", "queue", "stats", "emails")))["stats"]
    assert stats["queue_name"] == "emails"
    assert stats["pending"] == 3
    assert stats["done"] == 0
    assert stats["oldest_pending_age_s"] >= 0
    assert stats["max_interruptions"] == 2
    shown = ok(jq_ctl(server, "queue", "stats", "emails"))
    assert "PENDING              3" in shown
    assert "Max interruptions    2" in shown

    refusal = failure(jq_ctl(server, "queue", "delete", "emails"))
    assert refusal == (
        "queue 'emails' holds 3 job(s), 3 unfinished; deleting it deletes them and their "
        "history: use --force (DeleteQueue force=true)"
    )
    assert as_json(server, "queue", "delete", "emails", "--force") == {"deleted_jobs": 3}
    assert ok(jq_ctl(server, "queue", "delete", "plain")) == "queue 'plain' deleted with 0 job(s)\n"
    assert failure(jq_ctl(server, "queue", "stats", "emails")) == "queue 'emails' not found"


async def test_worker_list_drain_and_shutdown(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--concurrency", "3", "--queues", "default")
    [listed] = eventually(lambda: as_json(server, "worker", "list")["workers"])
    assert listed["status"] == "ONLINE"
    assert listed["concurrency"] == 3
    assert listed["queues"] == ["default"]
    worker_id = listed["worker_id"]
    table = ok(jq_ctl(server, "worker", "list")).splitlines()
    assert table[1].split()[0] == worker_id
    assert "ONLINE" in table[1]
    assert "0/3" in table[1]

    drained = as_json(server, "worker", "drain", worker_id)["worker"]
    assert drained["status"] == "DRAINING"
    assert as_json(server, "worker", "list", "--status", "online")["workers"] == []
    line = ok(jq_ctl(server, "worker", "shutdown", worker_id))
    assert line.startswith(f"worker {worker_id} asked to shut down: now ")
    assert worker.process.wait(timeout=30) == 0  # its next heartbeat told it to stop
    eventually(lambda: as_json(server, "worker", "list", "--status", "offline")["workers"] != [])
    assert failure(jq_ctl(server, "worker", "drain", worker_id)).endswith("is OFFLINE")
    unknown = "01a20275-0000-7000-8000-000000000000"
    assert failure(jq_ctl(server, "worker", "drain", unknown)) == f"worker {unknown} not found"


async def test_system_status(start_server: ServerFactory, db_dsn: str) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    ok(jq_ctl(server, "job", "submit", "--", "true"))
    status = as_json(server, "system", "status")
    assert status["version"] == __version__
    assert status["uptime"] > 0
    states = {c["name"]: c["state"] for c in status["components"]}
    assert states == {"postgres": "HEALTHY", "redis": "DISABLED", "kafka": "DISABLED"}
    assert status["jobs_by_status"]["PENDING"] == 1
    assert yaml.safe_load(ok(jq_ctl(server, "-o", "yaml", "system", "status")))["version"] == (
        __version__
    )
    table = ok(jq_ctl(server, "system", "status"))
    assert f"Version  {__version__}" in table
    assert "postgres   HEALTHY" in table


async def test_queue_delete_keeps_history_and_spares_a_served_queue(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    """The finding: an unforced delete took finished jobs' history with it, and deleting a queue
    a worker served left the worker serving a queue nobody could submit to."""
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--queues", "default")
    [listed] = eventually(lambda: as_json(server, "worker", "list")["workers"])
    worker_id = listed["worker_id"]
    job_ids = [ok(jq_ctl(server, "job", "submit", "--", "true")).strip() for _ in range(2)]
    for job_id in job_ids:
        wait_for_status(server, job_id, "DONE")

    for force in ((), ("--force",)):
        refusal = failure(jq_ctl(server, "queue", "delete", "default", *force))
        assert refusal.startswith(f"queue 'default' is served by 1 live worker(s) ({worker_id}):")
        assert "stop them" in refusal
    ok(jq_ctl(server, "worker", "shutdown", worker_id))
    assert worker.process.wait(timeout=30) == 0
    eventually(lambda: as_json(server, "worker", "list", "--status", "offline")["workers"])

    assert failure(jq_ctl(server, "queue", "delete", "default")) == (
        "queue 'default' holds 2 job(s), 0 unfinished; deleting it deletes them and their "
        "history: use --force (DeleteQueue force=true)"
    )
    assert as_json(server, "job", "logs", job_ids[0])["events"]  # the history is still there
    assert as_json(server, "queue", "delete", "default", "--force") == {"deleted_jobs": 2}
    assert failure(jq_ctl(server, "job", "status", job_ids[0])) == f"job {job_ids[0]} not found"
