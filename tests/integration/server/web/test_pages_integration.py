"""The dashboard's queues, jobs, job detail and workers pages over HTTP, against an in-process
jq-server with authentication on: what a read token sees, what an admin token does, CSRF, and
bad input at every door (issue 19)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from html import unescape

import httpx
import pytest
from support.auth import Tokens, bearer
from support.payloads import job_payload
from support.processes import free_port
from support.server_harness import Client, running_server

from jobq.domain.scopes import Scope
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import worker_service_pb2 as wpb
from jobq.server.web.pages.formatting import Shown, shown_bytes
from jobq.server.web.pages.queues import Throughput

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Dashboard:
    client: Client
    tokens: Tokens
    base_url: str

    def meta(self, scope: Scope) -> tuple[tuple[str, str], ...]:
        return bearer(self.tokens.by_scope[scope])

    @asynccontextmanager
    async def browser(self, scope: Scope | None) -> AsyncIterator[httpx.AsyncClient]:
        """An HTTP client logged in with the token of `scope` (None: not logged in). ADMIN is
        the token holding every scope (an operator who acts also reads the pages): a token
        with the admin scope alone sees the pages' read errors, as its gRPC calls would."""
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            if scope is Scope.ADMIN:
                await login(http, self.tokens.everything)
            elif scope is not None:
                await login(http, self.tokens.by_scope[scope])
            yield http

    async def submit(self, queue: str = "default", payload: bytes | None = None) -> str:
        payload = job_payload() if payload is None else payload
        reply = await self.client.jobs.SubmitJob(
            jpb.SubmitJobRequest(queue_name=queue, payload=payload),
            metadata=self.meta(Scope.SUBMIT),
        )
        return str(reply.job_id)

    async def status(self, job_id: str) -> str:
        reply = await self.client.jobs.GetJobStatus(
            jpb.GetJobStatusRequest(job_id=job_id), metadata=self.meta(Scope.READ)
        )
        return cpb.JobStatus.Name(reply.job.status).removeprefix("JOB_STATUS_")

    async def queues(self) -> dict[str, apb.Queue]:  # type: ignore[name-defined]
        reply = await self.client.admin.ListQueues(
            apb.ListQueuesRequest(), metadata=self.meta(Scope.READ)
        )
        return {queue.name: queue for queue in reply.queues}

    async def cancel(self, job_id: str) -> None:
        await self.client.jobs.CancelJob(
            jpb.CancelJobRequest(job_id=job_id), metadata=self.meta(Scope.ADMIN)
        )


