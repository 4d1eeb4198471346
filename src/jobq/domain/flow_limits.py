"""Flow control of a queue (issue 18): pause, concurrency limits and rate limits, and which of
a queue's waiting jobs a claim may take under them.

A queue may cap how many of its jobs are held (ASSIGNED or RUNNING) at once, `max_running`, and
how many of the jobs sharing one `concurrency_key` (one customer's, say) are, `key_max_running`;
and how many start (are claimed) in any period of `rate_period_s`, `rate_limit`, and per key,
`key_rate_limit` per `key_rate_period_s`. Jobs without a key count towards the queue-wide limits
only. Jobs over a limit wait PENDING and start as budget frees: nothing fails.

The rate limits are sliding windows over the claims' own times (queue_starts), not token
buckets: no period-long window ever holds more than the limit's starts, where a bucket lets a
full burst follow a full refill. Everything here is pure: the limited claim (storage) reads the
state under the queue's row lock and asks `choose` which candidates to take.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import UUID

MAX_LIMIT = 1_000_000
MAX_PERIOD_S = 86_400.0
"""A rate's period: 1 ms to one day."""


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` starts in any window of `period_s` seconds."""

    limit: int
    period_s: float

    @property
    def period_ms(self) -> int:
        return round(self.period_s * 1000)

    def __str__(self) -> str:
        return f"{self.limit}/{_period_text(self.period_s)}"


@dataclass(frozen=True, slots=True)
class FlowLimits:
    """A queue's flow settings; all unset (the default) is an ordinary queue."""

    paused: bool = False
    max_running: int | None = None
    key_max_running: int | None = None
    rate: Rate | None = None
    key_rate: Rate | None = None

    @property
    def limited(self) -> bool:
        """True when the queue's jobs must go through the limited claim (queues.flow_limited)."""
        return (
            self.paused
            or self.max_running is not None
            or self.key_max_running is not None
            or self.rate is not None
            or self.key_rate is not None
        )

    @property
    def per_key(self) -> bool:
        return self.key_max_running is not None or self.key_rate is not None


@dataclass(frozen=True, slots=True)
class FlowChange:
    """What PauseQueue, ResumeQueue or SetQueueLimits changes: None leaves a setting as it is;
    0 removes a limit, and a rate of limit 0 removes the rate."""

    paused: bool | None = None
    max_running: int | None = None
    key_max_running: int | None = None
    rate: Rate | None = None
    key_rate: Rate | None = None

    @property
    def empty(self) -> bool:
        return self == FlowChange()

    def applied_to(self, limits: FlowLimits) -> FlowLimits:
        """`limits` with this change made."""
        out = limits
        if self.paused is not None:
            out = replace(out, paused=self.paused)
        if self.max_running is not None:
            out = replace(out, max_running=self.max_running or None)
        if self.key_max_running is not None:
            out = replace(out, key_max_running=self.key_max_running or None)
        if self.rate is not None:
            out = replace(out, rate=self.rate if self.rate.limit else None)
        if self.key_rate is not None:
            out = replace(out, key_rate=self.key_rate if self.key_rate.limit else None)
        return out


@dataclass(frozen=True, slots=True)
class FlowState:
    """What a limited claim counts under the queue's lock, at `at` (the database's clock).

    `held` is the queue's held jobs per key (None: jobs without a key); `starts` the queue's
    claims in the last rate period with the oldest of them, `key_starts` the same per key in the
    last key period."""

    at: datetime
    held: Mapping[str | None, int] = field(default_factory=dict)
    starts: int = 0
    oldest_start: datetime | None = None
    key_starts: Mapping[str, tuple[int, datetime]] = field(default_factory=dict)
    holds_suspect: bool = False

    @property
    def held_total(self) -> int:
        return sum(self.held.values())


@dataclass(frozen=True, slots=True)
class Candidate:
    """A waiting job as the limited claim reads it, in claim order."""

    job_id: UUID
    key: str | None
    suspect: bool = False


@dataclass(frozen=True, slots=True)
class Budget:
    """How many jobs a claim may take now, and which keys may take none."""

    total: int
    full_keys: frozenset[str]
    retry_at: datetime | None
    """When a rate window frees a start that is needed now (None: no rate holds jobs back)."""


def budget(limits: FlowLimits, state: FlowState, want: int) -> Budget:
    """The queue-wide budget of a claim that wants `want` jobs, and the keys already at their
    limits (their jobs are not even read)."""
    if limits.paused:
        return Budget(0, frozenset(), None)
    total = want
    retry_at: datetime | None = None
    if limits.max_running is not None:
        total = min(total, limits.max_running - state.held_total)
    if limits.rate is not None:
        left = limits.rate.limit - state.starts
        if left < want:  # the oldest start in the window (or the ones made now) frees next
            retry_at = (state.oldest_start or state.at) + timedelta(seconds=limits.rate.period_s)
        total = min(total, left)
    full: set[str] = set()
    if limits.key_max_running is not None:
        full.update(
            key for key, n in state.held.items() if key is not None and n >= limits.key_max_running
        )
    if limits.key_rate is not None:
        for key, (n, oldest) in state.key_starts.items():
            if n >= limits.key_rate.limit:
                full.add(key)
                freed = oldest + timedelta(seconds=limits.key_rate.period_s)
                retry_at = freed if retry_at is None else min(retry_at, freed)
    return Budget(max(total, 0), frozenset(full), retry_at)


def key_room(limits: FlowLimits, state: FlowState, key: str) -> int:
    """How many more jobs of `key` may start now."""
    room = MAX_LIMIT
    if limits.key_max_running is not None:
        room = min(room, limits.key_max_running - state.held.get(key, 0))
    if limits.key_rate is not None:
        started = state.key_starts.get(key)
        room = min(room, limits.key_rate.limit - (started[0] if started else 0))
    return max(room, 0)


def choose(
    limits: FlowLimits, state: FlowState, candidates: Iterable[Candidate], total: int
) -> list[UUID]:
    """The candidates (in claim order) a claim takes: at most `total`, none of a key beyond its
    room, and at most one suspect, none while the worker holds one (as jobs_claim)."""
    chosen: list[UUID] = []
    taken: dict[str, int] = {}
    suspect_taken = state.holds_suspect
    for job in candidates:
        if len(chosen) >= total:
            break
        if job.suspect and suspect_taken:
            continue
        if job.key is not None and limits.per_key:
            if taken.get(job.key, 0) >= key_room(limits, state, job.key):
                continue
            taken[job.key] = taken.get(job.key, 0) + 1
        if job.suspect:
            suspect_taken = True
        chosen.append(job.job_id)
    return chosen


def scan_limit(want: int) -> int:
    """How many waiting jobs a limited claim reads to choose `want` from: keys at their limits
    are skipped by the read itself, so more are needed only where one key holds many of the
    first jobs and has room for fewer of them."""
    return min(max(4 * want, 100), 2_000)


def parse_rate(text: str) -> Rate:
    """'10/1s', '100/5m', '3/500ms', '1000/1h', '5/s': a limit and a period (ValueError else).
    '0' removes a rate (a Rate of limit 0)."""
    text = text.strip()
    if text in {"0", "none", "off"}:
        return Rate(0, 1.0)
    limit_text, sep, period_text = text.partition("/")
    if not sep:
        raise ValueError(f"a rate is LIMIT/PERIOD, e.g. 10/1s (got {text!r})")
    try:
        limit = int(limit_text)
    except ValueError:
        raise ValueError(f"a rate's limit is a whole number (got {limit_text!r})") from None
    period = parse_period(period_text)
    rate = Rate(limit, period)
    check_rate(rate, "rate")
    return rate


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_period(text: str) -> float:
    text = text.strip()
    for unit in ("ms", "s", "m", "h", "d"):
        if text.endswith(unit):
            number = text[: -len(unit)] or "1"
            try:
                value = float(number)
            except ValueError:
                break
            return value * _UNITS[unit]
    raise ValueError(f"a period is a number with ms, s, m, h or d, e.g. 1s or 5m (got {text!r})")


def check_rate(rate: Rate, what: str) -> None:
    """ValueError unless `rate` is within range (limit 0 means: remove it)."""
    if rate.limit == 0:
        return
    if not 1 <= rate.limit <= MAX_LIMIT:
        raise ValueError(f"{what} limit must be 1..{MAX_LIMIT}, got {rate.limit}")
    if not 0.001 <= rate.period_s <= MAX_PERIOD_S or rate.period_ms < 1:
        raise ValueError(f"{what} period must be 1 ms to 1 day, got {rate.period_s} s")


def check_limit(value: int | None, what: str) -> None:
    """ValueError unless `value` is None, 0 (remove) or 1..MAX_LIMIT."""
    if value is not None and not 0 <= value <= MAX_LIMIT:
        raise ValueError(f"{what} must be 0 (no limit) to {MAX_LIMIT}, got {value}")


def _period_text(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{round(seconds * 1000)}ms"
