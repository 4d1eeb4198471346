"""Refuse, at start-up, a connection pooler that shares PostgreSQL sessions between clients.

jobq keeps state in its PostgreSQL sessions: named prepared statements (asyncpg's statement
cache), settings applied once per connection with SET (`storage/pool.py`), the LISTEN of the
notifier (wake-ups across replicas) and the session advisory lock that makes replicas take turns
at migrating. A pooler that hands a server session to a client only for one transaction
(PgBouncer's `pool_mode = transaction`) or one statement (`statement`) breaks every one of these,
some loudly ("prepared statement ... does not exist"), some silently (a LISTEN that hears nothing,
a lock held by a session that another client now uses). Session pooling (`pool_mode = session`)
gives each client one server session for as long as it stays connected, as a direct connection
does, and works.

PgBouncer does not tell its clients which mode it runs in, so the check watches what it does.
Two client connections, A and B, note the server's `pg_backend_pid()` in short transactions.
Behind a transaction pooler, each COMMIT returns the client's server session to the pool:

1. A runs two transactions in a row. With PgBouncer's default LIFO reuse
   (`server_round_robin = 0`) it gets the same session twice; with round robin and other
   sessions idle, its second transaction runs on another backend.
2. B opens a transaction and holds it. LIFO hands B the session A just released: B runs on A's
   backend. (Round robin with one other idle session does too: it rotates back to A's first.)
3. While B holds it, A runs one more transaction. A's last session is taken, so a transaction
   pooler gives A another backend; this also catches the case where other clients' traffic took
   A's released session before B could ask for it (then B got some other session in step 2).

The signals overlap on purpose, so one that traffic or a setting hides is caught by another, and
the sequence runs three times. Behind a session pooler, and on a direct connection, each client
keeps one backend for its lifetime and the two backends differ: nothing else is ever seen, so a
working setup is never refused, however busy. Anything else (a client whose backend changes, two
clients on one backend) means sessions are shared, and the server refuses to start. Statement
pooling shows itself sooner: PgBouncer closes a connection that opens a transaction block, with
a message that names the mode.

The simpler check (A's backend, then B's in a transaction: equal means transaction pooling)
works with PgBouncer's defaults on a quiet pool, but missed about one time in four with four
other clients running transactions, and every time with `server_round_robin = 1` and idle
sessions in the pool.

This was verified against Debian's PgBouncer 1.18 in session, transaction and statement mode,
LIFO and round robin, with a cold pool, with several idle server sessions and with other
clients' transactions running meanwhile (tests/integration/storage/test_pooler_check.py). Other
poolers are judged by the same behaviour: one that kept each client on one backend during the
check but moved it later could pass; their documentation says whether they have a session mode.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg

from jobq.domain.errors import ConfigError, Unavailable
from jobq.storage.queries import query

ROUNDS = 3
"""How often the probe sequence runs (see the module docstring); each round is four short
transactions, a few milliseconds in all."""


class SessionPoolingRequired(ConfigError):
    """db.dsn leads to a pooler that shares PostgreSQL sessions between clients."""

    def __init__(self, observed: str) -> None:
        super().__init__(
            "db.dsn leads to a connection pooler in transaction or statement pooling mode "
            f"({observed}): jobq keeps state in its PostgreSQL sessions (prepared statements, "
            "SET session settings, LISTEN for wake-ups, the advisory lock around migrations), "
            "which such a pooler shares between clients; set pool_mode = session for jobq's "
            "database in pgbouncer.ini, or point db.dsn (or db.host and db.port) at PostgreSQL "
            "directly"
        )
        self.observed = observed


@dataclass
class _Backends:
    """The backend pids that served each client's transactions, in order."""

    first: list[int] = field(default_factory=list)
    second: list[int] = field(default_factory=list)

    def sharing(self) -> str | None:
        """What shows that server sessions are not bound to clients, or None when nothing does."""
        shared = set(self.first) & set(self.second)
        if shared:
            return f"two client connections ran on the same server session, pid {min(shared)}"
        for pids in (self.first, self.second):
            if len(set(pids)) > 1:
                seen = ", ".join(str(pid) for pid in sorted(set(pids)))
                return f"one client connection's transactions ran on server sessions {seen}"
        return None


async def require_session_pooling(dsn: str, *, timeout_s: float) -> None:
    """Raise SessionPoolingRequired when `dsn` leads to a transaction or statement pooler.

    A direct PostgreSQL or a session pooler passes. `timeout_s` bounds each connect and, once
    more, the probe's transactions: a session pooler whose pool is full makes the second client
    wait for a server session, and start-up should say so rather than hang.
    """
    try:
        backends = await _probe(dsn, timeout_s)
    except asyncpg.ConnectionDoesNotExistError as exc:
        # PgBouncer in statement mode closes a connection that opens a transaction block,
        # saying "transaction blocks not allowed in statement pooling mode".
        if "pooling mode" in str(exc):
            reason = str(exc).rpartition(": ")[2]
            raise SessionPoolingRequired(f"the pooler closed the connection: {reason}") from None
        raise Unavailable(f"cannot reach PostgreSQL: {exc}") from None
    except TimeoutError:
        raise Unavailable(
            f"cannot reach PostgreSQL: no answer within {timeout_s:g}s while checking for a "
            "transaction-pooling proxy (a PgBouncer whose pool for this database is full makes "
            "clients wait)"
        ) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Unavailable(f"cannot reach PostgreSQL: {exc}") from None
    observed = backends.sharing()
    if observed is not None:
        raise SessionPoolingRequired(observed)


async def _probe(dsn: str, timeout_s: float) -> _Backends:
    # No statement cache: asyncpg then prepares unnamed statements, so the probe leaves no named
    # prepared statement behind on a server session that a transaction pooler hands to others.
    first = await asyncpg.connect(dsn, timeout=timeout_s, statement_cache_size=0)
    second: asyncpg.Connection | None = None
    clean = False
    try:
        second = await asyncpg.connect(dsn, timeout=timeout_s, statement_cache_size=0)
        backends = _Backends()
        async with asyncio.timeout(timeout_s):
            for _ in range(ROUNDS):
                backends.first.append(await _backend_in_transaction(first))
                backends.first.append(await _backend_in_transaction(first))
                async with second.transaction():  # held while `first` runs once more
                    backends.second.append(await _backend_pid(second))
                    backends.first.append(await _backend_in_transaction(first))
        clean = True
        return backends
    finally:
        for connection in (first, second):
            if connection is None:
                continue
            if clean:
                await connection.close(timeout=timeout_s)
            else:  # a connection in an unknown state (timed out, closed by the pooler)
                connection.terminate()


async def _backend_in_transaction(connection: asyncpg.Connection) -> int:
    # In a transaction block, so a transaction pooler releases the server session at the
    # COMMIT, and keeps it for the query's Parse and Execute messages in between.
    async with connection.transaction():
        return await _backend_pid(connection)


async def _backend_pid(connection: asyncpg.Connection) -> int:
    pid: int = await connection.fetchval(query("backend_pid"))
    return pid