async def login(http: httpx.AsyncClient, token: str) -> None:
    page = await http.get("/login")
    assert page.status_code == 200
    csrf = _CSRF.search(page.text)
    assert csrf is not None
    done = await http.post(
        "/login", data={"csrf_token": csrf.group(1), "token": token, "next": "/queues"}
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/queues"


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


async def post(http: httpx.AsyncClient, path: str, data: dict[str, object], page: str) -> str:
    """Submit a form of `page` (its CSRF token added) to `path`; the page the redirect leads to."""
    token = csrf_of((await http.get(page)).text)
    reply = await http.post(path, data={"csrf_token": token, **data})  # type: ignore[dict-item]
    assert reply.status_code == 303, reply.text
    landed = await http.get(reply.headers["location"])
    assert landed.status_code == 200, landed.text
    return landed.text


def flash(html: str) -> str:
    """The notice and/or error a page shows once after an action, unescaped."""
    found = re.findall(r'<p class="(notice|error)" role="(?:status|alert)">(.*?)</p>', html, re.S)
    assert found, "no notice on the page"
    return " | ".join(f"{kind}: {unescape(text)}" for kind, text in found)


@pytest.fixture
async def dashboard(db_dsn: str) -> AsyncIterator[Dashboard]:
    tokens = Tokens.new()
    async with running_server(db_dsn, {"dashboard.port": free_port(), **tokens.settings()}) as (
        app,
        client,
    ):
        assert app.dashboard_port is not None
        yield Dashboard(client, tokens, f"http://127.0.0.1:{app.dashboard_port}")


async def register_worker(dash: Dashboard, queues: list[str]) -> str:
    reply = await dash.client.workers.RegisterWorker(
        wpb.RegisterWorkerRequest(hostname="box-1", concurrency=4, queues=queues, version="t"),
        metadata=dash.meta(Scope.WORKER),
    )
    return str(reply.worker_id)


async def worker_status(dash: Dashboard, worker_id: str) -> str:
    reply = await dash.client.admin.ListWorkers(
        apb.ListWorkersRequest(), metadata=dash.meta(Scope.READ)
    )
    [worker] = [w for w in reply.workers if w.worker_id == worker_id]
    return cpb.WorkerStatus.Name(worker.status).removeprefix("WORKER_STATUS_")


# --- login and scopes -------------------------------------------------------------------------


# The unknown job's id is random, its test id is not: every pytest-xdist process must collect
# the same test ids.
@pytest.mark.parametrize(
    "path",
    [
        "/queues",
        "/jobs?status=DONE",
        "/workers",
        pytest.param(f"/jobs/{uuid.uuid4()}", id="/jobs/<an unknown id>"),
    ],
)
async def test_without_a_login_every_page_redirects_to_the_login(
    dashboard: Dashboard, path: str
) -> None:
    async with dashboard.browser(None) as http:
        reply = await http.get(path)
        assert reply.status_code == 303
        assert reply.headers["location"].startswith("/login?next=")
        assert httpx.URL(reply.headers["location"]).params["next"] == path
        # An action without a login changes nothing either.
        refused = await http.post("/queues/pause", data={"name": "default"})
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/login?next=")
    assert not (await dashboard.queues())["default"].paused


async def test_a_read_token_sees_every_page_and_no_action(dashboard: Dashboard) -> None:
    job_id = await dashboard.submit()
    worker_id = await register_worker(dashboard, ["default"])
    async with dashboard.browser(Scope.READ) as http:
        queues = await http.get("/queues")
        assert queues.status_code == 200
        assert "<h1>Queues</h1>" in queues.text
        assert ">default</a></th>" in queues.text
        assert 'data-live-region id="queues-table"' in queues.text
        jobs = await http.get("/jobs")
        assert jobs.status_code == 200
        assert f'href="/jobs/{job_id}"' in jobs.text
        assert 'data-live-region id="jobs-table"' in jobs.text
        detail = await http.get(f"/jobs/{job_id}")
        assert detail.status_code == 200
        assert 'id="job-status">PENDING<' in detail.text
        assert "SUBMITTED" in detail.text
        workers = await http.get("/workers")
        assert workers.status_code == 200
        assert worker_id in workers.text
        assert "0 / 4" in workers.text
        dead = await http.get("/jobs?status=DEAD_LETTERED")
        for html in (queues.text, jobs.text, detail.text, workers.text, dead.text):
            for form_action in (
                "/queues/pause", "/queues/limits", "/queues/create", "/queues/delete",
                "/jobs/retry", f"/jobs/{job_id}/cancel", "/workers/drain", "/workers/shutdown",
            ):  # fmt: skip
                assert f'action="{form_action}"' not in html
            assert "Retry selected" not in html


async def test_an_admin_sees_the_actions(dashboard: Dashboard) -> None:
    job_id = await dashboard.submit()
    await register_worker(dashboard, ["default"])
    async with dashboard.browser(Scope.ADMIN) as http:
        queues = (await http.get("/queues")).text
        for form_action in ("/queues/pause", "/queues/create", "/queues/delete"):
            assert f'action="{form_action}"' in queues
        assert 'data-confirm="Delete queue default?' in queues
        assert f'action="/jobs/{job_id}/cancel"' in (await http.get(f"/jobs/{job_id}")).text
        workers = (await http.get("/workers")).text
        assert 'action="/workers/drain"' in workers
        assert 'action="/workers/shutdown"' in workers


async def test_a_read_token_forging_an_admin_form_is_refused(dashboard: Dashboard) -> None:
    job_id = await dashboard.submit()
    await dashboard.cancel(job_id)
    async with dashboard.browser(Scope.READ) as http:
        html = await post(http, "/queues/pause", {"name": "default"}, "/queues")
        assert "lacks the admin scope" in flash(html)
        html = await post(http, f"/jobs/{job_id}/retry", {}, f"/jobs/{job_id}")
        assert "error: Job not retried" in flash(html)
        html = await post(http, "/queues/create", {"name": "sneaky"}, "/queues")
        assert "lacks the admin scope" in flash(html)
    assert not (await dashboard.queues())["default"].paused
    assert "sneaky" not in await dashboard.queues()
    assert await dashboard.status(job_id) == "DEAD_LETTERED"


async def test_forms_without_the_right_csrf_token_are_refused(dashboard: Dashboard) -> None:
    async with dashboard.browser(Scope.ADMIN) as http:
        for data in ({"name": "default"}, {"name": "default", "csrf_token": "forged"}):
            reply = await http.post("/queues/pause", data=data)
            assert reply.status_code == 403
            assert "did not come from this dashboard" in reply.text
        reply = await http.post("/queues/create", data={"name": "x", "csrf_token": ""})
        assert reply.status_code == 403
    assert not (await dashboard.queues())["default"].paused
    assert "x" not in await dashboard.queues()


# --- queues ------------------------------------------------------------------------------------


async def test_pause_resume_create_and_delete_queues(dashboard: Dashboard) -> None:
    async with dashboard.browser(Scope.ADMIN) as http:
        html = await post(http, "/queues/pause", {"name": "default"}, "/queues")
        assert flash(html) == "notice: Queue default paused"
        assert (await dashboard.queues())["default"].paused
        assert '<span class="status status-PAUSED">paused</span>' in html
        assert 'action="/queues/resume"' in html
        html = await post(http, "/queues/resume", {"name": "default"}, "/queues")
        assert flash(html) == "notice: Queue default resumed"
        assert not (await dashboard.queues())["default"].paused

        fields = {
            "name": "emails",
            "max_retries": "7",
            "ttl_seconds": "60",
            "max_interruptions": "2",
        }
        html = await post(http, "/queues/create", fields, "/queues")
        assert flash(html) == "notice: Queue emails created"
        emails = (await dashboard.queues())["emails"]
        assert (emails.max_retries, emails.ttl_seconds, emails.max_interruptions) == (7, 60, 2)
        assert "max retries 7, max interruptions 2, TTL 1 min" in html
        html = await post(http, "/queues/create", {"name": "emails"}, "/queues")
        assert "already exists" in flash(html)

        await dashboard.submit("emails")
        wrong = await post(
            http, "/queues/delete", {"name": "emails", "confirm": "email"}, "/queues"
        )
        assert flash(wrong) == "error: Queue emails not deleted: type its name exactly to confirm"
        assert "emails" in await dashboard.queues()
        held = await post(
            http, "/queues/delete", {"name": "emails", "confirm": "emails"}, "/queues"
        )
        assert "holds 1 job" in flash(held)
        assert "emails" in await dashboard.queues()
        gone = await post(
            http,
            "/queues/delete",
            {"name": "emails", "confirm": "emails", "force": "on"},
            "/queues",
        )
        assert flash(gone) == "notice: Queue emails deleted with 1 job(s)"
        assert "emails" not in await dashboard.queues()


async def test_the_queues_page_shows_depth_by_status(dashboard: Dashboard) -> None:
    for _ in range(3):
        await dashboard.submit()
    await dashboard.cancel(await dashboard.submit())
    async with dashboard.browser(Scope.READ) as http:
        html = (await http.get("/queues")).text
    row = html[html.index(">default</a></th>") :]
    row = row[: row.index("</tr>")]
    cells = re.findall(r'<td class="num">(.*?)</td>', row)
    numbers = [re.sub(r"<[^>]+>", "", cell) for cell in cells]
    # Pending, waiting, assigned, running, done, dead-lettered, then finished/min.
    assert numbers[:6] == ["3", "0", "0", "0", "0", "1"]
    assert 'href="/jobs?queue=default&amp;status=DEAD_LETTERED">1<' in row


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "bad name!"}, "invalid queue name 'bad name!'"),
        ({"name": ""}, "invalid queue name ''"),
        ({"name": "q1", "max_retries": "5000"}, "max retries must be between 0 and 1000"),
        ({"name": "q1", "max_retries": "two"}, "max retries must be a whole number"),
        ({"name": "q1", "ttl_seconds": "-1"}, "TTL must be between 0"),
        ({"name": "q1", "max_interruptions": "1e3"}, "max interruptions must be a whole number"),
    ],
)
async def test_a_bad_create_form_says_why_and_creates_nothing(
    dashboard: Dashboard, fields: dict[str, str], message: str
) -> None:
    async with dashboard.browser(Scope.ADMIN) as http:
        html = await post(http, "/queues/create", fields, "/queues")
    assert flash(html).startswith("error: Queue not created: ")
    assert message in flash(html)
    assert set(await dashboard.queues()) == {"default"}


