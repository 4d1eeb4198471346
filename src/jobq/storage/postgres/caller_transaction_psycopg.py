"""caller_transaction.py's insert with a psycopg 3 connection, blocking or asyncio (the
`jobq[psycopg]` extra).

The statements are the very ones the asyncpg side runs, `$1`-style placeholders included:
psycopg's RawCursor (psycopg 3.2+) passes them to PostgreSQL as they are, so no statement is
rewritten into psycopg's `%s` style. Lists arrive as arrays, and the statements' casts
(`$4::smallint[]` ...) give them their types, as with asyncpg.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from jobq.domain.errors import QueueNotFound
from jobq.domain.records import NewJob, Submitted
from jobq.storage.postgres.caller_transaction import (
    RESTORE,
    SAVE_AND_SET,
    missing_schema,
    session_values,
)
from jobq.storage.postgres.job_insert import InsertBatch
from jobq.storage.queries import query


def job_insert_in_transaction_sync(
    conn: psycopg.Connection[Any], job: NewJob, schema: str
) -> Submitted:
    """As caller_transaction.job_insert_in_transaction, with a psycopg connection."""
    values = session_values(schema)
    names = list(values)
    batch = InsertBatch([job])
    with psycopg.RawCursor(conn, row_factory=tuple_row) as cursor:
        cursor.execute(SAVE_AND_SET, (names, list(values.values())))
        saved_row = cursor.fetchone()
        assert saved_row is not None
        with _insert_errors(job, schema):
            cursor.execute(query("jobs_insert"), batch.arguments(True, outside_server=True))
        rows = cursor.fetchall()
        cursor.execute(RESTORE, (names, saved_row[0]))
    [submitted] = batch.results(rows)
    return submitted


async def job_insert_in_transaction_psycopg(
    conn: psycopg.AsyncConnection[Any], job: NewJob, schema: str
) -> Submitted:
    """As job_insert_in_transaction_sync, with a psycopg AsyncConnection."""
    values = session_values(schema)
    names = list(values)
    batch = InsertBatch([job])
    async with psycopg.AsyncRawCursor(conn, row_factory=tuple_row) as cursor:
        await cursor.execute(SAVE_AND_SET, (names, list(values.values())))
        saved_row = await cursor.fetchone()
        assert saved_row is not None
        with _insert_errors(job, schema):
            await cursor.execute(query("jobs_insert"), batch.arguments(True, outside_server=True))
        rows = await cursor.fetchall()
        await cursor.execute(RESTORE, (names, saved_row[0]))
    [submitted] = batch.results(rows)
    return submitted


@contextmanager
def _insert_errors(job: NewJob, schema: str) -> Iterator[None]:
    """The insert's failures in jobq's words (see caller_transaction.py)."""
    try:
        yield
    except (psycopg.errors.NotNullViolation, psycopg.errors.ForeignKeyViolation) as exc:
        raise QueueNotFound(job.queue_name) from exc
    except psycopg.errors.UndefinedTable as exc:
        raise missing_schema(schema) from exc
