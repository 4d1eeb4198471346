"""Opaque keyset page tokens for ListJobs and ListAuditEvents: where the previous page ended."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from uuid import UUID

from jobq.domain.errors import InvalidArgument


def encode_page_token(created_at: datetime, job_id: UUID) -> str:
    """A URL-safe token naming the last row of a page."""
    raw = json.dumps({"c": created_at.isoformat(), "j": str(job_id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, UUID]:
    """The (created_at, job_id) a token names; InvalidArgument for anything we did not issue."""
    if len(token) > 256:
        raise InvalidArgument("invalid page token")
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        created_at = datetime.fromisoformat(data["c"])
        job_id = UUID(data["j"])
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument("invalid page token") from None
    if created_at.tzinfo is None:
        raise InvalidArgument("invalid page token")
    return created_at, job_id


_TOKEN_KIND = "audit"  # noqa: S105 (tells audit page tokens from others, not a secret)
_MAX_TOKEN_CHARS = 256
BAD_PAGE = "page_token is invalid: pass the next_page_token of the previous page as it was"


def encode_audit_page_token(occurred_at: datetime, event_id: int) -> str:
    """A URL-safe token naming the last record of a page (opaque to callers)."""
    raw = json.dumps(
        {"k": _TOKEN_KIND, "t": occurred_at.isoformat(), "i": event_id}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_audit_page_token(token: str) -> tuple[datetime, int]:
    """The (occurred_at, id) a token names; InvalidArgument naming the field for anything we
    did not issue (a ListJobs token included)."""
    if len(token) > _MAX_TOKEN_CHARS:
        raise InvalidArgument(BAD_PAGE)
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data["k"] != _TOKEN_KIND:
            raise ValueError("not an audit page token")
        occurred_at = datetime.fromisoformat(data["t"])
        event_id = data["i"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(BAD_PAGE) from None
    if occurred_at.tzinfo is None or type(event_id) is not int or event_id < 1:
        raise InvalidArgument(BAD_PAGE)
    return occurred_at, event_id