async def test_bad_queue_names_in_actions_are_refused(dashboard: Dashboard) -> None:
    async with dashboard.browser(Scope.ADMIN) as http:
        html = await post(http, "/queues/pause", {"name": "../etc"}, "/queues")
        assert "invalid queue name '../etc'" in flash(html)
        html = await post(http, "/queues/resume", {"name": "nope"}, "/queues")
        assert flash(html).startswith("error: Queue nope not resumed: ")
        html = await post(http, "/queues/delete", {"name": "a b", "confirm": "a b"}, "/queues")
        assert "invalid queue name 'a b'" in flash(html)


async def test_an_oversized_form_is_refused_unread(dashboard: Dashboard) -> None:
    async with dashboard.browser(Scope.ADMIN) as http:
        token = csrf_of((await http.get("/queues")).text)
        reply = await http.post(
            "/queues/create", data={"csrf_token": token, "name": "big", "pad": "x" * 100_000}
        )
        assert reply.status_code == 413
        assert "too large" in reply.text
    assert "big" not in await dashboard.queues()


# --- jobs --------------------------------------------------------------------------------------


async def test_the_jobs_page_filters_pages_and_searches(dashboard: Dashboard) -> None:
    async with dashboard.browser(Scope.ADMIN) as http:
        await post(http, "/queues/create", {"name": "other"}, "/queues")
    other = await dashboard.submit("other")
    ids = [await dashboard.submit() for _ in range(105)]
    await dashboard.cancel(ids[0])
    job_link = re.compile(r'<a href="/jobs/([0-9a-f-]{36})" class="mono">')

    def link(html: str, rel: str) -> str:
        found = re.search(rf'<a href="([^"]+)" rel="{rel}">', html)
        assert found is not None, f"no {rel} link"
        return unescape(found.group(1))

    async with dashboard.browser(Scope.READ) as http:
        first = await http.get("/jobs", params={"queue": "default"})
        assert first.status_code == 200
        page1 = job_link.findall(first.text)
        assert len(page1) == 50
        assert other not in first.text
        assert '<option value="other" >other</option>' in first.text.replace("  ", " ")
        assert 'rel="prev"' not in first.text
        second = (await http.get(link(first.text, "next"))).text
        page2 = job_link.findall(second)
        assert len(page2) == 50
        assert link(second, "prev") == "/jobs?queue=default"
        assert "First page" not in second  # Previous is the first page
        third = (await http.get(link(second, "next"))).text
        page3 = job_link.findall(third)
        assert len(page3) == 5
        assert set(page1 + page2 + page3) == set(ids)
        assert 'rel="next"' not in third
        assert 'href="/jobs?queue=default">First page</a>' in third
        back = (await http.get(link(third, "prev"))).text
        assert job_link.findall(back) == page2
        assert link(back, "next") == link(second, "next")
        assert job_link.findall((await http.get(link(back, "prev"))).text) == page1

        dead = await http.get("/jobs", params={"status": "DEAD_LETTERED"})
        assert re.findall(r'<a href="/jobs/([0-9a-f-]{36})" class="mono">', dead.text) == [ids[0]]

        found = await http.get("/jobs", params={"q": f"  {other.upper()} "})
        assert found.status_code == 303
        assert found.headers["location"] == f"/jobs/{other}"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "not-an-id"}, "malformed job id &#39;not-an-id&#39;: expected a UUID"),
        ({"queue": "no such!"}, "invalid queue name"),
        ({"status": "SLEEPING"}, "unknown status &#39;SLEEPING&#39;"),
        ({"page_token": "garbage"}, "start from the first page"),
        ({"page_token": "x" * 600}, "page token: too long"),
        ({"page_token": "abc", "prev": "a.b/c"}, "previous pages: malformed"),
        ({"prev": ".".join(["abc"] * 21)}, "previous pages: too many"),
    ],
)
async def test_bad_jobs_page_parameters_say_why(
    dashboard: Dashboard, params: dict[str, str], message: str
) -> None:
    async with dashboard.browser(Scope.READ) as http:
        reply = await http.get("/jobs", params=params)
    assert reply.status_code == 400
    assert message in reply.text
    assert "Traceback" not in reply.text


