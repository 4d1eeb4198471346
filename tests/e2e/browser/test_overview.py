"""The overview page in headless Chromium against real jq-server and jq-worker processes: the
login, the status cards, the two charts, a job submitted by the test appearing without a reload,
axe-core's check, no CSP violation; and the page loaded in the middle of a 40,000-job drain,
its live updates still coalesced and its navigation still working."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc
import pytest
from playwright.sync_api import ConsoleMessage, Page
from support.auth import Tokens, bearer
from support.browser import accessibility_violations
from support.processes import ServerFactory, ServerProcess, WorkerFactory, free_port

from jobq.domain.scopes import Scope
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import job_service_pb2_grpc

T = TypeVar("T")
DRAIN_JOBS = 40_000
"""Twice make bench's drain: long enough here (about 5,000 jobs/s) for the page to load and
be watched for a few seconds while the worker is still at it."""
NOOP = json.dumps({"handler": "support.e2e_tasks:noop"}).encode()


@dataclass
class Dashboard:
    server: ServerProcess
    url: str
    tokens: Tokens


@pytest.fixture
def dashboard(start_server: ServerFactory, browser_db_dsn: str) -> Dashboard:
    db_dsn = browser_db_dsn
    tokens = Tokens.new()
    port = free_port()
    server = start_server({"JQ_DB_DSN": db_dsn, "JQ_DASHBOARD_PORT": str(port), **tokens.env()})
    return Dashboard(server, f"http://127.0.0.1:{port}", tokens)


@pytest.fixture
def csp_errors(page: Page) -> Iterator[list[str]]:
    """Console messages of CSP refusals ("Refused to ...") and uncaught page errors."""
    seen: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Refused to" in message.text or "Content Security Policy" in message.text:
            seen.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: seen.append(f"page error: {error}"))
    return seen


def submit(server: ServerProcess, token: str, count: int, batch: int = 1000) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)  # type: ignore[no-untyped-call]
        for start in range(0, count, batch):
            size = min(batch, count - start)
            request = jpb.SubmitJobsRequest(
                jobs=[jpb.SubmitJobRequest(queue_name="default", payload=NOOP)] * size
            )
            jobs.SubmitJobs(request, metadata=bearer(token), timeout=60)


def log_in(page: Page, dashboard: Dashboard, token: str) -> None:
    page.goto(dashboard.url + "/")
    assert "/login" in page.url
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(dashboard.url + "/")


def card(page: Page, status: str) -> int:
    text = page.locator(f'#overview-jobs [data-status="{status}"] .value').inner_text()
    return int(text.replace(",", ""))


def chart_drawn(page: Page, selector: str) -> bool:
    """The chart's canvas exists, has a size, and has pixels drawn on it (axes at least)."""
    return bool(
        page.evaluate(
            """(selector) => {
                const canvas = document.querySelector(selector + ' canvas');
                if (!canvas || !canvas.width || !canvas.height) return false;
                const context = canvas.getContext('2d');
                const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
                for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
                return false;
            }""",
            selector,
        )
    )


