"""Opaque keyset page tokens for ListJobs: where the previous page ended."""

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
