"""How a session with jq-server ends: in the ordinary course, or by the server's refusal of a
superseded process.

A session (one channel: registration, job stream, heartbeats) ends in the ordinary course when
the connection breaks or the server forgets this worker: `SessionEnded` or a gRPC error, after
which the worker reconnects. Anything else that escapes a session's loops is a bug, restarted
within a budget (`session.py`). One refusal is neither: a newer process registered under this
worker id, and this one must stop at once without registering again (`shutdown.py`). The
session and the heartbeats both need to tell these apart, so the test lives here, once.
"""

from __future__ import annotations

import grpc

from jobq.domain.errors import is_superseded

__all__ = ["CONNECTION_ENDED", "SessionEnded", "describe_error", "is_superseded_error"]


class SessionEnded(Exception):
    """The connection to the server must be rebuilt (stream ended, heartbeats failing)."""


CONNECTION_ENDED = (SessionEnded, grpc.aio.AioRpcError, grpc.aio.UsageError)
"""How a session ends in the ordinary course (anything else is a bug in its loops)."""


def is_superseded_error(exc: BaseException) -> bool:
    """The server's refusal of this process: a newer one registered under its worker id."""
    return (
        isinstance(exc, grpc.aio.AioRpcError)
        and exc.code() is grpc.StatusCode.FAILED_PRECONDITION
        and is_superseded(exc.details() or "")
    )


def describe_error(exc: BaseException) -> str:
    """For logs: a gRPC error's code and details, any other error's message."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
