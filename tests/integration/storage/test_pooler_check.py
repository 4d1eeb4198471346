"""The session-pooling check against a real PgBouncer and a real PostgreSQL.

Each verdict is asked for many times in a row, on a pool whose state moves on between the runs
(server sessions opened, released, reused), so that a check that only worked by luck would show.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from support.pgbouncer import PgBouncerFactory, PoolMode
from support.pgbouncer import pgbouncers_fixture as pgbouncers_fixture  # the `pgbouncers` fixture

from jobq.domain.errors import Unavailable
from jobq.storage.pooler_check import SessionPoolingRequired, require_session_pooling

RUNS = 20
TIMEOUT_S = 10.0
STATEMENT_POOLING_REFUSAL = "transaction blocks not allowed in statement pooling mode"
"""What PgBouncer says when it closes a connection that opens a transaction block."""


async def _verdicts(dsn: str, runs: int = RUNS) -> list[str]:
    """`runs` checks of `dsn` in a row: "ok", or "refused" with what was observed."""
    verdicts = []
    for _ in range(runs):
        try:
            await require_session_pooling(dsn, timeout_s=TIMEOUT_S)
        except SessionPoolingRequired as exc:
            verdicts.append(f"refused: {exc.observed}")
        else:
            verdicts.append("ok")
    return verdicts


def _all_refused(verdicts: list[str]) -> bool:
    return all(verdict.startswith("refused") for verdict in verdicts)


async def _open_idle_server_sessions(dsn: str, count: int) -> None:
    """Make the pooler open `count` server sessions at once (concurrent transactions), then
    release them all: they stay in its pool, idle."""
    connections = [await asyncpg.connect(dsn, statement_cache_size=0) for _ in range(count)]
    try:
        transactions = [connection.transaction() for connection in connections]
        for connection, transaction in zip(connections, transactions, strict=True):
            await transaction.start()
            await connection.fetchval("SELECT 1")
        for transaction in transactions:
            await transaction.commit()
    finally:
        for connection in connections:
            await connection.close()


async def _server_sessions(direct_dsn: str) -> int:
    """How many PostgreSQL sessions other than this one are connected to this database."""
    conn = await asyncpg.connect(direct_dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _other_clients(dsn: str, count: int) -> AsyncIterator[None]:
    """`count` other clients running short transactions back to back through the pooler."""
    stop = asyncio.Event()

    async def busy() -> None:
        conn = await asyncpg.connect(dsn, statement_cache_size=0)
        try:
            while not stop.is_set():
                async with conn.transaction():
                    await conn.execute("SELECT pg_sleep(0.001)")
                await asyncio.sleep(0)
        finally:
            await conn.close()

    tasks = [asyncio.create_task(busy()) for _ in range(count)]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_a_direct_connection_passes(empty_db_dsn: str) -> None:
    assert await _verdicts(empty_db_dsn) == ["ok"] * RUNS


async def test_session_pooling_passes(pgbouncers: PgBouncerFactory, empty_db_dsn: str) -> None:
    bouncer = pgbouncers("session")
    assert await _verdicts(bouncer.through(empty_db_dsn)) == ["ok"] * RUNS


async def test_transaction_pooling_is_refused(
    pgbouncers: PgBouncerFactory, empty_db_dsn: str
) -> None:
    bouncer = pgbouncers("transaction")
    verdicts = await _verdicts(bouncer.through(empty_db_dsn))
    assert _all_refused(verdicts), verdicts


async def test_statement_pooling_is_refused(
    pgbouncers: PgBouncerFactory, empty_db_dsn: str
) -> None:
    bouncer = pgbouncers("statement")
    closed = "the pooler closed the connection: " + STATEMENT_POOLING_REFUSAL
    assert await _verdicts(bouncer.through(empty_db_dsn)) == [f"refused: {closed}"] * RUNS


@pytest.mark.parametrize(("pool_mode", "expected"), [("session", "ok"), ("transaction", "refused")])
async def test_the_verdict_holds_with_several_idle_server_sessions_in_the_pool(
    pgbouncers: PgBouncerFactory, empty_db_dsn: str, pool_mode: PoolMode, expected: str
) -> None:
    bouncer = pgbouncers(pool_mode)
    dsn = bouncer.through(empty_db_dsn)
    await _open_idle_server_sessions(dsn, 6)
    assert await _server_sessions(empty_db_dsn) >= 6  # the pool really holds them
    verdicts = await _verdicts(dsn)
    assert [verdict.partition(":")[0] for verdict in verdicts] == [expected] * RUNS, verdicts


@pytest.mark.parametrize("idle_sessions", [0, 2, 6])
async def test_transaction_pooling_in_round_robin_is_refused(
    pgbouncers: PgBouncerFactory, empty_db_dsn: str, idle_sessions: int
) -> None:
    # FIFO reuse: B no longer gets the session A released last when others are idle; A's own
    # backend changes instead (see the steps in jobq.storage.pooler_check).
    bouncer = pgbouncers("transaction", {"server_round_robin": "1"})
    dsn = bouncer.through(empty_db_dsn)
    if idle_sessions:
        await _open_idle_server_sessions(dsn, idle_sessions)
    verdicts = await _verdicts(dsn)
    assert _all_refused(verdicts), verdicts


@pytest.mark.parametrize(("pool_mode", "expected"), [("session", "ok"), ("transaction", "refused")])
async def test_the_verdict_holds_while_other_clients_use_the_pool(
    pgbouncers: PgBouncerFactory, empty_db_dsn: str, pool_mode: PoolMode, expected: str
) -> None:
    bouncer = pgbouncers(pool_mode)
    dsn = bouncer.through(empty_db_dsn)
    async with _other_clients(dsn, 4):
        verdicts = await _verdicts(dsn)
    assert [verdict.partition(":")[0] for verdict in verdicts] == [expected] * RUNS, verdicts


async def test_the_refusal_says_why_and_what_to_do(
    pgbouncers: PgBouncerFactory, empty_db_dsn: str
) -> None:
    bouncer = pgbouncers("transaction")
    with pytest.raises(SessionPoolingRequired) as refused:
        await require_session_pooling(bouncer.through(empty_db_dsn), timeout_s=TIMEOUT_S)
    message = str(refused.value)
    assert "\n" not in message  # one log line
    assert "transaction or statement pooling mode" in message
    for need in ("prepared statements", "SET session settings", "LISTEN", "advisory lock"):
        assert need in message
    assert "set pool_mode = session for jobq's database in pgbouncer.ini" in message
    assert "point db.dsn (or db.host and db.port) at PostgreSQL directly" in message
    assert "two client connections ran on the same server session" in message


async def test_a_session_pool_too_small_for_the_check_is_unavailable_not_a_hang(
    pgbouncers: PgBouncerFactory, empty_db_dsn: str
) -> None:
    # One server session per database and user: the check's second client waits for it.
    bouncer = pgbouncers("session", {"default_pool_size": "1"})
    with pytest.raises(Unavailable, match=r"no answer within 1s .* pool for this database"):
        async with asyncio.timeout(10):
            await require_session_pooling(bouncer.through(empty_db_dsn), timeout_s=1)
