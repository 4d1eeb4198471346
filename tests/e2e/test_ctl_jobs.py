"""`jq-ctl job ...` end to end: the real jq-ctl against a real jq-server (and jq-worker)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from support.ctl import as_json, failure, ok, wait_for_status
from support.ctl import jq_ctl_at as jq_ctl
from support.job_waits import job
from support.processes import ServerFactory, WorkerFactory
from support.server_harness import client_for

from jobq.ctl.documents import to_document
from jobq.rpc._gen import common_pb2 as cpb

FAST_RETRY = {"JQ_SCHEDULER_RETRY_BASE_DELAY_S": "0", "JQ_SCHEDULER_RETRY_MAX_DELAY_S": "0"}


async def test_every_way_to_submit_reaches_the_server(
    start_server: ServerFactory, db_dsn: str, tmp_path: Path
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    client = client_for(server.grpc_port)

    command_id = ok(jq_ctl(server, "job", "submit", "--", "echo", "hello", "-n")).strip()
    stored = await job(client, command_id)
    assert json.loads(stored.payload) == {"command": ["echo", "hello", "-n"]}
    assert stored.queue_name == "default"
    assert stored.status == cpb.JOB_STATUS_PENDING

    payload = '{"handler": "app.tasks:ping", "args": [1, "two"]}'
    reply = as_json(server, "job", "submit", "--payload", payload, "--priority", "7")
    stored = await job(client, reply["job_id"])
    assert stored.payload == payload.encode()
    assert stored.priority == 7
    assert stored.max_retries == 3  # the default queue's

    path = tmp_path / "payload.json"
    path.write_text('{"command": ["true"]}')
    ok(jq_ctl(server, "queue", "create", "other"))
    before = datetime.now(UTC)
    reply = as_json(
        server, "job", "submit", "-q", "other", "--payload-file", str(path),
        "--max-retries", "5", "--delay", "1h30m",
    )  # fmt: skip
    stored = await job(client, reply["job_id"])
    assert stored.payload == path.read_bytes()
    assert (stored.queue_name, stored.max_retries) == ("other", 5)
    not_before = stored.not_before.ToDatetime(tzinfo=UTC)
    expected = before + timedelta(hours=1, minutes=30)
    assert expected - timedelta(seconds=5) <= not_before <= expected + timedelta(seconds=60)

    for given, meant in [
        ("2030-01-02T03:04:05+02:00", datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2030-01-02T03:04:05", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),  # no zone: UTC
    ]:
        reply = as_json(server, "job", "submit", "--not-before", given, "--", "true")
        stored = await job(client, reply["job_id"])
        assert stored.not_before.ToDatetime(tzinfo=UTC) == meant
    await client.channel.close()


async def test_status_in_every_format_matches_the_server(
    start_server: ServerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    client = client_for(server.grpc_port)
    job_id = ok(jq_ctl(server, "job", "submit", "--priority", "2", "--", "echo", "hi")).strip()
    stored = to_document(await job(client, job_id))

    from_json = as_json(server, "job", "status", job_id)["job"]
    from_yaml = yaml.safe_load(ok(jq_ctl(server, "-o", "yaml", "job", "status", job_id)))["job"]
    assert from_json == stored
    assert from_yaml == stored
    assert from_json["status"] == "PENDING"
    assert from_json["payload"] == '{"command": ["echo", "hi"]}'
    created = datetime.fromisoformat(from_json["created_at"])
    assert created.tzinfo is not None
    assert from_json["created_at"].endswith("Z")

    table = ok(jq_ctl(server, "job", "status", job_id))
    assert job_id in table
    assert "PENDING" in table
    assert "ago)" in table
    await client.channel.close()


async def test_list_pages_through_every_job_newest_first(
    start_server: ServerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    submitted = [
        ok(jq_ctl(server, "job", "submit", "--", "echo", str(n))).strip() for n in range(5)
    ]
    listed: list[str] = []
    token = ""
    for _ in range(5):
        page = as_json(server, "job", "list", "--limit", "2", "--page-token", token)
        assert len(page["jobs"]) <= 2
        listed += [j["job_id"] for j in page["jobs"]]
        token = page["next_page_token"]
        if not token:
            break
    assert listed == submitted[::-1]

    table = ok(jq_ctl(server, "job", "list", "--limit", "3"))
    *rows, hint = table.splitlines()
    assert rows[0].split()[:3] == ["ID", "QUEUE", "STATUS"]
    assert [row.split()[0] for row in rows[1:]] == submitted[:1:-1]
    assert hint.startswith("next page: --page-token ")
    next_page = ok(jq_ctl(server, "job", "list", "--limit", "3", "--page-token", hint.split()[-1]))
    assert [row.split()[0] for row in next_page.splitlines()[1:]] == submitted[1::-1]
    assert "next page" not in next_page

    ok(jq_ctl(server, "queue", "create", "side"))
    side = ok(jq_ctl(server, "job", "submit", "-q", "side", "--", "true")).strip()
    assert [j["job_id"] for j in as_json(server, "job", "list", "--queue", "side")["jobs"]] == [
        side
    ]
    ok(jq_ctl(server, "job", "cancel", side))
    dead = as_json(server, "job", "list", "--status", "dead_lettered")["jobs"]
    assert [j["job_id"] for j in dead] == [side]
    message = failure(jq_ctl(server, "job", "list", "--status", "sleeping"), code=2)
    assert "--status" in message


async def test_cancel_then_refuse_to_cancel_again(start_server: ServerFactory, db_dsn: str) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    client = client_for(server.grpc_port)
    job_id = ok(jq_ctl(server, "job", "submit", "--", "sleep", "60")).strip()
    line = ok(jq_ctl(server, "job", "cancel", job_id))
    assert line == f"job {job_id} cancelled: now DEAD_LETTERED\n"
    assert (await job(client, job_id)).status == cpb.JOB_STATUS_DEAD_LETTERED
    assert failure(jq_ctl(server, "job", "cancel", job_id)) == (
        f"cannot cancel job {job_id}: it is DEAD_LETTERED"
    )
    reasons = [e["reason"] for e in as_json(server, "job", "logs", job_id)["events"]]
    assert reasons == ["SUBMITTED", "CANCELLED"]
    await client.channel.close()


async def test_a_job_runs_fails_is_dead_lettered_and_retried(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn, **FAST_RETRY})
    worker = start_worker(server, "--queues", "default,once")

    job_id = ok(jq_ctl(server, "job", "submit", "--", "echo", "hello")).strip()
    done = wait_for_status(server, job_id, "DONE")
    assert done["result"] == "hello\n"
    events = yaml.safe_load(ok(jq_ctl(server, "-o", "yaml", "job", "logs", job_id)))["events"]
    assert [e["reason"] for e in events] == ["SUBMITTED", "ASSIGNED", "STARTED", "COMPLETED"]
    assert [e["to_status"] for e in events] == ["PENDING", "ASSIGNED", "RUNNING", "DONE"]
    assert events[0]["from_status"] is None
    history = ok(jq_ctl(server, "job", "logs", job_id))
    assert "COMPLETED" in history
    assert done["worker_id"][:8] in history  # a short worker id in tables

    ok(jq_ctl(server, "queue", "create", "once", "--max-retries", "0"))
    failing = ok(jq_ctl(server, "job", "submit", "--queue", "once", "--", "false")).strip()
    dead = wait_for_status(server, failing, "DEAD_LETTERED")
    assert dead["error_message"]
    assert ok(jq_ctl(server, "job", "retry", failing)) == f"job {failing} retried: now PENDING\n"
    reasons = [e["reason"] for e in as_json(server, "job", "logs", failing)["events"]]
    assert "MANUAL_RETRY" in reasons
    wait_for_status(server, failing, "DEAD_LETTERED")  # it fails again, as it should
    assert failure(jq_ctl(server, "job", "retry", job_id)) == (
        f"cannot retry job {job_id}: it is DONE"
    )
    assert worker.terminate() == 0
