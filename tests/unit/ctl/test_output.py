"""Tables for people, JSON and YAML for scripts: what each format prints."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import yaml
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from jobq.ctl import admin_tables, job_tables
from jobq.ctl.output import OutputFormat, Printer, TableView, make_console, preview
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LONG_PAYLOAD = b'{"command": ["python3", "-c", "' + b"x" * 200 + b'"]}'


def stamp(seconds_ago: float) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(NOW - timedelta(seconds=seconds_ago))
    return result


def job(job_id: str, status: int, seconds_ago: float, payload: bytes) -> cpb.Job:
    return cpb.Job(
        job_id=job_id,
        queue_name="default",
        payload=payload,
        status=status,  # type: ignore[arg-type]
        max_retries=3,
        created_at=stamp(seconds_ago),
    )


def render(reply: object, view: TableView, output: OutputFormat = "table") -> str:
    stream = io.StringIO()
    printer = Printer(output, make_console(stream))
    printer.show(reply, view)  # type: ignore[arg-type]
    return stream.getvalue()


LISTING = jpb.ListJobsResponse(
    jobs=[
        job("01a20275-0000-7000-8000-000000000002", cpb.JOB_STATUS_RUNNING, 3, LONG_PAYLOAD),
        job("01a20275-0000-7000-8000-000000000001", cpb.JOB_STATUS_DEAD_LETTERED, 300, b"{}"),
    ],
    next_page_token="abc123",
)


def test_the_job_table_is_aligned_with_ages_and_previews() -> None:
    text = render(LISTING, lambda: job_tables.jobs_table(LISTING, NOW))
    header, first, second, token = text.splitlines()
    assert header.split() == [
        "ID", "QUEUE", "STATUS", "PRIO", "RETRIES", "CREATED", "WORKER", "PAYLOAD",
    ]  # fmt: skip
    for column in ("QUEUE", "STATUS", "CREATED", "PAYLOAD"):
        start = header.index(column)
        assert first[start - 2 : start] == "  "  # every row's cell starts under its header
        assert second[start - 2 : start] == "  "
    assert "RUNNING" in first
    assert "3s ago" in first
    assert "DEAD_LETTERED" in second
    assert "5m ago" in second
    assert first.endswith("…")  # the long payload is cut ...
    assert len(first) < 200  # ... so the line stays readable
    assert token == "next page: --page-token abc123"
    assert not any(line.endswith(" ") for line in text.splitlines())


def test_the_last_page_has_no_token_line_and_empty_lists_say_so() -> None:
    last = jpb.ListJobsResponse(jobs=list(LISTING.jobs))
    assert "next page" not in render(last, lambda: job_tables.jobs_table(last, NOW))
    empty = jpb.ListJobsResponse()
    assert render(empty, lambda: job_tables.jobs_table(empty, NOW)) == "no jobs\n"


def test_json_and_yaml_carry_full_values() -> None:
    as_json = json.loads(render(LISTING, lambda: "unused", "json"))
    as_yaml = yaml.safe_load(render(LISTING, lambda: "unused", "yaml"))
    assert as_json == as_yaml
    assert as_json["jobs"][0]["payload"] == LONG_PAYLOAD.decode()
    assert as_json["jobs"][0]["created_at"] == "2024-05-01T11:59:57.000000Z"
    assert as_json["next_page_token"] == "abc123"


def test_plain_documents_print_too() -> None:
    assert json.loads(render({"version": "1.0"}, lambda: "jq-ctl 1.0", "json")) == {
        "version": "1.0"
    }
    assert render({"version": "1.0"}, lambda: "jq-ctl 1.0") == "jq-ctl 1.0\n"


def test_job_detail_shows_every_time_with_its_age() -> None:
    detail = job("01a20275-0000-7000-8000-000000000002", cpb.JOB_STATUS_DONE, 65, b'{"a": 1}')
    detail.result = b"line one\nline two\n"
    text = render(detail, lambda: job_tables.job_detail(detail, NOW))
    lines = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in text.splitlines()}
    assert lines["Status"] == "DONE"
    assert lines["Created"] == "2024-05-01T11:58:55.000000Z (1m5s ago)"
    assert lines["Started"] == "-"
    assert lines["Result"] == "line one\\nline two\\n"
    assert lines["Retries"] == "0 of 3"


def test_events_show_transitions_oldest_first() -> None:
    events = jpb.GetJobLogsResponse(
        events=[
            cpb.JobEvent(
                to_status=cpb.JOB_STATUS_PENDING, reason="SUBMITTED", occurred_at=stamp(9)
            ),
            cpb.JobEvent(
                from_status=cpb.JOB_STATUS_PENDING,
                to_status=cpb.JOB_STATUS_ASSIGNED,
                reason="ASSIGNED",
                worker_id="w-1",
                occurred_at=stamp(8),
            ),
        ]
    )
    lines = render(events, lambda: job_tables.events_table(events, NOW)).splitlines()
    assert lines[0].split() == ["TIME", "AGE", "FROM", "TO", "REASON", "WORKER", "DETAIL"]
    first = ["2024-05-01T11:59:51.000000Z", "9s", "ago", "-", "PENDING", "SUBMITTED", "-", "-"]
    assert lines[1].split() == first
    assert lines[2].split()[3:6] == ["PENDING", "ASSIGNED", "ASSIGNED"]


def test_admin_views() -> None:
    workers = apb.ListWorkersResponse(
        workers=[
            cpb.Worker(
                worker_id="w-1",
                hostname="host",
                status=cpb.WORKER_STATUS_DRAINING,
                concurrency=4,
                active_job_count=1,
                queues=["default", "emails"],
                last_heartbeat=stamp(2),
            )
        ]
    )
    row = render(workers, lambda: admin_tables.workers_table(workers, NOW)).splitlines()[1]
    assert row.split()[:6] == ["w-1", "host", "DRAINING", "1/4", "default,emails", "2s"]
    status = apb.GetSystemStatusResponse(
        version="9.9",
        uptime=Duration(seconds=5400),
        components=[
            apb.ComponentHealth(name="postgres", state=apb.COMPONENT_STATE_UNHEALTHY, detail="down")
        ],
        jobs_by_status={"PENDING": 4},
    )
    text = render(status, lambda: admin_tables.system_status(status, NOW))
    assert "Uptime   1h30m" in text
    assert "PENDING 4  ASSIGNED 0" in text
    assert "postgres   UNHEALTHY  down" in text
    stats = apb.GetQueueStatsResponse(
        stats=apb.QueueStats(
            queue_name="q",
            pending=2,
            oldest_pending_age_s=90,
            max_interruptions=3,
            total_interruptions=5,
        )
    )
    text = render(stats, lambda: admin_tables.queue_stats(stats))
    assert "PENDING              2" in text
    assert "Oldest pending       1m30s" in text
    assert "Max interruptions    3" in text
    assert "Total interruptions  5" in text


def test_previews_are_one_short_line() -> None:
    assert preview(b"a\nb\tc") == "a\\nb c"
    assert preview(b"") == "-"
    assert preview(b"\xff\x00") == "<2 bytes, not UTF-8>"
    assert preview("x" * 100, 10) == "x" * 9 + "…"
