"""A submit written with an application's own connection, inside its open transaction.

The application's write and the job commit together or not at all (the transactional outbox
of River's `InsertTx` and Oban's `Oban.insert` in an `Ecto.Multi`). The statement is the
server's own, `jobs_insert` of sql/jobs.sql, with the same arguments and the same reading of
its rows (`job_insert.InsertBatch`), so a job enqueued here is the job a SubmitJob would have
written: PENDING, with its SUBMITTED event, and a NOTIFY on its schema's channel that
PostgreSQL delivers at commit (and drops at rollback) to wake the dispatchers.

The application's session is not jobq's: its `search_path` may not reach jobq's schema (or may
reach an application table called `jobs` first) and JIT may be on. So the insert runs between
two statements: the first saves the session's values and sets those of a jobq session
(`search_path` to the schema alone, and pool.SESSION_SETTINGS) with `set_config(..., true)`,
which is SET LOCAL; the second puts the saved values back, as SET LOCAL again, so the rest of
the caller's transaction resolves names as before. Were the insert to fail, the transaction is
aborted anyway and its end undoes every SET LOCAL. Three round trips in all.

This module is the asyncpg side; caller_transaction_psycopg.py runs the same statements with a
psycopg 3 connection. The caller checks that a transaction is open: these only write.
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from jobq.domain.errors import NotFound, QueueNotFound
from jobq.domain.records import NewJob, Submitted
from jobq.storage.pool import SESSION_SETTINGS, quote_identifier
from jobq.storage.postgres.claims import Conn
from jobq.storage.postgres.job_insert import InsertBatch
from jobq.storage.queries import query

# Not named queries of sql/*.sql: like pool.py's SET statements, they are about the session,
# not jobq's tables. The first reads every setting before it changes any: the sub-select that
# sets them refers to the saved values, so it runs on the one row they make.
SAVE_AND_SET = """
SELECT p.saved,
       (SELECT array_agg(set_config(s.name, s.value, true))
        FROM unnest($1::text[], $2::text[]) AS s(name, value)
        WHERE p.saved IS NOT NULL) AS applied
FROM (SELECT array_agg(current_setting(t.name) ORDER BY t.ord) AS saved
      FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord)) AS p
"""
RESTORE = """
SELECT array_agg(set_config(s.name, s.value, true))
FROM unnest($1::text[], $2::text[]) AS s(name, value)
"""


def session_values(schema: str) -> Mapping[str, str]:
    """What a jobq session sets (pool.session_statement), as set_config() takes them."""
    return {"search_path": quote_identifier(schema), **SESSION_SETTINGS}


def missing_schema(schema: str) -> NotFound:
    """The error when jobq's tables are not in `schema`."""
    return NotFound(
        f"no jobq tables in schema {schema!r}: pass the schema jq-server uses (db.schema)"
    )


async def job_insert_in_transaction(conn: Conn, job: NewJob, schema: str) -> Submitted:
    """Insert `job` (PENDING, with its SUBMITTED event and a NOTIFY at commit) in the
    transaction open on `conn`; the job that holds its idempotency key instead, if one does
    (`existing`). QueueNotFound when its queue does not exist, NotFound when `schema` has no
    jobq tables: both leave the caller's transaction aborted."""
    values = session_values(schema)
    names = list(values)
    saved = await conn.fetchval(SAVE_AND_SET, names, list(values.values()))
    batch = InsertBatch([job])
    try:
        rows = await conn.fetch(query("jobs_insert"), *batch.arguments(True, outside_server=True))
    except (asyncpg.NotNullViolationError, asyncpg.ForeignKeyViolationError) as exc:
        # Only the queue can be missing: the one job's max_retries falls back to NULL, or its
        # queue_name breaks the foreign key (see jobs_insert).
        raise QueueNotFound(job.queue_name) from exc
    except asyncpg.UndefinedTableError as exc:
        raise missing_schema(schema) from exc
    await conn.fetchval(RESTORE, names, saved)
    [submitted] = batch.results(rows)
    return submitted
