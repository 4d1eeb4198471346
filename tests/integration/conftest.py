"""Fixtures of the integration tests (tests/conftest.py has the database ones)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest


@pytest.fixture
async def replicas(db_dsn: str) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """Two pools on the test's database, as two jq-server replicas have: for the storage
    tests and the server's loops that two replicas run at once (heartbeat monitor, schedule
    runner)."""
    one = await asyncpg.create_pool(db_dsn, min_size=2, max_size=2)
    two = await asyncpg.create_pool(db_dsn, min_size=2, max_size=2)
    assert one is not None
    assert two is not None
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()
