"""Transactional enqueue: a job written with the application's own PostgreSQL connection, inside
the application's open transaction, so the job exists if and only if the application's own
write commits (no job for an order that rolled back, no order without its job).

    async with conn.transaction():                      # asyncpg, or psycopg's AsyncConnection
        order_id = await conn.fetchval("INSERT INTO orders ... RETURNING id")
        await jobq.enqueue(conn, send_receipt, order_id, queue="mail")

    with conn.transaction():                            # psycopg 3 (pip install 'jobq[psycopg]')
        conn.execute("INSERT INTO orders ...")
        jobq.enqueue_sync(conn, send_receipt, order_id, queue="mail")

The job is checked as a submit to jq-server is, before any SQL: the client's JobSpec and
SubmitOptions, then the server's rules of jobq.domain (queue name, priority, payload size and
parse, max_retries, delay, idempotency key), into the same NewJob. It is written by the
server's own statement (`jobs_insert`, see jobq.storage.postgres.caller_transaction): PENDING,
with its SUBMITTED event, and a NOTIFY that PostgreSQL delivers at commit, so the servers'
dispatchers start it at once and a server announces it; a rollback leaves no trace. `schema`
must be jq-server's `db.schema`. The session's `search_path` and `jit` are set for the insert
(SET LOCAL) and put back after it, so the rest of the transaction resolves names as before.

What differs from a submit through jq-server:

- jq-server learns of the job at commit, not from the call: the job's id is also left in
  `enqueued_jobs` (db/migrations/V14, a transactional outbox), and one server takes it out and
  publishes its SUBMITTED (its `jq_jobs_submitted` count, its log line, whatever subscribes to
  the lifecycle), woken by the commit's notification, or when it starts if none was running;
  a claim that gets there first publishes it before the assignment. Everything after
  (assignment, results, their metrics) is the same.
- `created_at` (and the SUBMITTED event's time) is the start of the caller's transaction
  (PostgreSQL's `now()`), so a long transaction's job queues as if submitted when it began;
  a `delay` counts from the application's clock, as a submit's counts from the server's.
- No idempotency key is made up when none is given (the client's submit makes one so that its
  own retries cannot create a job twice; nothing here retries). With a key that a job already
  holds, nothing is written and the holder's id comes back with `existing` True.
- The payload limit is the server's default (limits.max_payload_bytes, 1 MiB): a server
  configured with a smaller one cannot refuse these jobs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import asyncpg

from jobq.client.batch_plan import Submitted
from jobq.client.errors import CallFailed, ClientError
from jobq.client.job_spec import (
    DEFAULT_QUEUE,
    Delay,
    Handler,
    InvalidJob,
    JobSpec,
    SubmitOptions,
    _seconds,
    handler_job,
    submit_options,
)
from jobq.config.db_settings import check_schema_name
from jobq.config.settings import LimitsSettings
from jobq.domain.errors import InvalidArgument, JobqError, NotFound, Unavailable
from jobq.domain.ids import uuid7
from jobq.domain.payload import PayloadError, parse_payload
from jobq.domain.records import NewJob
from jobq.domain.records import Submitted as Inserted
from jobq.domain.validation import (
    check_delay,
    check_idempotency_key,
    check_max_retries,
    check_payload_size,
    check_priority,
    check_queue_name,
)
from jobq.observability import tracing
from jobq.observability.correlation import current_correlation_id
from jobq.storage.pool import DEFAULT_SCHEMA
from jobq.storage.postgres.caller_transaction import job_insert_in_transaction
from jobq.storage.postgres.claims import Conn

if TYPE_CHECKING:
    import psycopg

__all__ = ["NotInTransaction", "enqueue", "enqueue_sync", "new_job"]

MAX_PAYLOAD_BYTES: Final[int] = LimitsSettings.model_fields["max_payload_bytes"].default
"""The server's default payload limit, which transactional enqueues are held to."""


class NotInTransaction(ClientError):
    """enqueue() was given a connection with no open transaction (or a failed one): the job
    would not commit with the caller's write, which is the point of enqueueing this way."""


