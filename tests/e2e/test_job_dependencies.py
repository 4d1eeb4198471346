"""Job dependencies end to end (issue 18): a diamond and a failing branch built with
`jq-ctl job submit --after`, run by a real jq-worker through a real jq-server; the order is
read from the jobs' own started_at and completed_at."""

from __future__ import annotations

from datetime import datetime

from support.ctl import as_json, ok, wait_for_status
from support.ctl import jq_ctl_at as jq_ctl
from support.processes import ServerFactory, WorkerFactory


def _submit(server: object, *args: str) -> str:
    return str(as_json(server, "job", "submit", *args)["job_id"])  # type: ignore[arg-type]


def _time(job: dict[str, str], name: str) -> datetime:
    return datetime.fromisoformat(job[name].replace("Z", "+00:00"))


def test_a_diamond_and_a_failing_branch_run_in_dependency_order(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    # A dispatcher pass every 30 s: a dependant starts promptly only if its promotion wakes it.
    server = start_server({"JQ_DB_DSN": db_dsn, "JQ_SCHEDULER_INTERVAL_MS": "30000"})
    # A; B and C after A; D after B and C. F fails after A; G waits for F and C.
    a = _submit(server, "--", "sleep", "0.3")
    b = _submit(server, "--after", a, "--", "sleep", "0.2")
    c = _submit(server, "--after", a, "--", "sleep", "0.4")
    d = _submit(server, "--after", b, "--after", c, "--", "true")
    f = _submit(server, "--after", a, "--max-retries", "0", "--", "false")
    g = _submit(server, "--after", f, "--after", c, "--", "true")

    # Nothing runs yet: the dependants wait, and say for what.
    waiting = as_json(server, "job", "list", "--status", "waiting")["jobs"]
    assert sorted(job["job_id"] for job in waiting) == sorted([b, c, d, f, g])
    shown = as_json(server, "job", "status", d)["job"]
    assert shown["status"] == "WAITING"
    assert sorted(shown["depends_on"]) == sorted([b, c])
    table = ok(jq_ctl(server, "job", "status", d))
    assert "Runs after" in table
    assert b in table
    assert c in table
    stats = as_json(server, "queue", "stats", "default")["stats"]
    assert int(stats["waiting"]) == 5

    start_worker(server, "--queues", "default", "--concurrency", "4")
    done = {job_id: wait_for_status(server, job_id, "DONE") for job_id in (a, b, c, d)}
    dead = wait_for_status(server, g, "DEAD_LETTERED")
    failed = wait_for_status(server, f, "DEAD_LETTERED")

    assert _time(done[a], "completed_at") <= _time(done[b], "started_at")
    assert _time(done[a], "completed_at") <= _time(done[c], "started_at")
    assert _time(done[a], "completed_at") <= _time(failed, "started_at")
    assert max(_time(done[b], "completed_at"), _time(done[c], "completed_at")) <= _time(
        done[d], "started_at"
    )
    # promptly: woken by the promotion, not found by the next pass
    gap = _time(done[d], "started_at") - _time(done[c], "completed_at")
    assert gap.total_seconds() < 5, gap
    # B and C ran side by side (concurrency 4), not one after the other.
    assert _time(done[b], "started_at") < _time(done[c], "completed_at")

    assert dead["error_message"] == f"dependency {f} was dead-lettered"
    assert dead.get("started_at") is None  # G never ran
    logs = as_json(server, "job", "logs", g)["events"]
    assert [e["reason"] for e in logs] == ["SUBMITTED", "DEPENDENCY_FAILED"]

    # A dependant of a job already DONE is PENDING at once and runs; one of a job already
    # dead-lettered is dead-lettered at once (the documented policy).
    late = _submit(server, "--after", d, "--", "true")
    wait_for_status(server, late, "DONE")
    doomed = as_json(server, "job", "status", _submit(server, "--after", g, "--", "true"))
    assert doomed["job"]["status"] == "DEAD_LETTERED"
    assert doomed["job"]["error_message"] == f"dependency {g} was dead-lettered"


def test_a_dependant_served_by_another_replica_starts_promptly(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    """Two jq-servers on one database, a dispatcher pass every 30 s: A runs on a worker of the
    first, B (after A) can only run on a worker of the second. The first's resolver promotes B
    and its notification wakes the second's dispatcher."""
    env = {"JQ_DB_DSN": db_dsn, "JQ_SCHEDULER_INTERVAL_MS": "30000"}
    one = start_server(env)
    two = start_server(env)
    ok(jq_ctl(one, "queue", "create", "first"))
    ok(jq_ctl(one, "queue", "create", "second"))
    start_worker(one, "--queues", "first")
    start_worker(two, "--queues", "second")
    wait_for_status(one, _submit(one, "-q", "first", "--", "true"), "DONE")  # workers are up
    wait_for_status(two, _submit(two, "-q", "second", "--", "true"), "DONE")

    a = _submit(one, "-q", "first", "--", "sleep", "0.5")
    b = _submit(two, "-q", "second", "--after", a, "--", "true")
    first = wait_for_status(one, a, "DONE")
    second = wait_for_status(two, b, "DONE")
    gap = _time(second, "started_at") - _time(first, "completed_at")
    assert 0 <= gap.total_seconds() < 5, gap
