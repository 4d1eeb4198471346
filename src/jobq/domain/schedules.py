"""Schedules: when a cron expression or an interval ticks, and what a late scheduler does.

Pure arithmetic over instants (UTC datetimes), so the tick rules are tested with any clock:

- A cron schedule is a standard five-field expression (minute hour day-of-month month
  day-of-week) read in an IANA time zone: `0 9 * * *` in Europe/Paris is 09:00 Paris time,
  07:00 UTC in summer and 08:00 UTC in winter. Across daylight-saving changes it does what
  croniter does: a time the spring change skips fires at the first instant after the gap
  (02:30 becomes 03:00), and a time the autumn change repeats fires twice (both are distinct
  instants, hence distinct ticks).
- An interval schedule ticks every N seconds, from its creation: ticks are creation + k * N.

Missed ticks (no scheduler ran when they fell due: every jq-server down, or a paused loop):

- `skip` (the default, as Oban's Cron plugin and sidekiq-cron behave): a tick is enqueued when
  the scheduler reaches it before the schedule's next tick falls due and within
  `SKIP_GRACE` of it; ticks missed otherwise are dropped, and the schedule goes on with its
  next future tick.
- `once` (Oban Pro's `guaranteed`): however many ticks were missed, one job is enqueued, for
  the latest of them, then the schedule goes on with its next future tick.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from jobq.domain.errors import InvalidArgument
from jobq.domain.records import record
from jobq.domain.validation import QUEUE_NAME_PATTERN

SKIP_GRACE = timedelta(seconds=60)
"""How late a tick may be enqueued under `skip`: lateness of a slow loop or a replica's restart,
not downtime."""

MAX_INTERVAL_SECONDS = 10 * 365 * 24 * 3600
MAX_CRON_LENGTH = 200
DEFAULT_TIME_ZONE = "UTC"


class MissedPolicy(StrEnum):
    """What a scheduler that comes back after missed ticks enqueues (see the module docstring)."""

    SKIP = "skip"
    ONCE = "once"


DEFAULT_MISSED = MissedPolicy.SKIP


@record
class Timing:
    """When a schedule ticks: a cron expression in a time zone, or an interval."""

    cron: str | None
    time_zone: str
    interval_seconds: int | None

    def first_after(self, instant: datetime, anchor: datetime | None = None) -> datetime:
        """The first tick strictly after `instant`. An interval's ticks are `anchor` plus
        whole intervals (without an anchor: `instant` is one)."""
        if self.interval_seconds is not None:
            step = timedelta(seconds=self.interval_seconds)
            if anchor is None or anchor > instant:
                return (anchor if anchor is not None else instant + step).astimezone(UTC)
            return (anchor + ((instant - anchor) // step + 1) * step).astimezone(UTC)
        assert self.cron is not None
        local = instant.astimezone(_zone(self.time_zone))
        found: datetime = croniter(self.cron, local).get_next(datetime)
        return found.astimezone(UTC)

    def latest_due(self, due: datetime, now: datetime) -> datetime:
        """The latest tick at or before `now`, given that `due` (at or before `now`) is one."""
        if self.interval_seconds is not None:
            step = timedelta(seconds=self.interval_seconds)
            return due + ((now - due) // step) * step
        assert self.cron is not None
        # The tick before the first one after `now`: one step each way, however long the
        # downtime (walking forward from `due` would cost a step per missed tick).
        following = self.first_after(now).astimezone(_zone(self.time_zone))
        found: datetime = croniter(self.cron, following).get_prev(datetime)
        return max(due, found.astimezone(UTC))

    def upcoming(self, first: datetime, count: int) -> list[datetime]:
        """`count` ticks from `first` (a tick) on: a schedule's next run times."""
        ticks = [first]
        while len(ticks) < count:
            ticks.append(self.first_after(ticks[-1], ticks[-1]))
        return ticks[:count]


