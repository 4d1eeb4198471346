"""The asyncpg connection pool that every PostgreSQL store shares."""

from __future__ import annotations

import asyncpg


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    connect_timeout_s: float = 5.0,
    command_timeout_s: float = 10.0,
) -> asyncpg.Pool:
    """A pool of connections to `dsn`, opened eagerly so start-up fails fast when PostgreSQL is
    unreachable."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=connect_timeout_s,
        command_timeout=command_timeout_s,
        # The server runs every statement through named, prepared queries; keep them cached.
        max_inactive_connection_lifetime=300.0,
    )
    assert pool is not None  # asyncpg types the result as optional for its legacy API
    return pool
