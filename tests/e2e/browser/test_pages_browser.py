"""The queues, jobs, job detail and workers pages in headless Chromium against the real
programs (issue 19): log in, retry a dead-lettered job and watch it finish, pause and resume a
queue (the resume by keyboard alone), drain a worker, and axe-core on every page."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import pytest
from playwright.sync_api import Page, expect
from support.auth import Tokens, bearer
from support.browser import accessibility_violations
from support.ctl import jq_ctl_at, ok
from support.processes import ServerFactory, ServerProcess, WorkerFactory, WorkerProcess, free_port

from jobq.domain.scopes import Scope
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.rpc._gen import job_service_pb2_grpc

FAST_RETRY = {"JQ_SCHEDULER_RETRY_BASE_DELAY_S": "0", "JQ_SCHEDULER_RETRY_MAX_DELAY_S": "0"}
DEADLINE_S = 45.0


@dataclass
class Stack:
    server: ServerProcess
    worker: WorkerProcess
    tokens: Tokens
    url: str

    def ctl(self, *args: str) -> Any:
        """jq-ctl's JSON answer, as an operator holding every scope."""
        result = jq_ctl_at(
            self.server, "--output", "json", *args, env={"JQ_CTL_TOKEN": self.tokens.everything}
        )
        return json.loads(ok(result))

    def submit(self, payload: dict[str, Any], max_retries: int) -> str:
        with grpc.insecure_channel(f"127.0.0.1:{self.server.grpc_port}") as channel:
            reply = job_service_pb2_grpc.JobServiceStub(channel).SubmitJob(
                jpb.SubmitJobRequest(
                    queue_name="default",
                    payload=json.dumps(payload).encode(),
                    max_retries=max_retries,
                ),
                metadata=bearer(self.tokens.by_scope[Scope.SUBMIT]),
                timeout=10,
            )
        return str(reply.job_id)

    def worker_status(self) -> str:
        workers = self.ctl("worker", "list").get("workers", [])
        live = [w for w in workers if w["status"] in ("ONLINE", "DRAINING")]
        assert len(live) <= 1
        return str(live[0]["status"]) if live else "none"


@pytest.fixture
def stack(
    start_server: ServerFactory, start_worker: WorkerFactory, browser_db_dsn: str, tmp_path: Path
) -> Stack:
    db_dsn = browser_db_dsn
    tokens = Tokens.new()
    port = free_port()
    server = start_server(
        {"JQ_DB_DSN": db_dsn, "JQ_DASHBOARD_PORT": str(port), **tokens.env(), **FAST_RETRY}
    )
    token_file = tmp_path / "worker.token"
    token_file.write_text(tokens.by_scope[Scope.WORKER] + "\n")
    token_file.chmod(0o600)
    worker = start_worker(
        server, "--token-file", str(token_file), "--import", "support.e2e_tasks",
        "--queues", "default",
    )  # fmt: skip
    return Stack(server, worker, tokens, f"http://127.0.0.1:{port}")


def log_in(page: Page, stack: Stack, path: str) -> None:
    """Open `path`, land on the login form, log in as an operator holding every scope."""
    page.goto(stack.url + path)
    expect(page).to_have_url(f"{stack.url}/login?next={quote(path, safe='')}")
    page.get_by_label("API token").fill(stack.tokens.everything)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(stack.url + path)


def until(page: Page, check: Callable[[], bool], what: str, reload: bool = True) -> None:
    """Wait for `check` to hold, reloading the page between looks when `reload` (the live
    updates may refresh it sooner; the test does not depend on them)."""
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(300)
        if reload and not check():
            page.reload()


def no_violations(page: Page) -> None:
    violations = accessibility_violations(page)
    assert violations == [], json.dumps(violations, indent=2)


