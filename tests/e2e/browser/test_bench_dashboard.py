"""The dashboard during `make bench`: the benchmark's own jq-server, with `--dashboard-port`,
its overview loaded in headless Chromium while the benchmark's 40,000-job drain runs. The page
must load, take its live updates at the coalesced rate and still navigate; the benchmark must
then finish as usual."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page
from support.processes import free_port

REPO = Path(__file__).resolve().parents[3]
DRAIN_JOBS = 40_000
"""Twice make bench's default: long enough here for the page to be watched mid-drain."""
# Only the scenarios up to the drain the page is watched during: the others (events, tracing,
# the pinned horizon, replicas) are the bench smoke test's, and took this test from about 100 s
# to 300 s.
SMALL = [
    "--no-peer", "--no-events", "--no-flow", "--no-tracing", "--no-horizon", "--no-replicas",
    "--drain-jobs", str(DRAIN_JOBS),
    "--command-jobs", "10", "--single-jobs", "20", "--pickup-jobs", "10",
    "--pickup-rate", "100", "--calibration-calls", "20", "--sdk-sequential-jobs", "10",
    "--sdk-jobs", "64", "--enqueue-jobs", "10",
]  # fmt: skip


def jobs_by_status(base: str) -> dict[str, int]:
    answer = httpx.get(f"{base}/api/v1/system", timeout=5)
    answer.raise_for_status()
    counts = answer.json()["jobs_by_status"]
    return {status: int(count) for status, count in counts.items()}


def test_the_overview_stays_usable_during_the_bench_drain(page: Page, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    target = os.environ.get("JQ_TEST_POSTGRES") or "embedded"
    log = tmp_path / "bench.log"
    with open(log, "wb") as out:
        bench = subprocess.Popen(
            [sys.executable, "-m", "bench", "--postgres", target, *SMALL,
             "--dashboard-port", str(port), "--output", str(tmp_path / "latest.json")],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        # The drain is under way once the worker has finished some of its jobs.
        deadline = time.monotonic() + 180
        while True:
            assert bench.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the bench's drain never started"
            try:
                counts = jobs_by_status(base)
            except httpx.HTTPError:
                counts = {}
            if counts.get("DONE", 0) > 200 and counts.get("PENDING", 0) > DRAIN_JOBS // 4:
                break
            time.sleep(0.2)

        started = time.monotonic()
        response = page.goto(base + "/")  # no tokens in the bench: loopback, no login
        assert response is not None
        assert response.ok
        page.get_by_role("heading", name="Overview", level=1).wait_for(timeout=10_000)
        assert time.monotonic() - started < 10.0
        page.locator(".live-state", has_text="Live").wait_for(timeout=10_000)

        window_s = 3.0
        before = int(page.evaluate("document.body.dataset.liveUpdates || '0'"))
        page.wait_for_timeout(window_s * 1000)
        after = int(page.evaluate("document.body.dataset.liveUpdates || '0'"))
        assert after - before >= 1, "no live update arrived during the drain"
        assert after - before <= 3 * window_s + 1, (before, after)
        assert jobs_by_status(base).get("PENDING", 0) > 0, "the drain ended before the window"

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs").click()
        page.wait_for_url(base + "/jobs", timeout=10_000)
        page.get_by_role("heading", name="Jobs", level=1).wait_for(timeout=10_000)

        assert bench.wait(timeout=300) == 0, log.read_text()[-3000:]
        assert f"bench: dashboard at {base}/" in log.read_text()
    finally:
        if bench.poll() is None:
            # Its whole process group: a bench killed alone leaves its jq-server, jq-worker and
            # PostgreSQL running.
            os.killpg(bench.pid, signal.SIGTERM)
            try:
                bench.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(bench.pid, signal.SIGKILL)
                bench.wait(timeout=30)
