"""Headless Chromium for the dashboard's browser tests: the distribution's package
(/usr/bin/chromium, which .ci/run installs), driven by Playwright, checked by axe-core.

Playwright's own browser download is never used (it needs the internet); its driver talks to
the system Chromium. The flags keep Chromium off the network (this machine has none: without
them it tries Google's hosts at every start) and let it run as root in a container.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

__all__ = ["CHROMIUM_ARGS", "accessibility_violations", "chromium", "chromium_path", "in_thread"]

T = TypeVar("T")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]


def chromium_path() -> str:
    """The system Chromium; the test fails (not skips) without it: .ci/run installs it."""
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return candidate
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("the dashboard's browser tests need Chromium: apt-get install chromium")
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def accessibility_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (WCAG 2.1 A and AA rules and best
    practices), each reduced to its rule id, impact, help text and the offending elements."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        {
            "id": violation["id"],
            "impact": violation.get("impact"),
            "help": violation.get("help"),
            "nodes": [node.get("target") for node in violation.get("nodes", [])][:5],
        }
        for violation in results.response.get("violations", [])
    ]


def in_thread(work: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    """Run a coroutine to its end on a loop of its own thread: Playwright's sync API keeps an
    event loop running on the test's thread, so neither asyncio.run nor the async fixtures
    (db_dsn) can run there once a browser is up."""

    async def run() -> T:
        return await work()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=timeout)