def test_retry_a_dead_lettered_job_and_watch_it_finish(
    page: Page, stack: Stack, tmp_path: Path
) -> None:
    marker = tmp_path / "may-succeed"
    job_id = stack.submit(
        {"handler": "support.e2e_tasks:fail_until_marker", "args": [str(marker)]}, max_retries=0
    )
    log_in(page, stack, "/jobs?status=DEAD_LETTERED")
    link = page.get_by_role("link", name=job_id)
    until(page, lambda: link.count() == 1, "the job to be dead-lettered")
    no_violations(page)  # the jobs page with its bulk-retry checkboxes
    link.click()
    expect(page).to_have_url(f"{stack.url}/jobs/{job_id}")
    status = page.locator("#job-status")
    expect(status).to_have_text("DEAD_LETTERED")
    expect(page.locator("#job-error")).to_contain_text("marker")
    expect(page.locator("#job-timeline")).to_contain_text("RETRIES_EXHAUSTED")
    no_violations(page)

    marker.write_text("now it may succeed")
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_have_text("Job retried: it is PENDING again")
    until(page, lambda: status.inner_text() == "DONE", "the retried job to finish")
    expect(page.locator("#job-timeline")).to_contain_text("MANUAL_RETRY")
    expect(page.locator("#job-outcome")).to_contain_text('"ok"')
    assert stack.ctl("job", "status", job_id)["job"]["status"] == "DONE"
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)


