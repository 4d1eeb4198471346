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
        # asyncpg's default reset runs one more statement (RESET ALL, UNLISTEN *, ...) on every
        # release, a round trip per pool use. Our pool connections keep no session state: no
        # LISTEN (the notifier has its own connection), no SET, no session advisory locks, and
        # every transaction is closed by its context manager.
        reset=_no_reset,
    )
    assert pool is not None  # asyncpg types the result as optional for its legacy API
    return pool


async def create_claim_pool(dsn: str, *, connect_timeout_s: float = 5.0) -> asyncpg.Pool:
    """A small pool for claims only, with `enable_sort = off` for the whole session: the claim
    then gets its ordered index scan in one round trip (see PgJobStore.jobs_claim). Other
    queries must not run here: for them a sort is often the right plan.

    Claims also commit without waiting for the WAL flush (`synchronous_commit = off`, for these
    sessions only; the server's setting stays on for everything else). A claim is a lease, not
    an accepted job or a result: if PostgreSQL crashes within the fraction of a second before
    the flush, the claim is forgotten and the job is PENDING again with its previous attempt,
    so it runs again (at least once, as after a lost worker). Nothing accepted is lost: the
    submit that created the job and every later report (start, result) commit synchronously,
    and a synchronous commit flushes the earlier claim's WAL with its own. What it saves is an
    fsync wait between a submit and the job's start, on every dispatch cycle.

    The claim statement is planned once per session (`plan_cache_mode = force_generic_plan`):
    PostgreSQL otherwise re-plans it on every execution, because its generic plan's estimate
    never beats the custom plans', and planning took 0.4 ms of an idle claim's 1.1 ms (measured
    with one job to claim). The generic plan has the same shape: per queue, the claim index in
    claim order up to the limit, then the update by primary key."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=2,
        timeout=connect_timeout_s,
        server_settings={
            "enable_sort": "off",
            "synchronous_commit": "off",
            "plan_cache_mode": "force_generic_plan",
        },
        reset=_no_reset,
    )
    assert pool is not None
    return pool


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Pool connections carry no session state to reset (see create_pool)."""
