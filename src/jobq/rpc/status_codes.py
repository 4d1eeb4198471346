"""One mapping from domain errors (and database outages) to gRPC status codes.

Messages are for humans: the domain error's text, never a stack trace. Anything unexpected is
INTERNAL with a generic message, and the details go to the log.
"""

from __future__ import annotations

import asyncpg
import grpc

from jobq.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    JobqError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

_BY_TYPE: tuple[tuple[type[JobqError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
)

DATABASE_UNAVAILABLE = "the database is unavailable; try again shortly"
INTERNAL = "internal error; see the server log"


def is_database_outage(exc: BaseException) -> bool:
    """True for errors that mean PostgreSQL cannot be reached (or went away mid-call).

    asyncpg's InternalClientError counts: during a fast shutdown PostgreSQL terminates idle
    connections, and a call handed such a connection by the pool at that moment fails with
    "cannot switch to state 12; another operation (2) is in progress" (seen in about half of
    the restart tests' runs). It is a connection in an unusable state, not a bug of the
    statement, so the caller hears UNAVAILABLE and may retry."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        return True
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.CannotConnectNowError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError,
    ):
        return True
    return isinstance(exc, asyncpg.PostgresError) and str(
        getattr(exc, "sqlstate", "") or ""
    ).startswith(("08", "57P"))


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and human message for an exception raised while serving an RPC."""
    if isinstance(exc, JobqError):
        for error_type, code in _BY_TYPE:
            if isinstance(exc, error_type):
                return code, str(exc)
        return grpc.StatusCode.INTERNAL, INTERNAL
    if is_database_outage(exc):
        return grpc.StatusCode.UNAVAILABLE, DATABASE_UNAVAILABLE
    return grpc.StatusCode.INTERNAL, INTERNAL