def test_pause_and_resume_a_queue_and_drain_a_worker(page: Page, stack: Stack) -> None:
    log_in(page, stack, "/queues")
    expect(page.get_by_role("heading", level=1)).to_have_text("Queues")
    no_violations(page)
    page.get_by_role("button", name="Pause queue default").click()
    expect(page.get_by_role("status")).to_have_text("Queue default paused")
    [queue] = stack.ctl("queue", "list")["queues"]
    assert queue["paused"] is True
    no_violations(page)  # the paused state, the Resume button, the open notice

    # Resume with the keyboard alone: Tab from the top of the page to the button, Enter.
    target = "Resume queue default"
    page.locator("body").focus()
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.replace(/\\s+/g, ' ').trim()")
        if focused == target:
            break
    else:
        pytest.fail(f"Tab never reached the {target!r} button")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Queue default resumed")
    [queue] = stack.ctl("queue", "list")["queues"]
    assert not queue.get("paused")

    page.get_by_role("link", name="default", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Queue default")
    # Open the limits and delete forms, so that axe checks them too.
    page.locator("details.limits-zone summary").click()
    page.locator("details.danger-zone summary").click()
    expect(page.get_by_label("Type default to confirm")).to_be_visible()
    no_violations(page)

    page.get_by_role("link", name="Workers").click()
    expect(page).to_have_url(stack.url + "/workers")
    drain = page.get_by_role("button", name="Drain worker")
    until(page, lambda: drain.count() == 1, "the worker to come online")
    no_violations(page)
    drain.click()
    expect(page.get_by_role("status")).to_contain_text("is draining")
    expect(page.locator("#workers-table")).to_contain_text("DRAINING")
    assert stack.worker_status() == "DRAINING"
    until(page, lambda: "worker.draining" in stack.worker.log(), "the worker to drain", False)
    assert stack.worker.process.poll() is None  # draining, not gone

    # Shutting down asks first; dismissed, nothing happens.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Shut down worker").click()
    expect(page.get_by_role("status")).to_contain_text("is draining")  # still the old notice
    assert stack.worker_status() == "DRAINING"
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Shut down worker").click()
    expect(page.get_by_role("status")).to_contain_text("asked to shut down")
    stack.worker.process.wait(timeout=DEADLINE_S)  # it obeys at its next heartbeat


def test_the_pages_pass_axe_for_a_read_only_viewer(page: Page, stack: Stack) -> None:
    job_id = stack.submit({"handler": "support.e2e_tasks:noop"}, max_retries=0)
    page.goto(stack.url + "/login")
    page.get_by_label("API token").fill(stack.tokens.by_scope[Scope.READ])
    page.get_by_role("button", name="Log in").click()
    for path in ("/queues", "/queues/default", "/jobs", f"/jobs/{job_id}", "/workers"):
        page.goto(stack.url + path)
        expect(page.locator("h1")).to_have_count(1)
        assert page.get_by_role("button", name="Retry").count() == 0
        no_violations(page)


def test_a_submitted_job_appears_live_and_its_retry_is_watched_without_a_reload(
    page: Page, stack: Stack, tmp_path: Path
) -> None:
    """The operator's path with the page never reloaded by the test: the live updates (SSE,
    then a fetch of the page's live regions) bring the new job into the list, its dead letter
    and, after Retry, its DONE."""
    log_in(page, stack, "/jobs")
    page.evaluate("window.jobqTestMark = 'same document'")  # a reload would forget it
    marker = tmp_path / "may-succeed"
    job_id = stack.submit(
        {"handler": "support.e2e_tasks:fail_until_marker", "args": [str(marker)]}, max_retries=0
    )
    link = page.get_by_role("link", name=job_id)
    until(page, lambda: link.count() == 1, "the new job to appear in the list", reload=False)
    row = page.locator("#jobs-table tr", has=link)
    until(page, lambda: "DEAD_LETTERED" in row.inner_text(), "its dead letter", reload=False)
    assert page.evaluate("window.jobqTestMark") == "same document"
    link.click()
    status = page.locator("#job-status")
    expect(status).to_have_text("DEAD_LETTERED")
    marker.write_text("now it may succeed")
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_have_text("Job retried: it is PENDING again")
    page.evaluate("window.jobqTestMark = 'after retry'")
    until(page, lambda: status.inner_text() == "DONE", "the retried job to finish", reload=False)
    assert page.evaluate("window.jobqTestMark") == "after retry"
    expect(page.locator("#job-timeline")).to_contain_text("MANUAL_RETRY")


CONTROL_KEY = """e => [e.tagName, e.getAttribute('href') || '', e.name || '', e.id || '',
  e.getAttribute('value') || '', (e.textContent || '').trim().slice(0, 40),
  e.closest('form')?.getAttribute('action') || '', e.closest('tr')?.rowIndex ?? ''].join('|')"""
"""A control's identity that survives a live region's refresh (which replaces the elements)."""

VISIBLE_CONTROLS = f"""() => Array.from(document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary'))
  .filter(e => !e.disabled && e.checkVisibility()).map({CONTROL_KEY})"""


def test_every_control_of_every_page_is_reached_with_tab(page: Page, stack: Stack) -> None:
    """Keyboard navigation: Tab alone reaches every visible link, button and field of each page
    (no control is mouse-only), and the first stop is the skip link."""
    job_id = stack.submit({"handler": "support.e2e_tasks:noop"}, max_retries=0)
    # The pages update themselves live: a job still PENDING when a page's controls are listed
    # can finish before Tab reaches its link, which then is gone. Walk a settled system.
    deadline = time.monotonic() + DEADLINE_S
    while stack.ctl("job", "status", job_id)["job"]["status"] != "DONE":
        assert time.monotonic() < deadline, f"job {job_id} did not finish"
        time.sleep(0.1)
    log_in(page, stack, "/")
    for path in ("/", "/queues", "/queues/default", "/jobs", f"/jobs/{job_id}", "/workers"):
        page.goto(stack.url + path)
        page.locator("h1").wait_for()
        wanted = set(page.evaluate(VISIBLE_CONTROLS))
        assert len(wanted) > 5, path
        reached: set[str] = set()
        for step in range(len(wanted) + 10):
            page.keyboard.press("Tab")
            if step == 0:
                first = str(page.evaluate("document.activeElement.textContent")).strip()
                assert first == "Skip to content", path
            reached.add(str(page.evaluate(f"({CONTROL_KEY})(document.activeElement)")))
        missing = sorted(wanted - reached)
        assert missing == [], f"{path}: never reached with Tab: {missing}"
