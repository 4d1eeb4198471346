"""`jq-ctl audit list` and `jq-ctl token ...` end to end: the real jq-ctl against a real
jq-server (and jq-worker), with no authentication and with tokens that `jq-ctl token create`
made."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from support.ctl import as_json, failure, ok, run_jq_ctl
from support.ctl import jq_ctl_at as jq_ctl
from support.processes import ServerFactory, ServerProcess, WorkerFactory, program

from jobq.domain.tokens import TOKEN_PREFIX, token_digest


def eventually(condition: Callable[[], Any], within: float = 30) -> Any:
    deadline = time.monotonic() + within
    while not (result := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
    return result


def _records(server: ServerProcess, *args: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = as_json(server, "audit", "list", *args)["events"]
    return events


async def test_each_admin_action_is_in_the_audit_list(
    start_server: ServerFactory, start_worker: WorkerFactory, db_dsn: str
) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    worker = start_worker(server, "--queues", "default")
    [listed] = eventually(lambda: as_json(server, "worker", "list")["workers"])
    worker_id = listed["worker_id"]

    ok(jq_ctl(server, "queue", "create", "emails"))
    job_id = ok(jq_ctl(server, "job", "submit", "-q", "emails", "--", "true")).strip()
    refusal = failure(jq_ctl(server, "queue", "delete", "emails"))
    ok(jq_ctl(server, "job", "cancel", job_id))
    ok(jq_ctl(server, "job", "retry", job_id))
    ok(jq_ctl(server, "queue", "delete", "emails", "--force"))
    ok(jq_ctl(server, "worker", "drain", worker_id))

    records = _records(server)
    assert [(r["actor"], r["action"], r["target"], r["outcome"]) for r in records] == [
        ("anonymous", "worker.drain", worker_id, "ok"),
        ("anonymous", "queue.delete", "emails", "ok"),
        ("anonymous", "job.retry", job_id, "ok"),
        ("anonymous", "job.cancel", job_id, "ok"),
        ("anonymous", "queue.delete", "emails", f"FAILED_PRECONDITION: {refusal}"),
        ("anonymous", "queue.create", "emails", "ok"),
    ]
    assert list(records[0]) == [
        "id",
        "occurred_at",
        "actor",
        "action",
        "target",
        "outcome",
        "detail",
    ]
    assert records[0]["occurred_at"].endswith("Z")
    assert records[1]["detail"] == "force=true, deleted 1 job(s)"
    assert records[4]["detail"] == "force=false"

    deletes = _records(server, "--action", "queue.delete")
    assert [r["outcome"] == "ok" for r in deletes] == [True, False]
    assert _records(server, "--actor", "token:nobody") == []
    from_yaml = yaml.safe_load(ok(jq_ctl(server, "-o", "yaml", "audit", "list", "-n", "1")))
    assert from_yaml["events"] == records[:1]

    first = as_json(server, "audit", "list", "--limit", "4")
    assert [r["id"] for r in first["events"]] == [r["id"] for r in records[:4]]
    rest = as_json(
        server, "audit", "list", "--limit", "4", "--page-token", first["next_page_token"]
    )
    assert [r["id"] for r in rest["events"]] == [r["id"] for r in records[4:]]
    assert rest["next_page_token"] == ""

    table = ok(jq_ctl(server, "audit", "list", "--limit", "2")).splitlines()
    assert table[0].split() == ["TIME", "AGE", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAIL"]
    assert table[1].split()[3:6] == ["anonymous", "worker.drain", worker_id]  # after "1s ago"
    assert table[-1].startswith("next page: --page-token ")

    log = server.log_path.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    audited = [line for line in lines if line.get("logger") == "jobq.audit"]
    assert [line["action"] for line in audited][-2:] == ["queue.delete", "worker.drain"]
    assert all(line["actor"] == "anonymous" for line in audited)
    worker.process.terminate()
    assert worker.process.wait(timeout=30) == 0


async def test_bad_audit_list_input_is_one_line(start_server: ServerFactory, db_dsn: str) -> None:
    server = start_server({"JQ_DB_DSN": db_dsn})
    assert failure(jq_ctl(server, "audit", "list", "--page-token", "nonsense")).startswith(
        "page_token is invalid"
    )
    assert failure(jq_ctl(server, "audit", "list", "--action", "x" * 65)) == (
        "action filter is at most 64 characters, got 65"
    )
    assert "--limit" in failure(jq_ctl(server, "audit", "list", "--limit", "0"), code=2)
    empty = ok(jq_ctl(server, "audit", "list"))
    assert empty == "no audit events\n"


def test_token_create_prints_the_secret_and_the_server_entry() -> None:
    made = json.loads(ok(run_jq_ctl("-o", "json", "token", "create", "ci", "-s", "submit,read")))
    assert made["secret"].startswith(TOKEN_PREFIX)
    assert made["compact"] == f"ci:submit+read:{token_digest(made['secret'])}"
    text = ok(run_jq_ctl("token", "create", "ops", "--scopes", "admin"))
    assert text.startswith("token 'ops' with scope(s) admin\n")
    assert "JQ_AUTH_TOKENS=ops:admin:" in text
    refused = failure(run_jq_ctl("token", "create", "ops", "--scopes", "root"), code=2)
    assert "unknown scope(s) 'root'" in refused


def test_token_hash_reads_stdin(tmp_path: Path) -> None:
    secret = f"{TOKEN_PREFIX}{'x' * 43}"
    path = tmp_path / "secret"
    path.write_text(secret + "\n")
    with path.open() as stdin:
        result = subprocess.run(
            [program("jq-ctl"), "token", "hash"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ok(result) == token_digest(secret) + "\n"


async def test_tokens_made_by_jq_ctl_open_jq_server_by_scope(
    start_server: ServerFactory, db_dsn: str, tmp_path: Path
) -> None:
    made = {
        name: json.loads(ok(run_jq_ctl("-o", "json", "token", "create", name, "-s", scopes)))
        for name, scopes in (("reader", "read"), ("ops", "read,admin"))
    }
    files = {}
    for name, document in made.items():
        files[name] = tmp_path / f"{name}.token"
        files[name].write_text(document["secret"] + "\n")
    entries = ",".join(document["compact"] for document in made.values())
    server = start_server({"JQ_DB_DSN": db_dsn, "JQ_AUTH_TOKENS": entries})

    missing = failure(jq_ctl(server, "queue", "list"))
    assert missing.startswith("jq-server did not accept the call: ")
    assert missing.endswith(
        "(give a token with --token, JQ_CTL_TOKEN or --token-file, or a client certificate "
        "with --tls-cert and --tls-key)"
    )
    as_reader = ("--token-file", str(files["reader"]))
    ok(jq_ctl(server, *as_reader, "queue", "list"))
    denied = failure(jq_ctl(server, *as_reader, "queue", "create", "mail"))
    assert denied.startswith("permission denied: ")
    assert "reader" in denied
    assert denied.endswith("(use a token with that scope: --token, JQ_CTL_TOKEN or --token-file)")

    as_ops = ("--token-file", str(files["ops"]))
    ok(jq_ctl(server, *as_ops, "queue", "create", "mail"))
    records = json.loads(ok(jq_ctl(server, *as_ops, "-o", "json", "audit", "list")))["events"]
    assert [(r["actor"], r["action"], r["target"], r["outcome"]) for r in records] == [
        ("token:ops", "queue.create", "mail", "ok")
    ]
    env = {"JQ_CTL_TOKEN_FILE": str(files["ops"])}
    assert json.loads(ok(jq_ctl(server, "-o", "json", "audit", "list", env=env)))["events"]
    assert failure(jq_ctl(server, *as_reader, "audit", "list")).startswith("permission denied")