async def test_bulk_retry_of_dead_lettered_jobs(dashboard: Dashboard) -> None:
    ids = [await dashboard.submit() for _ in range(3)]
    for job_id in ids:
        await dashboard.cancel(job_id)
    pending = await dashboard.submit()
    async with dashboard.browser(Scope.ADMIN) as http:
        page = (await http.get("/jobs?status=DEAD_LETTERED")).text
        assert "Retry selected" in page
        assert "Retry all on this page (3)" in page
        for job_id in ids:
            assert f'name="job_id" value="{job_id}"' in page
        html = await post(
            http, "/jobs/retry",
            {"which": "selected", "job_id": [ids[0], pending], "status": "DEAD_LETTERED"},
            "/jobs?status=DEAD_LETTERED",
        )  # fmt: skip
        assert "1 retried, 1 failed" in flash(html)
        assert f"{pending[:8]}…:" in flash(html)
        assert await dashboard.status(ids[0]) == "PENDING"
        assert await dashboard.status(pending) == "PENDING"
        html = await post(
            http, "/jobs/retry",
            {"which": "page", "page_job": ids[1:], "status": "DEAD_LETTERED"},
            "/jobs?status=DEAD_LETTERED",
        )  # fmt: skip
        assert flash(html) == "notice: 2 retried, 0 failed"
        assert [await dashboard.status(job_id) for job_id in ids] == ["PENDING"] * 3

        # Bad forms retry nothing.
        await dashboard.cancel(ids[0])
        bad = await post(http, "/jobs/retry", {"job_id": [ids[0], "nope"]}, "/jobs")
        assert "Nothing retried: malformed job id 'nope'" in flash(bad)
        empty = await post(http, "/jobs/retry", {"which": "selected"}, "/jobs")
        assert flash(empty) == "error: Nothing retried: select at least one job"
        many = await post(http, "/jobs/retry", {"job_id": [ids[0]] * 101}, "/jobs")
        assert "at most 100 jobs" in flash(many)
        assert await dashboard.status(ids[0]) == "DEAD_LETTERED"


