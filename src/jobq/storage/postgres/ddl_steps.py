"""One DDL step of a partition maintainer (job_events' and jobs' days, pg_partman's
registration): a transaction of its own under a short `lock_timeout`.

DETACH takes ACCESS EXCLUSIVE on the partitioned table, ATTACH and a rename take it on a
partition, and PostgreSQL's lock queue is first come, first served: a step waiting behind a
long query would stall every statement queued behind it. So a step waits at most
DDL_LOCK_TIMEOUT; one not granted its lock in time raises LockNotAvailableError, which rolls it
back and which its store reports as "busy" (the next run tries again). A step that finds,
under its locks, that it must not go on (a live job in what it would drop) raises
StepAbandoned: rolled back too, nothing changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from jobq.storage.queries import query

DDL_LOCK_TIMEOUT = "200ms"
"""How long a DDL step waits for a lock before giving up until the next run: the longest stall
a waiting step causes the statements queued behind it (its own work under the lock is a
catalogue change, plus ATTACH's scan of a default partition). A claim, report or event write
waiting 200 ms is noticed but harmless. Was 5 s for job_events: every submit and report writes
events, so a detach waiting 5 s behind a long query stalled the hot path for 5 s."""


class StepAbandoned(Exception):
    """Raised inside a step to roll it back: what it found under its locks forbids going on."""


@asynccontextmanager
async def ddl_step(
    pool: asyncpg.Pool, lock_timeout: str = DDL_LOCK_TIMEOUT
) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
    """A connection in a transaction whose lock waits end after `lock_timeout`; committed when
    the block ends, rolled back when it raises (LockNotAvailableError, StepAbandoned, any)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(query("history_lock_timeout"), lock_timeout)
        yield conn
