"""Correlation ids and per-request log context (SPEC §10).

A correlation id ties together every log line written while serving one RPC or running one
job, across the server, worker and third-party libraries. It lives in a `ContextVar`, not a
thread-local, because one event-loop thread serves many requests concurrently: each asyncio
task runs in its own copy of the context, so a task only ever sees its own id.

The id may arrive from a client in gRPC metadata (`x-correlation-id`). That value is untrusted,
so `correlation_scope` accepts it only when it is a short token of safe characters and otherwise
generates a fresh one; nothing a client sends can inject text or newlines into our logs.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeGuard

import structlog

__all__ = [
    "CORRELATION_ID_METADATA_KEY",
    "RESERVED_LOG_KEYS",
    "add_correlation_id",
    "correlation_scope",
    "current_correlation_id",
    "is_valid_correlation_id",
    "log_context",
    "new_correlation_id",
]

CORRELATION_ID_METADATA_KEY = "x-correlation-id"
"""gRPC metadata key carrying a caller-supplied correlation id (lower-case, as gRPC requires)."""

RESERVED_LOG_KEYS: frozenset[str] = frozenset(
    {"timestamp", "level", "service", "logger", "message", "event", "correlation_id", "exception"}
)
"""Keys the logging pipeline fills itself; `log_context` refuses them so they cannot be spoofed."""

_VALID_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_random = random.Random()  # noqa: S311 (unique ids for logs, not secrets)
_correlation_id: ContextVar[str | None] = ContextVar("jobq_correlation_id", default=None)


def new_correlation_id() -> str:
    """Return a fresh opaque correlation id (32 lower-case hex characters).

    Made for every RPC that brings none, so it must be cheap: a correlation id needs to be
    unique, not unguessable, and the Mersenne Twister costs no system call where uuid4 does.
    """
    return f"{_random.getrandbits(128):032x}"


def current_correlation_id() -> str | None:
    """Return the correlation id of the current context, or None outside any scope."""
    return _correlation_id.get()


def is_valid_correlation_id(value: object) -> TypeGuard[str]:
    """Say whether `value` is acceptable as a correlation id taken from outside.

    Only 1 to 128 characters from `[A-Za-z0-9._:-]` pass: enough for uuids, ULIDs and
    trace-style ids, and safe to copy verbatim into logs and outgoing metadata.
    """
    return isinstance(value, str) and _VALID_CORRELATION_ID.fullmatch(value) is not None


@contextmanager
def correlation_scope(value: str | None = None) -> Iterator[str]:
    """Make a correlation id current for the duration of the `with` block and yield it.

    `value` is typically the `x-correlation-id` metadata of an incoming RPC; when it is None
    or fails `is_valid_correlation_id`, a new id is generated instead. The previous id (if
    any) is restored on exit, so scopes nest and never leak into the caller.
    """
    correlation_id = value if is_valid_correlation_id(value) else new_correlation_id()
    token = _correlation_id.set(correlation_id)
    try:
        yield correlation_id
    finally:
        _correlation_id.reset(token)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind context fields (`job_id`, `worker_id`, `queue`, ...) to every log line in the block.

    Fields are stored in structlog's context variables, so they follow the current asyncio
    task (and are inherited by tasks created inside the block) without touching other tasks.
    On exit the previous values are restored exactly, including fields that were unbound
    before, so nested blocks may rebind a key temporarily.

    Raises:
        ValueError: if a field would overwrite one of `RESERVED_LOG_KEYS`.
    """
    reserved = sorted(RESERVED_LOG_KEYS.intersection(fields))
    if reserved:
        raise ValueError(f"log_context cannot bind reserved log keys: {', '.join(reserved)}")
    tokens = structlog.contextvars.bind_contextvars(**fields)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def add_correlation_id(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: add `correlation_id` when a correlation scope is active.

    The key is left out entirely (rather than set to null) outside any scope, so log queries
    can test for its presence.
    """
    correlation_id = _correlation_id.get()
    if correlation_id is not None:
        event_dict["correlation_id"] = correlation_id
    return event_dict
