"""What `jq-ctl schedule list|show|add|pause` print as tables, and their JSON documents."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

from jobq.ctl.output import Printer, make_console
from jobq.ctl.schedule_tables import schedule_changed, schedule_detail, schedules_table
from jobq.rpc._gen import schedules_pb2 as spb

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
NEXT = NOW + timedelta(minutes=3)


def _cron(**fields: object) -> spb.Schedule:
    schedule = spb.Schedule(
        name="nightly",
        cron="0 3 * * *",
        time_zone="Europe/Paris",
        queue_name="reports",
        payload=b'{"command": ["backup"]}',
        priority=2,
        missed=spb.MISSED_TICK_POLICY_ONCE,
        **fields,  # type: ignore[arg-type]
    )
    schedule.next_run_at.FromDatetime(NEXT)
    schedule.created_at.FromDatetime(NOW - timedelta(days=2))
    for day in range(5):
        schedule.upcoming.add().FromDatetime(NEXT + timedelta(days=day))
    return schedule


INTERVAL = spb.Schedule(name="ping", interval_seconds=90, time_zone="UTC", queue_name="default")


def _shown(table: object) -> str:
    stream = io.StringIO()
    Printer("table", make_console(stream)).show(spb.ListSchedulesResponse(), lambda: table)  # type: ignore[arg-type, return-value]
    return stream.getvalue()


def test_the_list_says_when_each_ticks_and_whether_it_is_paused() -> None:
    paused = spb.Schedule(name="ping", interval_seconds=90, queue_name="default", paused=True)
    lines = _shown(
        schedules_table(spb.ListSchedulesResponse(schedules=[_cron(), paused]), NOW)
    ).splitlines()
    assert lines[0].split() == [
        "NAME",
        "WHEN",
        "QUEUE",
        "STATE",
        "MISSED",
        "NEXT",
        "RUN",
        "LAST",
        "RUN",
    ]
    assert lines[1].split()[:9] == [
        "nightly",
        "cron",
        "'0",
        "3",
        "*",
        "*",
        "*'",
        "(Europe/Paris)",
        "reports",
    ]
    assert "active" in lines[1]
    assert "once" in lines[1]
    assert "2026-05-01T12:03:00.000000Z" in lines[1]
    assert lines[2].split()[:5] == ["ping", "every", "1m30s", "default", "paused"]
    assert _shown(schedules_table(spb.ListSchedulesResponse(), NOW)) == "no schedules\n"


def test_show_gives_the_template_and_the_next_run_times() -> None:
    text = _shown(schedule_detail(_cron(), NOW))
    assert "Missed ticks  once" in text
    assert "Max retries   the queue's" in text
    assert '{"command": ["backup"]}' in text
    assert "2026-05-02T12:03:00.000000Z" in text  # the second of the upcoming run times


def test_the_one_line_after_a_change() -> None:
    assert str(schedule_changed(_cron(), "added", NOW)).startswith(
        "schedule 'nightly' added: cron '0 3 * * *' (Europe/Paris) on 'reports', next run "
        "2026-05-01T12:03:00.000000Z"
    )
    assert str(
        schedule_changed(spb.Schedule(name="p", interval_seconds=5, paused=True), "paused", NOW)
    ) == ("schedule 'p' paused: every 5s on '', paused")


def test_json_keeps_every_field() -> None:
    stream = io.StringIO()
    reply = spb.GetScheduleResponse(schedule=_cron(max_retries=0))
    Printer("json", make_console(stream)).show(reply, lambda: "unused")
    document = json.loads(stream.getvalue())["schedule"]
    assert document["missed"] == "ONCE"
    assert document["max_retries"] == 0
    assert len(document["upcoming"]) == 5
    assert INTERVAL.interval_seconds == 90