# --- job detail --------------------------------------------------------------------------------


async def test_the_job_page_shows_the_job_and_escapes_its_payload(dashboard: Dashboard) -> None:
    payload = json.dumps({"handler": "tests.noop", "args": ["<script>alert(1)</script>"]})
    job_id = await dashboard.submit(payload=payload.encode())
    async with dashboard.browser(Scope.READ) as http:
        html = (await http.get(f"/jobs/{job_id}")).text
        assert "<script>alert" not in html
        assert "&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in html
        assert f"json, {len(payload)} bytes" in html
        assert "&#34;handler&#34;: &#34;tests.noop&#34;,\n" in html  # pretty-printed
        assert 'data-live-region id="job-facts"' in html
        assert 'data-live-region id="job-timeline"' in html
        assert 'data-live-region id="job-progress"' in html
        assert "The job has not reported progress." in html
        assert "PENDING  SUBMITTED" in html.replace("(new) -> ", "")

        reply = await dashboard.client.jobs.SubmitJob(
            jpb.SubmitJobRequest(
                queue_name="default", payload=job_payload(), depends_on=[job_id],
                concurrency_key="customer-7", priority=7,
            ),
            metadata=dashboard.meta(Scope.SUBMIT),
        )  # fmt: skip
        waiting = (await http.get(f"/jobs/{reply.job_id}")).text
        assert 'id="job-status">WAITING<' in waiting
        assert f'<dt>Depends on</dt><dd><a href="/jobs/{job_id}" class="mono">' in waiting
        assert '<dt>Concurrency key</dt><dd class="mono">customer-7</dd>' in waiting
        assert "<dt>Priority</dt><dd>7</dd>" in waiting


