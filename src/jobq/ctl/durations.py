"""Durations and instants as operators type and read them: `30s`, `1h30m`, `2024-05-01T12:00Z`,
`3s ago`.

Parsing is strict so a typo is an error rather than a surprise: a duration is one or more
`<number><unit>` parts (units `ms`, `s`, `m`, `h`, `d`) or a bare number of seconds. An instant is
ISO 8601; without a timezone it is taken as UTC, never as the local time, so the same command
means the same thing on every machine.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

DURATION_HELP = "e.g. 30s, 5m, 1h, 1h30m or 500ms; a bare number is seconds"


class DurationError(ValueError):
    """A duration or instant that cannot be parsed; the message says what was expected."""


def parse_duration(text: str) -> timedelta:
    """`30s`, `5m`, `1h30m`, `500ms`, `1.5h`, `2d` or a bare number of seconds, as a timedelta."""
    value = text.strip().lower()
    if _NUMBER.fullmatch(value):
        return timedelta(seconds=float(value))
    if not _WHOLE.fullmatch(value):
        raise DurationError(f"{text!r} is not a duration ({DURATION_HELP})")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in _PART.findall(value))
    return timedelta(seconds=seconds)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date-time (`2024-05-01T12:00:00Z`, `...+02:00`); without a zone, UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise DurationError(
            f"{text!r} is not an ISO 8601 date-time (e.g. 2024-05-01T12:00:00Z)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a `Z`: `2024-05-01T12:00:00.000000Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def humanize_seconds(seconds: float) -> str:
    """A compact duration for tables: `0s`, `45s`, `5m`, `1h30m`, `3d4h`, `250ms`."""
    if seconds < 0:
        seconds = -seconds
    if 0 < seconds < 1:
        return f"{round(seconds * 1000)}ms"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs and minutes < 10 else f"{minutes}m"
    return f"{secs}s"


def age(then: datetime, now: datetime) -> str:
    """How long ago `then` was (`3s ago`), or how far ahead it is (`in 5m`)."""
    delta = (now - then).total_seconds()
    if delta >= 0:
        return f"{humanize_seconds(delta if delta >= 1 else 0)} ago"
    return f"in {humanize_seconds(-delta)}"