@record
class TickPlan:
    """What a scheduler does with a due schedule: enqueue `enqueue` (None: nothing, every due
    tick was missed and is skipped), then wait for `next_run_at`."""

    enqueue: datetime | None
    next_run_at: datetime
    missed: bool
    """Ticks fell due that get no job of their own (dropped by `skip`, or folded into the one
    job of `once`)."""


def plan_tick(timing: Timing, due: datetime, now: datetime, missed: MissedPolicy) -> TickPlan:
    """The plan for a schedule whose next tick `due` is at or before `now`."""
    latest = timing.latest_due(due, now)
    next_run_at = timing.first_after(latest, latest)
    late = latest > due
    if missed is MissedPolicy.ONCE:
        return TickPlan(latest, next_run_at, late)
    on_time = not late and now - due <= SKIP_GRACE
    return TickPlan(due if on_time else None, next_run_at, not on_time)


def parse_timing(cron: str, time_zone: str, interval_seconds: int) -> Timing:
    """A validated Timing from an API request's fields (empty / 0: not given), or
    InvalidArgument saying what is wrong."""
    if bool(cron) == bool(interval_seconds):
        raise InvalidArgument("give either cron or interval_seconds, not both and not neither")
    if interval_seconds:
        if time_zone:
            raise InvalidArgument("time_zone applies to cron schedules only")
        if not 1 <= interval_seconds <= MAX_INTERVAL_SECONDS:
            raise InvalidArgument(
                f"interval_seconds must be between 1 and {MAX_INTERVAL_SECONDS}, "
                f"got {interval_seconds}"
            )
        return Timing(None, DEFAULT_TIME_ZONE, interval_seconds)
    zone = time_zone or DEFAULT_TIME_ZONE
    check_time_zone(zone)
    return Timing(check_cron(cron), zone, None)


def check_schedule_name(name: str) -> str:
    """The name itself when it follows the rules of queue names ([A-Za-z0-9_.-]{1,128})."""
    if not QUEUE_NAME_PATTERN.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise InvalidArgument(
            f"invalid schedule name {shown!r}: use 1-128 letters, digits, '_', '.' or '-'"
        )
    return name


def check_cron(expression: str) -> str:
    """A standard five-field cron expression, normalised to single spaces, or InvalidArgument."""
    shown = expression if len(expression) <= 60 else expression[:60] + "…"
    if len(expression) > MAX_CRON_LENGTH:
        raise InvalidArgument(f"cron expression is longer than {MAX_CRON_LENGTH} characters")
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidArgument(
            f"invalid cron expression {shown!r}: give five fields "
            "(minute hour day-of-month month day-of-week), e.g. '*/5 * * * *'"
        )
    normal = " ".join(fields)
    try:
        valid = croniter.is_valid(normal)
    except Exception:  # croniter raises more than it documents on some inputs
        valid = False
    if not valid:
        raise InvalidArgument(f"invalid cron expression {shown!r}")
    return normal


def check_time_zone(name: str) -> str:
    """An IANA time zone name (`Europe/Paris`, `UTC`), or InvalidArgument."""
    shown = name if len(name) <= 64 else name[:64] + "…"
    if len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise InvalidArgument(
            f"unknown time zone {shown!r}: give an IANA name such as Europe/Paris"
        )
    try:
        _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(
            f"unknown time zone {shown!r}: give an IANA name such as Europe/Paris"
        ) from None
    return name


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@record
class Schedule:
    """A schedule as stored: its timing, job template, state and next tick."""

    name: str
    timing: Timing
    queue_name: str
    payload: bytes
    priority: int
    max_retries: int | None
    missed: MissedPolicy
    paused: bool
    next_run_at: datetime
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime


@record
class NewSchedule:
    """A schedule as created: validated, before the store stamps it."""

    name: str
    timing: Timing
    queue_name: str
    payload: bytes
    priority: int = 0
    max_retries: int | None = None
    missed: MissedPolicy = DEFAULT_MISSED
