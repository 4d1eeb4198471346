"""The application connection (`app`) the transactional enqueue tests run with, once per
driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import psycopg
import pytest
from support.enqueue_apps import App, AsyncpgApp, PsycopgApp, PsycopgAsyncApp


@pytest.fixture(params=["asyncpg", "psycopg", "psycopg-async"])
async def app(request: pytest.FixtureRequest, db_dsn: str) -> AsyncIterator[App]:
    """The application's connection (autocommit outside `begin`), with an `orders` table."""
    application: App
    if request.param == "asyncpg":
        application = AsyncpgApp(await asyncpg.connect(db_dsn))
    elif request.param == "psycopg":
        conn = await asyncio.to_thread(psycopg.connect, db_dsn, autocommit=True)
        application = PsycopgApp(conn)
    else:
        application = PsycopgAsyncApp(
            await psycopg.AsyncConnection.connect(db_dsn, autocommit=True)
        )
    await application.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    try:
        yield application
    finally:
        await application.close()