def test_overview_shows_status_and_charts_and_a_submitted_job_live(
    dashboard: Dashboard,
    page: Page,
    start_worker: WorkerFactory,
    csp_errors: list[str],
) -> None:
    start_worker(
        dashboard.server,
        "--import",
        "support.e2e_tasks",
        env={"JQ_WORKER_TOKEN": dashboard.tokens.everything},
    )
    log_in(page, dashboard, dashboard.tokens.by_scope[Scope.READ])
    page.get_by_role("heading", name="Overview", level=1).wait_for()
    assert page.locator("#overview-jobs .card").count() >= 7
    assert page.locator("#overview-workers .card").count() >= 4
    assert page.locator("#overview-system dd").first.inner_text()  # the version
    page.wait_for_function("document.querySelector('#chart-throughput canvas') !== null")
    page.wait_for_function("document.querySelector('#chart-depth canvas') !== null")
    assert chart_drawn(page, "#chart-throughput")
    assert chart_drawn(page, "#chart-depth")
    page.locator(".live-state", has_text="Live").wait_for()

    # Marks this document: a reload would lose it.
    page.evaluate("window.__notReloaded = true")
    done_before = card(page, "DONE")
    submit(dashboard.server, dashboard.tokens.everything, 1)
    page.wait_for_function(
        "(before) => Number(document.querySelector('#overview-jobs [data-status=\"DONE\"] .value')"
        ".textContent.replace(/,/g, '')) > before",
        arg=done_before,
        timeout=15_000,
    )
    assert page.evaluate("window.__notReloaded === true")
    assert int(page.evaluate("document.body.dataset.liveUpdates")) >= 1

    assert accessibility_violations(page) == []
    assert csp_errors == []


def test_the_overview_stays_usable_in_the_middle_of_a_drain(
    dashboard: Dashboard,
    page: Page,
    start_worker: WorkerFactory,
    csp_errors: list[str],
) -> None:
    """A drain like make bench's (DRAIN_JOBS no-op jobs submitted in batches of 1,000, then a
    jq-worker of concurrency 256 works them off) with the page loaded while it runs."""
    token = dashboard.tokens.everything
    log_in(page, dashboard, token)
    submit(dashboard.server, token, DRAIN_JOBS)
    start_worker(
        dashboard.server,
        "--import",
        "support.e2e_tasks",
        "--concurrency",
        "256",
        env={"JQ_WORKER_TOKEN": token},
    )
    # Mid-drain: wait until jobs are finishing, then load the page.
    page.goto(dashboard.url + "/")
    page.wait_for_function(
        "() => Number(document.querySelector('#overview-jobs [data-status=\"DONE\"] .value')"
        ".textContent.replace(/,/g, '')) > 0",
        timeout=30_000,
        polling=200,
    )
    started = time.monotonic()
    response = page.reload()
    assert response is not None
    assert response.ok
    page.get_by_role("heading", name="Overview", level=1).wait_for(timeout=10_000)
    loaded = time.monotonic() - started
    assert loaded < 10.0, loaded
    page.locator(".live-state", has_text="Live").wait_for(timeout=10_000)
    assert card(page, "DONE") < DRAIN_JOBS, "the drain ended before the page loaded"

    # Count the page's live refreshes over a window while the drain goes on.
    window_s = 2.0
    before = int(page.evaluate("document.body.dataset.liveUpdates || '0'"))
    page.wait_for_timeout(window_s * 1000)
    after = int(page.evaluate("document.body.dataset.liveUpdates || '0'"))
    done_at_end = card(page, "DONE")
    assert after - before >= 1, "no live update arrived during the drain"
    assert after - before <= 3 * window_s + 1, (before, after)
    assert done_at_end < DRAIN_JOBS, "the drain ended before the window did: make it longer"

    # Navigation still answers at once.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Queues").click()
    page.wait_for_url(dashboard.url + "/queues", timeout=10_000)
    assert csp_errors == []


def test_live_updates_say_when_the_server_went_away(
    dashboard: Dashboard, page: Page, csp_errors: list[str]
) -> None:
    """The login page has no live region: live.js opens no stream there. On the overview, the
    status text tells the user when the stream drops (EventSource then retries by itself)."""
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/live/events" in r.url else None)
    page.goto(dashboard.url + "/login")
    page.wait_for_load_state("networkidle")
    assert streams == []
    assert page.locator(".live-state").count() == 0

    log_in(page, dashboard, dashboard.tokens.by_scope[Scope.READ])
    page.locator(".live-state", has_text="Live").wait_for()
    assert len(streams) == 1
    dashboard.server.terminate()
    page.locator(".live-state", has_text="Reconnecting").wait_for(timeout=15_000)
    assert csp_errors == []