async def enqueue(
    conn: Conn | psycopg.AsyncConnection[Any],
    handler: Handler | JobSpec,
    /,
    *args: Any,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    delay: Delay | None = None,
    not_before: datetime | None = None,
    max_retries: int | None = None,
    idempotency_key: str | None = None,
    schema: str = DEFAULT_SCHEMA,
    **kwargs: Any,
) -> Submitted:
    """Enqueue `handler(*args, **kwargs)` (or a JobSpec, given alone) in the transaction open
    on `conn`, an asyncpg connection (a pool's connection too) or a psycopg AsyncConnection
    (the `jobq[psycopg]` extra); the job commits with it.

    Raises InvalidJob for a job the server would refuse and NotInTransaction, both before any
    SQL; CallFailed NOT_FOUND for a queue that does not exist (or a `schema` without jobq's
    tables): the statement failed, so the caller's transaction is aborted and must be rolled
    back."""
    job = new_job(
        _spec(
            handler, args, kwargs, queue, priority, delay, not_before, max_retries, idempotency_key
        ),
        datetime.now(UTC),
    )
    _check_schema(schema)
    insert: Awaitable[Inserted]
    if isinstance(conn, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy):
        if not conn.is_in_transaction():
            raise NotInTransaction(
                "enqueue() needs an open transaction on the connection (async with "
                "conn.transaction(): ...), so that the job commits with your writes"
            )
        insert = job_insert_in_transaction(conn, job, schema)
    elif _is_psycopg_async(conn):
        from jobq.storage.postgres.caller_transaction_psycopg import (
            job_insert_in_transaction_psycopg,
        )

        _check_psycopg_transaction(conn, "enqueue()", "async with conn.transaction():")
        insert = job_insert_in_transaction_psycopg(conn, job, schema)
    else:
        raise TypeError(
            f"enqueue() takes an asyncpg connection or a psycopg AsyncConnection, not "
            f"{type(conn).__name__}; use enqueue_sync() with a psycopg Connection"
        )
    try:
        inserted = await insert
    except JobqError as exc:
        raise _client_error(exc) from exc
    return _submitted(inserted)


def enqueue_sync(
    conn: psycopg.Connection[Any],
    handler: Handler | JobSpec,
    /,
    *args: Any,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    delay: Delay | None = None,
    not_before: datetime | None = None,
    max_retries: int | None = None,
    idempotency_key: str | None = None,
    schema: str = DEFAULT_SCHEMA,
    **kwargs: Any,
) -> Submitted:
    """As `enqueue`, with a psycopg 3 connection (the `jobq[psycopg]` extra).

    The transaction is open inside `with conn.transaction():`, or on a connection that is not
    in autocommit mode, where psycopg opens one at the first statement (this one, maybe) and
    `conn.commit()` ends it. An autocommit connection outside a transaction block, or a failed
    transaction, raises NotInTransaction."""
    job = new_job(
        _spec(
            handler, args, kwargs, queue, priority, delay, not_before, max_retries, idempotency_key
        ),
        datetime.now(UTC),
    )
    _check_schema(schema)
    try:
        import psycopg

        from jobq.storage.postgres.caller_transaction_psycopg import (
            job_insert_in_transaction_sync,
        )
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise ClientError("enqueue_sync() needs psycopg: pip install 'jobq[psycopg]'") from exc
    if not isinstance(conn, psycopg.Connection):
        raise TypeError(
            f"enqueue_sync() takes a psycopg Connection, not {type(conn).__name__}; "
            "use `await enqueue()` with an asyncpg connection or a psycopg AsyncConnection"
        )
    _check_psycopg_transaction(conn, "enqueue_sync()", "with conn.transaction():")
    try:
        inserted = job_insert_in_transaction_sync(conn, job, schema)
    except JobqError as exc:
        raise _client_error(exc) from exc
    return _submitted(inserted)


def _is_psycopg_async(conn: object) -> bool:
    """A psycopg AsyncConnection (without importing psycopg for anyone who has not)."""
    if not type(conn).__module__.startswith("psycopg"):
        return False
    import psycopg

    return isinstance(conn, psycopg.AsyncConnection)


