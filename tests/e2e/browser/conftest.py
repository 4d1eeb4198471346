"""A headless Chromium for every browser test of the module, a fresh context per test, and
a database for tests that cannot use the async `db_dsn` (sync Playwright runs a loop here)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from playwright.sync_api import Browser, Page
from support.browser import chromium, in_thread


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def browser_db_dsn(pg_server: Any, migrated_template: str) -> Iterator[str]:
    """tests/conftest.py's db_dsn for a plain `def` test beside a running Playwright: a fresh
    database cloned from the migrated template, made and dropped off this thread."""
    name = f"t_{uuid.uuid4().hex[:16]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(pg_server.admin_dsn)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    in_thread(lambda: admin(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"'))
    try:
        yield pg_server.dsn(name)
    finally:
        in_thread(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