def test_user_data_is_shown_as_json_text_or_hex() -> None:
    assert shown_bytes(b"\xff\x00<b>") == Shown("hex", "ff 00 3c 62 3e", 5)
    assert shown_bytes("héllo <b>".encode()) == Shown("text", "héllo <b>", 10)
    assert shown_bytes(b'{"a":[1]}').text == '{\n  "a": [\n    1\n  ]\n}'
    assert shown_bytes(b"").kind == "empty"


@pytest.mark.parametrize(
    "bad", ["not-a-uuid", "1234", pytest.param(str(uuid.uuid4()), id="an-unknown-uuid")]
)
async def test_an_unknown_or_malformed_job_id_is_a_404_page(dashboard: Dashboard, bad: str) -> None:
    async with dashboard.browser(Scope.READ) as http:
        reply = await http.get(f"/jobs/{bad}")
    assert reply.status_code == 404
    assert "No such job: malformed job id" in reply.text or f"No job has the id {bad}" in reply.text


async def test_cancel_and_retry_from_the_job_page(dashboard: Dashboard) -> None:
    job_id = await dashboard.submit()
    page = f"/jobs/{job_id}"
    async with dashboard.browser(Scope.ADMIN) as http:
        assert f'action="/jobs/{job_id}/retry"' not in (await http.get(page)).text
        html = await post(http, f"/jobs/{job_id}/cancel", {}, page)
        assert flash(html) == "notice: Job cancelled"
        assert await dashboard.status(job_id) == "DEAD_LETTERED"
        assert 'id="job-status">DEAD_LETTERED<' in html
        assert "cancelled by token:all" in html
        assert f'action="/jobs/{job_id}/cancel"' not in html
        html = await post(http, f"/jobs/{job_id}/retry", {}, page)
        assert flash(html) == "notice: Job retried: it is PENDING again"
        assert await dashboard.status(job_id) == "PENDING"
        assert "MANUAL_RETRY" in html
        html = await post(http, f"/jobs/{job_id}/retry", {}, page)
        assert flash(html).startswith("error: Job not retried: ")
        reply = await http.post(
            "/jobs/nope/cancel", data={"csrf_token": csrf_of((await http.get(page)).text)}
        )
        assert reply.status_code == 303
        assert "malformed job id" in flash((await http.get(reply.headers["location"])).text)


# --- workers -----------------------------------------------------------------------------------


