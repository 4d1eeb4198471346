"""Table views of the schedule RPCs' replies (`jq-ctl schedule ...`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from jobq.ctl.durations import humanize_seconds, iso_utc
from jobq.ctl.output import NONE, detail_table, enum_field, list_table, preview, when

if TYPE_CHECKING:
    from jobq.rpc._gen import schedules_pb2 as spb

DETAIL_PREVIEW = 200


def timing(schedule: spb.Schedule) -> str:
    """`cron '*/5 * * * *' (Europe/Paris)` or `every 30s`."""
    if schedule.cron:
        return f"cron '{schedule.cron}' ({schedule.time_zone})"
    return f"every {humanize_seconds(schedule.interval_seconds)}"


def _missed(schedule: spb.Schedule) -> str:
    return (enum_field(schedule, "missed") or NONE).lower()


def _state(schedule: spb.Schedule) -> Text:
    return Text("paused", style="yellow") if schedule.paused else Text("active", style="green")


def schedules_table(reply: spb.ListSchedulesResponse, now: datetime) -> RenderableType:
    """One line per schedule: when it ticks, its queue, state and next and last runs."""
    if not reply.schedules:
        return Text("no schedules")
    return list_table(
        ["name", "when", "queue", "state", "missed", "next run", "last run"],
        (
            [
                s.name,
                timing(s),
                s.queue_name,
                _state(s),
                _missed(s),
                NONE if s.paused else when(s, "next_run_at", now, exact=True),
                when(s, "last_run_at", now),
            ]
            for s in reply.schedules
        ),
    )


def schedule_detail(schedule: spb.Schedule, now: datetime) -> Table:
    """Every field of one schedule, then its next run times."""
    upcoming = [iso_utc(t.ToDatetime(tzinfo=UTC)) for t in schedule.upcoming]
    return detail_table(
        [
            ("Schedule", schedule.name),
            ("When", timing(schedule)),
            ("State", _state(schedule)),
            ("Missed ticks", _missed(schedule)),
            ("Queue", schedule.queue_name),
            ("Priority", str(schedule.priority)),
            (
                "Max retries",
                str(schedule.max_retries) if schedule.HasField("max_retries") else "the queue's",
            ),
            ("Payload", preview(schedule.payload, DETAIL_PREVIEW)),
            (
                "Next run",
                NONE if schedule.paused else when(schedule, "next_run_at", now, exact=True),
            ),
            ("Then", ", ".join(upcoming[1:]) or NONE),
            ("Last run", when(schedule, "last_run_at", now, exact=True)),
            ("Created", when(schedule, "created_at", now, exact=True)),
        ]
    )


def schedule_changed(schedule: spb.Schedule, verb: str, now: datetime) -> Text:
    """One line after add, pause or resume."""
    text = Text(f"schedule '{schedule.name}' {verb}: {timing(schedule)} on '{schedule.queue_name}'")
    if schedule.paused:
        text.append(", paused")
    else:
        text.append(f", next run {when(schedule, 'next_run_at', now, exact=True)}")
    return text
