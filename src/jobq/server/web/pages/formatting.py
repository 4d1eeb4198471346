"""How the dashboard pages write statuses, times, durations and user data for people.

Pages turn proto messages into plain strings here before a template sees them, so templates
hold no arithmetic and every page writes "3 s ago" the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from jobq.rpc._gen import common_pb2

__all__ = [
    "JOB_STATUSES",
    "Shown",
    "ago",
    "duration",
    "iso",
    "job_status",
    "rate",
    "shown_bytes",
    "when",
    "worker_status",
]

JOB_STATUSES = ("PENDING", "WAITING", "ASSIGNED", "RUNNING", "DONE", "FAILED", "DEAD_LETTERED")
"""The job statuses in lifecycle order, as the filters offer them."""

_HEX_SHOWN = 4096
"""Binary payloads longer than this many bytes are shown cut (the hex triples the size)."""


def job_status(value: int) -> str:
    """PENDING, DONE ... for a proto JobStatus; "UNSPECIFIED" for 0 (a submission's from)."""
    return common_pb2.JobStatus.Name(value).removeprefix("JOB_STATUS_")


def worker_status(value: int) -> str:
    return common_pb2.WorkerStatus.Name(value).removeprefix("WORKER_STATUS_")


def when(stamp: Timestamp, present: bool = True) -> datetime | None:
    """The instant of a Timestamp field; None when the field is unset (`present` False, or
    the zero timestamp proto3 gives for an unset message field read without HasField)."""
    if not present or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def iso(moment: datetime | None) -> str:
    """2026-11-30T21:08:59Z (seconds: the page is for people); "" for None."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds: float) -> str:
    """A length of time in at most two units: "850 ms", "42 s", "3 min 5 s", "2 h 10 min",
    "4 d 3 h"."""
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{round(seconds * 1000)} ms" if seconds > 0 else "0 s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    if whole < 86400:
        hours, rest = divmod(whole, 3600)
        minutes = rest // 60
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, rest = divmod(whole, 86400)
    hours = rest // 3600
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """ "3 s ago" ("in 5 s" for a future instant); "" for None."""
    if moment is None:
        return ""
    now = now or datetime.now(UTC)
    delta = (now - moment).total_seconds()
    if delta < 0:
        return f"in {duration(-delta)}"
    if delta < 1:
        return "just now"
    return f"{duration(delta)} ago"


def rate(limit: common_pb2.RateLimit | None) -> str:
    """ "100 per 1 min" for a rate limit; "" for none."""
    if limit is None or limit.limit <= 0:
        return ""
    period = limit.period.seconds + limit.period.nanos / 1e9
    return f"{limit.limit} per {duration(period)}"


@dataclass(frozen=True, slots=True)
class Shown:
    """User data (a payload, a result) as text for a <pre>: `kind` says how it was read."""

    kind: str
    """"json" (pretty-printed), "text" (UTF-8), "hex" (anything else) or "empty"."""
    text: str
    size: int


def shown_bytes(data: bytes) -> Shown:
    """`data` as people read it: pretty JSON when it parses as JSON, else UTF-8 text, else hex.
    It is user data: templates escape it (autoescape), never mark it safe."""
    if not data:
        return Shown("empty", "", 0)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        cut = data[:_HEX_SHOWN]
        pairs = cut.hex(" ")
        more = f"\n… {len(data) - len(cut)} more bytes" if len(data) > len(cut) else ""
        return Shown("hex", pairs + more, len(data))
    try:
        parsed = json.loads(text)
    except ValueError:
        return Shown("text", text, len(data))
    return Shown("json", json.dumps(parsed, indent=2, ensure_ascii=False), len(data))