async def test_drain_and_shut_down_a_worker(dashboard: Dashboard) -> None:
    first = await register_worker(dashboard, ["default"])
    second = await register_worker(dashboard, ["default"])
    async with dashboard.browser(Scope.ADMIN) as http:
        html = await post(http, "/workers/drain", {"worker_id": first}, "/workers")
        assert flash(html).startswith(f"notice: Worker {first} is draining")
        assert await worker_status(dashboard, first) == "DRAINING"
        assert await worker_status(dashboard, second) == "ONLINE"
        assert '<span class="status status-DRAINING">DRAINING</span>' in html
        html = await post(http, "/workers/shutdown", {"worker_id": second}, "/workers")
        assert "asked to shut down" in flash(html)
        draining = (await http.get("/workers?status=DRAINING")).text
        assert first in draining
        bad = await post(http, "/workers/drain", {"worker_id": "w-1"}, "/workers")
        assert flash(bad) == "error: Nothing done: malformed worker id 'w-1': expected a UUID"
        unknown = str(uuid.uuid4())
        html = await post(http, "/workers/drain", {"worker_id": unknown}, "/workers")
        assert flash(html).startswith(f"error: Worker {unknown} not drained: ")
        reply = await http.get("/workers?status=ASLEEP")
        assert reply.status_code == 400
        assert "unknown status" in reply.text


async def test_a_running_job_shows_its_progress_worker_and_a_requested_cancel(
    dashboard: Dashboard,
) -> None:
    job_id = await dashboard.submit()
    meta = dashboard.meta(Scope.WORKER)
    registered = await dashboard.client.workers.RegisterWorker(
        wpb.RegisterWorkerRequest(hostname="box-2", concurrency=2, queues=["default"]),
        metadata=meta,
    )
    worker_id, incarnation = registered.worker_id, registered.incarnation
    stream = dashboard.client.workers.StreamJobBatches(
        wpb.StreamJobsRequest(worker_id=worker_id, incarnation=incarnation), metadata=meta
    )
    batch = await asyncio.wait_for(stream.read(), 10)
    [assignment] = batch.assignments
    assert assignment.job_id == job_id
    attempt = wpb.JobAttempt(
        job_id=job_id, attempt=assignment.attempt, claim_id=assignment.claim_id
    )
    await dashboard.client.workers.AckJobs(
        wpb.AckJobsRequest(worker_id=worker_id, jobs=[attempt], incarnation=incarnation),
        metadata=meta,
    )
    progress = wpb.JobProgress(
        job_id=job_id, attempt=assignment.attempt, claim_id=assignment.claim_id,
        fraction=0.42, message="resized <42> of 100",
    )  # fmt: skip
    reply = await dashboard.client.workers.ReportProgress(
        wpb.ReportProgressRequest(worker_id=worker_id, items=[progress], incarnation=incarnation),
        metadata=meta,
    )
    assert reply.outcomes[0].accepted
    page = f"/jobs/{job_id}"
    async with dashboard.browser(Scope.ADMIN) as http:
        html = (await http.get(page)).text
        assert 'id="job-status">RUNNING<' in html
        assert '<progress id="job-progress-bar" max="100" value="42">42%</progress>' in html
        assert "42%: resized &lt;42&gt; of 100</label>" in html
        assert worker_id in html
        workers = (await http.get("/workers")).text
        assert f'<a href="/jobs/{job_id}" class="mono">{job_id[:8]}…</a>' in workers
        html = await post(http, f"/jobs/{job_id}/cancel", {}, page)
        assert flash(html) == "notice: Cancel requested: the worker stops the job"
        assert "cancel requested" in html
        assert f'action="/jobs/{job_id}/cancel"' not in html
    stream.cancel()


