"""Input rules shared by the API and the CLI: names, ids, priorities and sizes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from uuid import RFC_4122, UUID

from jobq.domain.errors import InvalidArgument

QUEUE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MIN_PRIORITY = 0
MAX_PRIORITY = 9
MAX_DELAY = timedelta(days=365 * 10)
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_DEPENDENCIES = 100


def parse_uuid(value: str, what: str = "job id") -> UUID:
    """A canonical UUID, or InvalidArgument naming what was malformed."""
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidArgument(f"malformed {what}: expected a UUID")
    try:
        return UUID(value)
    except ValueError:
        shown = value if len(value) <= 40 else value[:40] + "…"
        raise InvalidArgument(f"malformed {what} {shown!r}: expected a UUID") from None


def check_queue_name(name: str) -> str:
    """The name itself when it matches [A-Za-z0-9_.-]{1,128}, else InvalidArgument."""
    if not QUEUE_NAME_PATTERN.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise InvalidArgument(
            f"invalid queue name {shown!r}: use 1-128 letters, digits, '_', '.' or '-'"
        )
    return name


def check_priority(priority: int) -> int:
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidArgument(
            f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}, got {priority}"
        )
    return priority


def check_payload_size(payload: bytes, limit: int) -> bytes:
    if len(payload) > limit:
        raise InvalidArgument(f"payload is {len(payload)} bytes; the limit is {limit} bytes")
    return payload


def check_max_retries(value: int) -> int:
    if not 0 <= value <= 1000:
        raise InvalidArgument(f"max_retries must be between 0 and 1000, got {value}")
    return value


def check_max_interruptions(value: int) -> int:
    if not 0 <= value <= 1000:
        raise InvalidArgument(f"max_interruptions must be between 0 and 1000, got {value}")
    return value


def check_delay(delay: timedelta) -> timedelta:
    """A submit's delay: not negative, at most ten years."""
    if delay < timedelta(0):
        raise InvalidArgument("delay must not be negative")
    if delay > MAX_DELAY:
        raise InvalidArgument("delay must be at most ten years")
    return delay


def check_client_job_id(raw: str) -> UUID:
    """A job id a client chose: a UUIDv7 in its text form, else InvalidArgument. Version 7
    (time-ordered) keeps the primary key's inserts at its right edge, as the server's own ids
    do, and tells an id made for this purpose from an id copied from elsewhere."""
    job_id = parse_uuid(raw, "job_id")
    if job_id.version != 7 or job_id.variant != RFC_4122:
        raise InvalidArgument(f"job_id must be a UUIDv7 (RFC 9562), got version {job_id.version}")
    return job_id


def check_depends_on(raw: Sequence[str], job_id: UUID | None = None) -> tuple[UUID, ...]:
    """The prerequisites of a job (issue 18): at most MAX_DEPENDENCIES well-formed job ids, no
    repeats, not the job's own id `job_id`; else InvalidArgument naming the offender."""
    if len(raw) > MAX_DEPENDENCIES:
        raise InvalidArgument(f"depends_on names at most {MAX_DEPENDENCIES} jobs, got {len(raw)}")
    ids: list[UUID] = []
    seen: set[UUID] = set()
    for value in raw:
        prerequisite = parse_uuid(value, "depends_on job id")
        if prerequisite in seen:
            raise InvalidArgument(f"depends_on names job {prerequisite} twice")
        if prerequisite == job_id:
            raise InvalidArgument(f"depends_on names the job itself ({prerequisite})")
        seen.add(prerequisite)
        ids.append(prerequisite)
    return tuple(ids)


def check_idempotency_key(key: str) -> str | None:
    """None for an empty key (none given); else the key, 1..255 printable ASCII characters
    (space included). A key is held for as long as its job exists, whatever its status
    (db/migrations/V13)."""
    return _printable_key(key, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)


MAX_CONCURRENCY_KEY_LENGTH = 255


def check_concurrency_key(key: str) -> str | None:
    """None for an empty key (none given); else the key, 1..255 printable ASCII characters
    (space included), the unit the queue's per-key limits count (jobq.domain.flow_limits)."""
    return _printable_key(key, "concurrency_key", MAX_CONCURRENCY_KEY_LENGTH)


def _printable_key(key: str, what: str, longest: int) -> str | None:
    if not key:
        return None
    if len(key) > longest:
        raise InvalidArgument(f"{what} is at most {longest} characters, got {len(key)}")
    if key.isascii() and key.isprintable():  # the rule, in C: 0.1 µs instead of 1.6 per key
        return key
    for index, char in enumerate(key):
        if not " " <= char <= "~":
            raise InvalidArgument(f"{what} must be printable ASCII: character {index} is {char!r}")
    return key