def _check_psycopg_transaction(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], call: str, block: str
) -> None:
    """NotInTransaction unless a transaction is open on the psycopg connection: inside a
    transaction block, or on a connection that is not in autocommit mode, where psycopg opens
    one at the first statement (this one, maybe) and `commit()` ends it."""
    from psycopg import pq

    status = conn.info.transaction_status
    open_now = status is pq.TransactionStatus.INTRANS
    opened_by_psycopg = status is pq.TransactionStatus.IDLE and not conn.autocommit
    if open_now or opened_by_psycopg:
        return
    state = "has failed (roll it back)" if status is pq.TransactionStatus.INERROR else "is not open"
    raise NotInTransaction(
        f"{call} needs an open transaction on the connection, and it {state}: use `{block}` "
        "(or a connection without autocommit), so that the job commits with your writes"
    )


def new_job(spec: JobSpec, now: datetime) -> NewJob:
    """The NewJob jq-server would make of `spec` submitted at `now`, or InvalidJob with the
    server's words: the rules are the server's own, from jobq.domain (see
    server/submission.py's new_job_from_request)."""
    options = spec.options
    if options.depends_on:
        # A dependant's insert locks its prerequisites and decides its status from theirs
        # (storage/sql/dependencies.sql), which only jq-server's submit does.
        raise InvalidJob("depends_on is not supported by enqueue: submit the job through jq-server")
    try:
        check_queue_name(options.queue)
        check_priority(options.priority)
        check_payload_size(spec.payload, MAX_PAYLOAD_BYTES)
        parse_payload(spec.payload)
        max_retries = (
            None if options.max_retries is None else check_max_retries(options.max_retries)
        )
        key = check_idempotency_key(options.idempotency_key or "")
        not_before = _not_before(options, now)
    except PayloadError as exc:
        raise InvalidJob(exc.message) from None
    except InvalidArgument as exc:
        raise InvalidJob(str(exc)) from None
    return NewJob(
        job_id=uuid7(),
        queue_name=options.queue,
        payload=spec.payload,
        priority=options.priority,
        max_retries=max_retries,
        not_before=not_before,
        idempotency_key=key,
        correlation_id=current_correlation_id(),
        concurrency_key=options.concurrency_key,
        # No jq-server sees this submit: the caller's span is the parent of the job's claim.
        trace_context=_caller_trace_context(),
    )


def _caller_trace_context() -> str | None:
    caller = tracing.caller_context()
    return None if caller is None else tracing.encode(*caller)


def _spec(
    handler: Handler | JobSpec,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    queue: str,
    priority: int,
    delay: Delay | None,
    not_before: datetime | None,
    max_retries: int | None,
    idempotency_key: str | None,
) -> JobSpec:
    options = submit_options(queue, priority, delay, not_before, max_retries, idempotency_key)
    if not isinstance(handler, JobSpec):
        return handler_job(handler, args, kwargs, options)
    if args or kwargs or options != SubmitOptions():
        raise TypeError("a JobSpec carries its arguments and options: pass it alone")
    return handler


def _not_before(options: SubmitOptions, now: datetime) -> datetime | None:
    """As the server reads SubmitJobRequest's not_before or delay (a naive time is UTC, as
    JobSpec.to_request sends it)."""
    if options.not_before is not None:
        when = options.not_before
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    if options.delay is not None:
        try:
            delay = timedelta(seconds=_seconds(options.delay))
        except OverflowError:
            raise InvalidArgument("delay must be at most ten years") from None
        return now + check_delay(delay)
    return None


def _check_schema(schema: str) -> None:
    """The schema's rule of jq-server's settings (db.schema)."""
    try:
        check_schema_name(schema)
    except ValueError as exc:
        raise InvalidJob(f"schema {schema!r}: {exc}") from None


def _client_error(exc: JobqError) -> ClientError:
    """The SDK's error for what the insert raised, with the status code a SubmitJob would
    have answered."""
    if isinstance(exc, NotFound):
        return CallFailed(
            "NOT_FOUND", f"{exc}; the transaction is aborted, roll it back", method="enqueue"
        )
    if isinstance(exc, Unavailable):
        return CallFailed("UNAVAILABLE", str(exc), method="enqueue")
    return ClientError(str(exc))


def _submitted(inserted: Inserted) -> Submitted:
    return Submitted(str(inserted.job_id), inserted.existing)