async def test_set_queue_limits(dashboard: Dashboard) -> None:
    async with dashboard.browser(Scope.ADMIN) as http:
        fields = {
            "name": "default", "max_running": "20", "key_max_running": "2",
            "rate_limit": "100", "rate_period_ms": "60000",
        }  # fmt: skip
        html = await post(http, "/queues/limits", fields, "/queues")
        assert flash(html) == "notice: Limits of queue default changed"
        queue = (await dashboard.queues())["default"]
        assert (queue.max_running, queue.key_max_running, queue.rate.limit) == (20, 2, 100)
        assert queue.rate.period.seconds == 60
        assert "at most 20 running; at most 2 running per key; 100 per 1 min starts" in html
        html = await post(http, "/queues/limits", {"name": "default", "rate_limit": "0"}, "/queues")
        assert flash(html) == "notice: Limits of queue default changed"
        assert not (await dashboard.queues())["default"].rate.limit
        for bad, message in (
            ({}, "fill in at least one limit"),
            ({"rate_limit": "5"}, "give the rate period with its limit"),
            ({"key_rate_period_ms": "5"}, "give the key rate limit with its period"),
            ({"max_running": "-3"}, "max running must be between 0 and 1000000"),
            ({"rate_limit": "5", "rate_period_ms": "0"}, "rate period (ms) must be between 1"),
        ):
            html = await post(http, "/queues/limits", {"name": "default", **bad}, "/queues")
            assert message in flash(html)
        assert (await dashboard.queues())["default"].max_running == 20


async def test_without_authentication_the_pages_serve_loopback_visitors(db_dsn: str) -> None:
    """auth.tokens empty (loopback only): no login, every visitor may look and act, and an
    action still needs the page's CSRF token."""
    async with running_server(db_dsn, {"dashboard.port": free_port()}) as (app, client):
        base = f"http://127.0.0.1:{app.dashboard_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            page = await http.get("/queues")
            assert page.status_code == 200
            assert 'action="/queues/pause"' in page.text
            forged = await http.post("/queues/pause", data={"name": "default"})
            assert forged.status_code == 403
            html = await post(http, "/queues/pause", {"name": "default"}, "/queues")
            assert flash(html) == "notice: Queue default paused"
        listed = await client.admin.ListQueues(apb.ListQueuesRequest())
        assert listed.queues[0].paused


async def test_a_queue_page_shows_its_counts_activity_and_actions(dashboard: Dashboard) -> None:
    job_id = await dashboard.submit()
    await dashboard.cancel(job_id)
    async with dashboard.browser(Scope.ADMIN) as http:
        listing = (await http.get("/queues")).text
        assert '<a href="/queues/default">default</a></th>' in listing
        html = (await http.get("/queues/default")).text
        assert "<h1>Queue default</h1>" in html
        assert 'href="/jobs?queue=default&amp;status=DEAD_LETTERED">1</a>' in html
        assert f'<a href="/jobs/{job_id}" class="mono">{job_id[:8]}…</a>' in html
        assert "CANCELLED" in html
        assert 'name="back" value="queue"' in html
        landed = await post(http, "/queues/pause", {"name": "default", "back": "queue"}, "/queues")
        assert "<h1>Queue default</h1>" in landed
        assert flash(landed) == "notice: Queue default paused"
        for bad, status, message in (
            ("no%20such", 404, "No such queue: invalid queue name"),
            ("nosuch", 404, "No queue is named nosuch."),
        ):
            reply = await http.get(f"/queues/{bad}")
            assert reply.status_code == status
            assert message in unescape(reply.text)
    async with dashboard.browser(Scope.READ) as http:
        html = (await http.get("/queues/default")).text
        assert "<h1>Queue default</h1>" in html
        assert '<form method="post" action="/queues' not in html


def test_throughput_is_the_rate_of_finished_jobs_over_the_views() -> None:
    meter = Throughput()
    assert meter.per_minute("q", 100, now=0.0) is None
    assert meter.per_minute("q", 105, now=5.0) is None  # too short a span to say
    assert meter.per_minute("q", 130, now=30.0) == pytest.approx(60.0)
    assert meter.per_minute("q", 10, now=31.0) is None  # fell (retention): starts again
    assert meter.per_minute("q", 20, now=200.0) == pytest.approx(10 * 60 / 169)
    assert meter.per_minute("q", 20, now=800.0) is None  # older samples leave the window
    meter.forget_except(set())
    assert meter.per_minute("q", 5, now=801.0) is None
