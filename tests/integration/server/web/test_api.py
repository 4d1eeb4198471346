"""/api/v1 against a real in-process jq-server on PostgreSQL, over HTTP with httpx: every route's
happy path, credentials and scopes, the dashboard's session cookie with its CSRF token, and
bad input answered with a JSON error and the right status (never a 500)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from support.auth import Tokens, bearer
from support.payloads import job_payload, payload_of_size
from support.processes import free_port
from support.server_harness import Client, running_server

import jobq
from jobq.domain.scopes import Scope
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import worker_service_pb2 as wpb
from jobq.server.app import ServerApp

MAX_BODY = 64 * 1024
MAX_PAYLOAD = 2000
UUID7_UNKNOWN = "01890a5d-ac96-774b-bcce-b302099a8057"


@dataclass
class Api:
    app: ServerApp
    grpc: Client
    http: httpx.AsyncClient
    tokens: Tokens

    def auth(self, scope: Scope | None = None) -> dict[str, str]:
        token = self.tokens.everything if scope is None else self.tokens.by_scope[scope]
        return {"Authorization": f"Bearer {token}"}

    async def ok(self, method: str, url: str, **kwargs: Any) -> Any:
        """The JSON of a 200 answer (asserted), called with the all-scopes token by default."""
        kwargs.setdefault("headers", self.auth())
        response = await self.http.request(method, url, **kwargs)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        return response.json()

    async def submit(self, payload: Mapping[str, Any] | None = None, **fields: Any) -> str:
        body = {"queue_name": "default", "payload": payload or {"handler": "tests.noop"}}
        reply = await self.ok("POST", "/api/v1/jobs", json={**body, **fields})
        return str(reply["job_id"])


def _settings(tokens: Tokens | None) -> dict[str, object]:
    return {
        **(tokens.settings() if tokens else {}),
        "dashboard.port": free_port(),
        "grpc.max_message_bytes": MAX_BODY,
        "limits.max_payload_bytes": MAX_PAYLOAD,
    }


@pytest.fixture
async def api(db_dsn: str) -> AsyncIterator[Api]:
    tokens = Tokens.new()
    async with running_server(db_dsn, _settings(tokens)) as (app, client):
        base = f"http://127.0.0.1:{app.dashboard_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            yield Api(app, client, http, tokens)


def _error(response: httpx.Response, status: int, code: str, contains: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    message = str(body["error"]["message"])
    assert contains.lower() in message.lower(), message
    assert "Traceback" not in message
    return message


def _payload(job: Mapping[str, Any]) -> Any:
    return json.loads(base64.b64decode(job["payload"]))


# --- jobs ------------------------------------------------------------------------------------


async def test_a_job_submitted_over_http_can_be_followed_cancelled_and_retried(api: Api) -> None:
    job_id = await api.submit({"handler": "tests.noop", "args": [1]}, priority=7)

    job = (await api.ok("GET", f"/api/v1/jobs/{job_id}"))["job"]
    assert job["job_id"] == job_id
    assert job["status"] == "JOB_STATUS_PENDING"
    assert job["priority"] == 7
    assert _payload(job) == {"handler": "tests.noop", "args": [1]}
    # Fields without presence are always printed, zeros and empties included.
    assert job["retry_count"] == 0
    assert job["worker_id"] == ""
    assert job["depends_on"] == []
    assert "started_at" not in job  # an unset timestamp is left out
    assert job["created_at"].endswith("Z")

    logs = await api.ok("GET", f"/api/v1/jobs/{job_id}/logs")
    assert [e["reason"] for e in logs["events"]] == ["SUBMITTED"]
    events = await api.ok("GET", f"/api/v1/jobs/{job_id}/events", params={"limit": 10})
    assert [e["job_id"] for e in events["events"]] == [job_id]
    assert events["events"][0]["to_status"] == "JOB_STATUS_PENDING"
    assert int(events["last_id"]) >= int(events["events"][0]["id"])

    cancelled = (await api.ok("POST", f"/api/v1/jobs/{job_id}/cancel"))["job"]
    assert cancelled["status"] == "JOB_STATUS_DEAD_LETTERED"
    assert cancelled["cancelled_by"] == "token:all"
    retried = (await api.ok("POST", f"/api/v1/jobs/{job_id}/retry", json={}))["job"]
    assert retried["status"] == "JOB_STATUS_PENDING"

    reasons = [e["reason"] for e in (await api.ok("GET", f"/api/v1/jobs/{job_id}/logs"))["events"]]
    assert reasons == ["SUBMITTED", "CANCELLED", "MANUAL_RETRY"]


async def test_jobs_are_listed_by_queue_and_status_and_paged(api: Api) -> None:
    await api.ok("POST", "/api/v1/queues", json={"name": "other"})
    ids = [await api.submit({"handler": "tests.noop", "args": [n]}) for n in range(3)]
    other = await api.submit(queue_name="other")
    dead = await api.submit()
    await api.ok("POST", f"/api/v1/jobs/{dead}/cancel")

    everything = await api.ok("GET", "/api/v1/jobs")
    assert [j["job_id"] for j in everything["jobs"]] == [dead, other, *reversed(ids)]
    assert everything["next_page_token"] == ""

    first = await api.ok(
        "GET", "/api/v1/jobs", params={"queue": "default", "status": "pending", "page_size": 2}
    )
    assert [j["job_id"] for j in first["jobs"]] == [ids[2], ids[1]]
    assert first["next_page_token"]
    second = await api.ok(
        "GET",
        "/api/v1/jobs",
        params={
            "queue": "default",
            "status": "JOB_STATUS_PENDING",
            "page_size": 2,
            "page_token": first["next_page_token"],
        },
    )
    assert [j["job_id"] for j in second["jobs"]] == [ids[0]]
    assert second["next_page_token"] == ""

    dead_only = await api.ok("GET", "/api/v1/jobs", params={"status": "Dead_Lettered"})
    assert [j["job_id"] for j in dead_only["jobs"]] == [dead]
    in_other = await api.ok("GET", "/api/v1/jobs", params={"queue": "other"})
    assert [j["job_id"] for j in in_other["jobs"]] == [other]


async def test_a_batch_is_submitted_in_order_with_json_or_base64_payloads(api: Api) -> None:
    raw = job_payload("b64")
    reply = await api.ok(
        "POST",
        "/api/v1/jobs:batch",
        json={
            "jobs": [
                {"queue_name": "default", "payload": {"handler": "tests.noop", "args": ["a"]}},
                {"queue_name": "default", "payload": base64.b64encode(raw).decode()},
            ]
        },
    )
    assert len(reply["job_ids"]) == 2
    assert reply["existing"] == [False, False]
    first, second = [
        (await api.ok("GET", f"/api/v1/jobs/{job_id}"))["job"] for job_id in reply["job_ids"]
    ]
    assert _payload(first) == {"handler": "tests.noop", "args": ["a"]}
    assert base64.b64decode(second["payload"]) == raw


async def test_a_batch_with_a_bad_job_submits_nothing_and_names_it(api: Api) -> None:
    response = await api.http.post(
        "/api/v1/jobs:batch",
        headers=api.auth(),
        json={
            "jobs": [
                {"queue_name": "default", "payload": {"handler": "tests.noop"}},
                {"queue_name": "default", "payload": {"handler": ""}},
            ]
        },
    )
    _error(response, 400, "INVALID_ARGUMENT", "job 1")
    assert (await api.ok("GET", "/api/v1/jobs"))["jobs"] == []


async def test_an_idempotency_key_returns_the_existing_job(api: Api) -> None:
    first = await api.ok(
        "POST",
        "/api/v1/jobs",
        json={
            "queue_name": "default",
            "payload": {"handler": "tests.noop"},
            "idempotency_key": "k",
        },
    )
    again = await api.ok(
        "POST",
        "/api/v1/jobs",
        json={
            "queue_name": "default",
            "payload": {"handler": "tests.noop"},
            "idempotency_key": "k",
        },
    )
    assert first["existing"] is False
    assert again == {"job_id": first["job_id"], "existing": True}


async def test_all_events_can_be_read_by_queue(api: Api) -> None:
    await api.ok("POST", "/api/v1/queues", json={"name": "other"})
    await api.submit()
    job_id = await api.submit(queue_name="other")
    events = await api.ok("GET", "/api/v1/events", params={"queue": "other"})
    assert [(e["job_id"], e["reason"]) for e in events["events"]] == [(job_id, "SUBMITTED")]
    tail = await api.ok("GET", "/api/v1/events", params={"limit": 1, "newest": "true"})
    assert [e["job_id"] for e in tail["events"]] == [job_id]


# --- queues ----------------------------------------------------------------------------------


async def test_queues_are_created_listed_paused_limited_and_deleted(api: Api) -> None:
    created = await api.ok(
        "POST", "/api/v1/queues", json={"name": "emails", "max_retries": 2, "ttl_seconds": 60}
    )
    assert created["queue"]["name"] == "emails"
    assert created["queue"]["max_retries"] == 2
    assert created["queue"]["paused"] is False

    names = [q["name"] for q in (await api.ok("GET", "/api/v1/queues"))["queues"]]
    assert names == ["default", "emails"]

    paused = await api.ok("POST", "/api/v1/queues/emails/pause")
    assert paused["queue"]["paused"] is True
    resumed = await api.ok("POST", "/api/v1/queues/emails/resume")
    assert resumed["queue"]["paused"] is False

    limited = await api.ok(
        "PUT",
        "/api/v1/queues/emails/limits",
        json={"max_running": 5, "rate": {"limit": 10, "period": "1s"}},
    )
    assert limited["queue"]["max_running"] == 5
    assert limited["queue"]["rate"] == {"limit": 10, "period": "1s"}

    await api.submit(queue_name="emails")
    stats = (await api.ok("GET", "/api/v1/queues/emails/stats"))["stats"]
    assert stats["queue_name"] == "emails"
    assert stats["pending"] == "1"  # int64: a string in proto3 JSON
    assert stats["queue"]["max_running"] == 5

    refused = await api.http.delete("/api/v1/queues/emails", headers=api.auth())
    _error(refused, 409, "FAILED_PRECONDITION", "emails")
    deleted = await api.ok("DELETE", "/api/v1/queues/emails", params={"force": "true"})
    assert deleted == {"deleted_jobs": "1"}
    names = [q["name"] for q in (await api.ok("GET", "/api/v1/queues"))["queues"]]
    assert names == ["default"]


async def test_queue_errors_map_to_http_statuses(api: Api) -> None:
    _error(await api.http.get("/api/v1/queues/nope/stats", headers=api.auth()), 404, "NOT_FOUND")
    _error(await api.http.post("/api/v1/queues/nope/pause", headers=api.auth()), 404, "NOT_FOUND")
    taken = await api.http.post("/api/v1/queues", headers=api.auth(), json={"name": "default"})
    _error(taken, 409, "ALREADY_EXISTS")
    bad = await api.http.post("/api/v1/queues", headers=api.auth(), json={"name": "bad name!"})
    _error(bad, 400, "INVALID_ARGUMENT")
    nothing = await api.http.put("/api/v1/queues/default/limits", headers=api.auth(), json={})
    _error(nothing, 400, "INVALID_ARGUMENT")


# --- workers, schedules, system, audit ---------------------------------------------------------


async def test_workers_are_listed_drained_and_shut_down(api: Api) -> None:
    assert (await api.ok("GET", "/api/v1/workers"))["workers"] == []
    registered = await api.grpc.workers.RegisterWorker(
        wpb.RegisterWorkerRequest(hostname="h1", concurrency=3, queues=["default"]),
        metadata=bearer(api.tokens.by_scope[Scope.WORKER]),
    )
    worker_id = registered.worker_id

    workers = (await api.ok("GET", "/api/v1/workers", params={"status": "online"}))["workers"]
    assert [(w["worker_id"], w["concurrency"], w["queues"]) for w in workers] == [
        (worker_id, 3, ["default"])
    ]
    drained = await api.ok("POST", f"/api/v1/workers/{worker_id}/drain")
    assert drained["worker"]["status"] == "WORKER_STATUS_DRAINING"
    assert (await api.ok("GET", "/api/v1/workers", params={"status": "online"}))["workers"] == []
    stopping = await api.ok("POST", f"/api/v1/workers/{worker_id}/shutdown")
    assert stopping["worker"]["worker_id"] == worker_id

    unknown = await api.http.post(f"/api/v1/workers/{UUID7_UNKNOWN}/drain", headers=api.auth())
    _error(unknown, 404, "NOT_FOUND")
    malformed = await api.http.post("/api/v1/workers/w1/shutdown", headers=api.auth())
    _error(malformed, 400, "INVALID_ARGUMENT", "worker id")


async def test_schedules_are_created_read_paused_resumed_and_deleted(api: Api) -> None:
    created = await api.ok(
        "POST",
        "/api/v1/schedules",
        json={
            "name": "nightly",
            "cron": "0 3 * * *",
            "time_zone": "Europe/Paris",
            "payload": {"handler": "tests.noop"},
            "missed": "MISSED_TICK_POLICY_ONCE",
        },
    )
    assert created["schedule"]["name"] == "nightly"
    assert created["schedule"]["queue_name"] == "default"
    assert json.loads(base64.b64decode(created["schedule"]["payload"])) == {"handler": "tests.noop"}
    listed = await api.ok("GET", "/api/v1/schedules")
    assert [s["name"] for s in listed["schedules"]] == ["nightly"]
    one = (await api.ok("GET", "/api/v1/schedules/nightly"))["schedule"]
    assert len(one["upcoming"]) > 1
    assert (await api.ok("POST", "/api/v1/schedules/nightly/pause"))["schedule"]["paused"]
    assert not (await api.ok("POST", "/api/v1/schedules/nightly/resume"))["schedule"]["paused"]
    assert await api.ok("DELETE", "/api/v1/schedules/nightly") == {}
    gone = await api.http.get("/api/v1/schedules/nightly", headers=api.auth())
    _error(gone, 404, "NOT_FOUND")
    bad = await api.http.post(
        "/api/v1/schedules",
        headers=api.auth(),
        json={"name": "both", "cron": "* * * * *", "interval_seconds": 60},
    )
    _error(bad, 400, "INVALID_ARGUMENT")


async def test_system_status(api: Api) -> None:
    status = await api.ok("GET", "/api/v1/system")
    assert status["version"] == jobq.__version__
    components = {c["name"]: c["state"] for c in status["components"]}
    assert components["postgres"] == "COMPONENT_STATE_HEALTHY"
    assert status["uptime"].endswith("s")
    assert isinstance(status["jobs_by_status"], dict)


async def test_the_audit_trail_names_the_http_caller(api: Api) -> None:
    job_id = await api.submit()
    await api.ok("POST", f"/api/v1/jobs/{job_id}/cancel", headers=api.auth(Scope.ADMIN))
    await api.ok("POST", "/api/v1/queues", json={"name": "audited"}, headers=api.auth(Scope.ADMIN))
    audit = await api.ok(
        "GET", "/api/v1/audit", params={"action": "job.cancel"}, headers=api.auth(Scope.ADMIN)
    )
    assert [(e["actor"], e["action"], e["target"], e["outcome"]) for e in audit["events"]] == [
        ("token:admin", "job.cancel", job_id, "ok")
    ]
    everything = await api.ok("GET", "/api/v1/audit", params={"actor": "token:admin"})
    assert {e["action"] for e in everything["events"]} == {"job.cancel", "queue.create"}
    paged = await api.ok("GET", "/api/v1/audit", params={"page_size": 1})
    assert len(paged["events"]) == 1
    assert paged["next_page_token"]


# --- credentials and scopes ------------------------------------------------------------------


async def test_no_credential_or_a_wrong_token_is_401(api: Api) -> None:
    for method, url in [
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/queues"),
        ("GET", "/api/v1/system"),
    ]:
        _error(await api.http.request(method, url), 401, "UNAUTHENTICATED", "credential")
        wrong = await api.http.request(method, url, headers={"Authorization": "Bearer nope"})
        _error(wrong, 401, "UNAUTHENTICATED")
    garbled = await api.http.get("/api/v1/jobs", headers={"Authorization": "Basic abc"})
    _error(garbled, 401, "UNAUTHENTICATED")


async def test_a_read_token_sees_but_cannot_act(api: Api) -> None:
    job_id = await api.submit()
    read = api.auth(Scope.READ)
    assert (await api.ok("GET", f"/api/v1/jobs/{job_id}", headers=read))["job"]["job_id"] == job_id
    await api.ok("GET", "/api/v1/queues", headers=read)
    await api.ok("GET", "/api/v1/system", headers=read)
    for method, url, body in [
        ("POST", f"/api/v1/jobs/{job_id}/cancel", None),
        ("POST", f"/api/v1/jobs/{job_id}/retry", None),
        ("POST", "/api/v1/queues", {"name": "q2"}),
        ("POST", "/api/v1/queues/default/pause", None),
        ("DELETE", "/api/v1/queues/default", None),
        ("POST", "/api/v1/jobs", {"queue_name": "default", "payload": {"handler": "x"}}),
        ("GET", "/api/v1/audit", None),
    ]:
        response = await api.http.request(method, url, headers=read, json=body)
        _error(response, 403, "PERMISSION_DENIED", "scope")
    job = (await api.ok("GET", f"/api/v1/jobs/{job_id}"))["job"]
    assert job["status"] == "JOB_STATUS_PENDING"  # nothing happened
    assert [q["name"] for q in (await api.ok("GET", "/api/v1/queues"))["queues"]] == ["default"]


async def test_a_submit_token_submits_and_an_admin_token_acts(api: Api) -> None:
    reply = await api.ok(
        "POST",
        "/api/v1/jobs",
        headers=api.auth(Scope.SUBMIT),
        json={"queue_name": "default", "payload": {"handler": "tests.noop"}},
    )
    job_id = reply["job_id"]
    cannot = await api.http.get(f"/api/v1/jobs/{job_id}", headers=api.auth(Scope.SUBMIT))
    _error(cannot, 403, "PERMISSION_DENIED")
    admin = api.auth(Scope.ADMIN)
    assert (await api.ok("POST", f"/api/v1/jobs/{job_id}/cancel", headers=admin))["job"][
        "status"
    ] == "JOB_STATUS_DEAD_LETTERED"
    assert (await api.ok("POST", f"/api/v1/jobs/{job_id}/retry", headers=admin))["job"][
        "status"
    ] == "JOB_STATUS_PENDING"
    await api.ok("POST", "/api/v1/queues", headers=admin, json={"name": "made-by-admin"})


async def test_the_dashboard_session_cookie_needs_its_csrf_token_to_act(api: Api) -> None:
    csrf = _csrf_of(await api.http.get("/login"))
    login = await api.http.post(
        "/login",
        data={"token": api.tokens.everything, "csrf_token": csrf, "next": "/"},
    )
    assert login.status_code == 303, login.text
    assert "jq_session" in api.http.cookies

    # A read with the cookie alone works; an action without the session's CSRF token does not.
    read = await api.http.get("/api/v1/queues")
    assert read.status_code == 200, read.text
    refused = await api.http.post("/api/v1/queues", json={"name": "from-browser"})
    _error(refused, 403, "PERMISSION_DENIED", "csrf")
    wrong = await api.http.post(
        "/api/v1/queues", json={"name": "from-browser"}, headers={"X-CSRF-Token": csrf}
    )
    _error(wrong, 403, "PERMISSION_DENIED", "csrf")  # the pre-login session's token

    session_csrf = _csrf_of(await api.http.get("/login"))
    done = await api.http.post(
        "/api/v1/queues", json={"name": "from-browser"}, headers={"X-CSRF-Token": session_csrf}
    )
    assert done.status_code == 200, done.text
    audit = await api.ok("GET", "/api/v1/audit", params={"action": "queue.create"})
    assert [e["actor"] for e in audit["events"]] == ["token:all"]

    api.http.cookies.clear()  # logged out: the API wants a credential again
    _error(await api.http.get("/api/v1/queues"), 401, "UNAUTHENTICATED")


def _csrf_of(page: httpx.Response) -> str:
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


# --- bad input -------------------------------------------------------------------------------


async def test_malformed_and_unknown_ids(api: Api) -> None:
    for url in ["/api/v1/jobs/not-a-uuid", "/api/v1/jobs/not-a-uuid/logs"]:
        _error(await api.http.get(url, headers=api.auth()), 400, "INVALID_ARGUMENT")
    for url in [f"/api/v1/jobs/{UUID7_UNKNOWN}", f"/api/v1/jobs/{UUID7_UNKNOWN}/logs"]:
        _error(await api.http.get(url, headers=api.auth()), 404, "NOT_FOUND")
    _error(
        await api.http.post(f"/api/v1/jobs/{UUID7_UNKNOWN}/retry", headers=api.auth()),
        404,
        "NOT_FOUND",
    )
    unknown_queue = await api.http.post(
        "/api/v1/jobs",
        headers=api.auth(),
        json={"queue_name": "nope", "payload": {"handler": "tests.noop"}},
    )
    _error(unknown_queue, 404, "NOT_FOUND", "nope")
    done_job = await api.submit()
    await api.ok("POST", f"/api/v1/jobs/{done_job}/cancel")
    again = await api.http.post(f"/api/v1/jobs/{done_job}/cancel", headers=api.auth())
    _error(again, 409, "FAILED_PRECONDITION")


async def test_bodies_that_are_not_a_valid_request_are_400(api: Api) -> None:
    async def post(content: bytes, content_type: str = "application/json") -> httpx.Response:
        return await api.http.post(
            "/api/v1/jobs",
            content=content,
            headers={**api.auth(), "Content-Type": content_type},
        )

    _error(await post(b'{"queue_name": "default", "colour": 1}'), 400, "INVALID_ARGUMENT", "colour")
    _error(await post(b'{"queue_name": '), 400, "INVALID_ARGUMENT", "not valid JSON")
    _error(await post(b"[1, 2]"), 400, "INVALID_ARGUMENT", "JSON object")
    _error(await post(b'{"priority": NaN}'), 400, "INVALID_ARGUMENT", "NaN")
    _error(await post(b'{"priority": 1, "priority": 2}'), 400, "INVALID_ARGUMENT", "duplicate")
    _error(await post(b"\xff\xfe{}"), 400, "INVALID_ARGUMENT", "UTF-8")
    _error(await post(b"[" * 30000), 400, "INVALID_ARGUMENT", "nested")
    deep = b'{"queue_name": "default", "payload": ' + b'{"a":' * 5000 + b"1" + b"}" * 5001
    _error(await post(deep), 400, "INVALID_ARGUMENT", "nested")
    _error(await post(b'{"priority": "high"}'), 400, "INVALID_ARGUMENT", "priority")
    _error(await post(b'{"payload": "%%% not base64"}'), 400, "INVALID_ARGUMENT", "payload")
    q = b'"queue_name": "default", '
    _error(
        await post(b"{" + q + b'"payload": {"handler": ""}}'), 400, "INVALID_ARGUMENT", "handler"
    )
    _error(
        await post(b"{" + q + b'"payload": {"handler": "x"}, "priority": 12}'),
        400,
        "INVALID_ARGUMENT",
        "priority",
    )
    _error(await post(b""), 400, "INVALID_ARGUMENT", "JSON object")
    form = await post(b"queue_name=default", "application/x-www-form-urlencoded")
    _error(form, 415, "INVALID_ARGUMENT", "application/json")
    _error(await post(b"{}", "text/plain"), 415, "INVALID_ARGUMENT")
    _error(await post(b"{}", "application/json; charset=latin-1"), 415, "INVALID_ARGUMENT")
    assert (await api.ok("GET", "/api/v1/jobs"))["jobs"] == []


async def test_path_and_body_must_agree(api: Api) -> None:
    job_id = await api.submit()
    other = await api.http.post(
        f"/api/v1/jobs/{job_id}/cancel", headers=api.auth(), json={"job_id": UUID7_UNKNOWN}
    )
    _error(other, 400, "INVALID_ARGUMENT", "differs from the path")
    same = await api.ok("POST", f"/api/v1/jobs/{job_id}/cancel", json={"job_id": job_id})
    assert same["job"]["status"] == "JOB_STATUS_DEAD_LETTERED"


async def test_query_parameters_are_checked(api: Api) -> None:
    for params, contains in [
        ({"page_size": -1}, "negative"),
        ({"page_size": "ten"}, "page_size"),
        ({"page_size": "1.5"}, "page_size"),
        ({"status": "sleeping"}, "sleeping"),
        ({"colour": "red"}, "colour"),
        ({"page_token": "garbage"}, "page token"),
    ]:
        response = await api.http.get("/api/v1/jobs", headers=api.auth(), params=params)
        _error(response, 400, "INVALID_ARGUMENT", contains)
    twice = await api.http.get("/api/v1/jobs?queue=a&queue=b", headers=api.auth())
    _error(twice, 400, "INVALID_ARGUMENT", "more than once")
    flag = await api.http.delete(
        "/api/v1/queues/default", headers=api.auth(), params={"force": "maybe"}
    )
    _error(flag, 400, "INVALID_ARGUMENT", "true or false")
    body_on_get = await api.http.request("GET", "/api/v1/jobs", headers=api.auth(), content=b"{}")
    _error(body_on_get, 400, "INVALID_ARGUMENT", "takes no body")


async def test_a_body_over_the_limit_is_413_whatever_it_declares(api: Api) -> None:
    big = json.dumps({"payload": {"handler": "tests.noop", "args": ["x" * MAX_BODY]}}).encode()
    declared = await api.http.post(
        "/api/v1/jobs", headers={**api.auth(), "Content-Type": "application/json"}, content=big
    )
    _error(declared, 413, "RESOURCE_EXHAUSTED", str(MAX_BODY))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = await api.http.post(
        "/api/v1/jobs", headers={**api.auth(), "Content-Type": "application/json"}, content=chunks()
    )
    _error(streamed, 413, "RESOURCE_EXHAUSTED")
    assert (await api.ok("GET", "/api/v1/jobs"))["jobs"] == []


async def test_a_payload_over_the_payload_limit_is_400(api: Api) -> None:
    payload = base64.b64encode(payload_of_size(MAX_PAYLOAD + 1)).decode()
    response = await api.http.post(
        "/api/v1/jobs", headers=api.auth(), json={"queue_name": "default", "payload": payload}
    )
    _error(response, 400, "INVALID_ARGUMENT", "payload")
    fits = base64.b64encode(payload_of_size(MAX_PAYLOAD)).decode()
    await api.ok("POST", "/api/v1/jobs", json={"queue_name": "default", "payload": fits})


async def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    _error(await api.http.get("/api/v1/nothing", headers=api.auth()), 404, "NOT_FOUND")
    wrong = await api.http.patch("/api/v1/jobs", headers=api.auth())
    _error(wrong, 405, "METHOD_NOT_ALLOWED")


async def test_http_answers_are_the_grpc_answers_as_json(api: Api) -> None:
    job_id = await api.submit({"handler": "tests.noop", "args": ["same"]})
    over_http = await api.ok("GET", f"/api/v1/jobs/{job_id}")
    over_grpc = await api.grpc.jobs.GetJobStatus(
        jpb.GetJobStatusRequest(job_id=job_id), metadata=bearer(api.tokens.everything)
    )
    assert over_http == json_format.MessageToDict(
        over_grpc, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    queues = await api.ok("GET", "/api/v1/queues")
    queues_grpc = await api.grpc.admin.ListQueues(
        apb.ListQueuesRequest(), metadata=bearer(api.tokens.everything)
    )
    assert queues == json_format.MessageToDict(
        queues_grpc, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


async def test_the_correlation_id_is_echoed_or_made(api: Api) -> None:
    sent = await api.http.get(
        "/api/v1/queues", headers={**api.auth(), "X-Correlation-Id": "trace-42"}
    )
    assert sent.headers["x-correlation-id"] == "trace-42"
    made = await api.http.get("/api/v1/queues", headers={**api.auth(), "X-Correlation-Id": "a b"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-correlation-id"])


async def test_responses_carry_the_security_headers(api: Api) -> None:
    response = await api.http.get("/api/v1/queues", headers=api.auth())
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


# --- authentication off ----------------------------------------------------------------------


@pytest.fixture
async def open_api(db_dsn: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_server(db_dsn, _settings(None)) as (app, _):
        base = f"http://127.0.0.1:{app.dashboard_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            yield http


async def test_without_tokens_anyone_local_may_call_but_not_another_site(
    open_api: httpx.AsyncClient,
) -> None:
    created = await open_api.post("/api/v1/queues", json={"name": "local"})
    assert created.status_code == 200, created.text
    cross = await open_api.post(
        "/api/v1/queues", json={"name": "evil"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    _error(cross, 403, "PERMISSION_DENIED", "cross-site")
    origin = await open_api.post(
        "/api/v1/queues", json={"name": "evil"}, headers={"Origin": "http://evil.example"}
    )
    _error(origin, 403, "PERMISSION_DENIED", "cross-site")
    rebound = await open_api.get("/api/v1/queues", headers={"Host": "evil.example"})
    assert rebound.status_code == 421
    names = [q["name"] for q in (await open_api.get("/api/v1/queues")).json()["queues"]]
    assert names == ["default", "local"]
    audit = (await open_api.get("/api/v1/audit", params={"action": "queue.create"})).json()
    assert [e["actor"] for e in audit["events"]] == ["anonymous"]


async def test_a_nul_character_is_400_not_a_database_error(api: Api) -> None:
    # Found by the schemathesis pass: ListAuditEvents sent the filter to PostgreSQL, whose text
    # cannot hold NUL, and answered 500.
    audit = await api.http.get("/api/v1/audit", headers=api.auth(), params={"action": "a\x00"})
    _error(audit, 400, "INVALID_ARGUMENT", "NUL")
    queue = await api.http.post("/api/v1/queues", headers=api.auth(), json={"name": "q\u0000"})
    _error(queue, 400, "INVALID_ARGUMENT", "NUL")
