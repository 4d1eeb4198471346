"""Errors become status codes in one place: domain errors by type, outages as UNAVAILABLE,
anything else INTERNAL with a generic message."""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from jobq.domain.errors import (
    InvalidArgument,
    JobNotFound,
    PermissionDenied,
    QueueNotEmpty,
    Unauthenticated,
)
from jobq.rpc.status_codes import DATABASE_UNAVAILABLE, INTERNAL, is_database_outage, status_for


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgument("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (JobNotFound("x"), grpc.StatusCode.NOT_FOUND),
        (QueueNotEmpty("q", 1, 0), grpc.StatusCode.FAILED_PRECONDITION),
        (Unauthenticated("who?"), grpc.StatusCode.UNAUTHENTICATED),
        (PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED),
    ],
)
def test_domain_errors_keep_their_message(error: Exception, code: grpc.StatusCode) -> None:
    assert status_for(error) == (code, str(error))


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError("reset"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("closed"),
        asyncpg.exceptions.AdminShutdownError("terminating"),
        asyncpg.exceptions.CannotConnectNowError("starting up"),
        # A pooled connection PostgreSQL was terminating during a fast shutdown.
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        ),
    ],
)
def test_outages_are_unavailable(error: Exception) -> None:
    assert is_database_outage(error)
    assert status_for(error) == (grpc.StatusCode.UNAVAILABLE, DATABASE_UNAVAILABLE)


def test_anything_else_is_internal_without_details() -> None:
    assert status_for(ValueError("secret detail")) == (grpc.StatusCode.INTERNAL, INTERNAL)
    assert status_for(asyncpg.exceptions.UniqueViolationError("dup"))[0] is (
        grpc.StatusCode.INTERNAL
    )
