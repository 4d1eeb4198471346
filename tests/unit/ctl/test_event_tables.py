"""What `jq-ctl events tail` prints: an aligned table that grows batch by batch, one document
without --follow, and one document per event with it."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import yaml
from google.protobuf.timestamp_pb2 import Timestamp

from jobq.ctl.documents import to_document
from jobq.ctl.event_tables import EventPrinter
from jobq.ctl.output import OutputFormat, Printer, make_console
from jobq.rpc._gen import common_pb2 as cpb

JOB = "01a20275-0000-7000-8000-000000000001"
WORKER = "8c1d7e2a-1111-4222-8333-444455556666"
HEADER = ["ID", "TIME", "JOB", "QUEUE", "FROM", "→", "TO", "REASON", "WORKER", "ATTEMPT", "DETAIL"]


def _event(event_id: int, **fields: object) -> cpb.JobEvent:
    stamp = Timestamp()
    stamp.FromDatetime(datetime(2024, 5, 1, 12, 0, event_id % 60, tzinfo=UTC))
    fields.setdefault("to_status", cpb.JOB_STATUS_PENDING)
    fields.setdefault("reason", "SUBMITTED")
    fields.setdefault("queue_name", "default")
    return cpb.JobEvent(id=event_id, job_id=JOB, occurred_at=stamp, **fields)


SUBMITTED = _event(7)
FAILED = _event(
    12,
    from_status=cpb.JOB_STATUS_RUNNING,
    to_status=cpb.JOB_STATUS_FAILED,
    reason="FAILED",
    worker_id=WORKER,
    attempt=2,
    detail="exit status 1\nstderr: " + "x" * 200,
)
LATER = _event(1234, queue_name="a-much-longer-queue-name", reason="MANUAL_RETRY")


def _printed(output: OutputFormat, follow: bool, *batches: list[cpb.JobEvent]) -> str:
    stream = io.StringIO()
    printer = EventPrinter(Printer(output, make_console(stream)), follow=follow)
    printer.first(batches[0])
    for batch in batches[1:]:
        printer.more(batch)
    return stream.getvalue()


def test_the_table_has_one_aligned_row_per_event() -> None:
    header, first, second = _printed("table", False, [SUBMITTED, FAILED]).splitlines()
    assert header.split() == HEADER
    assert first.split() == [
        "7", "2024-05-01T12:00:07.000000Z", JOB, "default", "-", "→", "PENDING", "SUBMITTED",
        "-", "-", "-",
    ]  # fmt: skip
    cells = second.split(maxsplit=10)
    assert cells[:10] == [
        "12", "2024-05-01T12:00:12.000000Z", JOB, "default", "RUNNING", "→", "FAILED", "FAILED",
        WORKER[:8], "2",
    ]  # fmt: skip
    detail = cells[10]
    assert detail.startswith("exit status 1\\nstderr: xxx")  # one line, shortened
    assert detail.endswith("…")
    assert len(detail) == 60
    for column in ("TIME", "JOB", "QUEUE", "FROM", "REASON", "WORKER", "ATTEMPT", "DETAIL"):
        start = header.index(column)
        assert first[start - 2 : start] == "  "
        assert second[start - 2 : start] == "  "
        assert first[start] != " "
        assert second[start] != " "


def test_no_events_without_follow_says_so() -> None:
    assert _printed("table", False, []) == "no events\n"
    assert json.loads(_printed("json", False, [])) == {"events": []}


def test_following_prints_the_header_at_once_and_keeps_its_columns() -> None:
    lines = _printed("table", True, [], [SUBMITTED], [], [LATER]).splitlines()
    assert lines[0].split() == HEADER
    assert len(lines) == 3
    reason = lines[0].index("REASON")
    assert lines[1][reason:].startswith("SUBMITTED")
    # A longer queue name than the column pushes its own line, not the lines above.
    assert lines[2].split()[:4] == ["1234", "2024-05-01T12:00:34.000000Z", JOB, LATER.queue_name]
    assert all(line == line.rstrip() for line in lines)


def test_json_and_yaml_without_follow_are_one_document() -> None:
    document = json.loads(_printed("json", False, [SUBMITTED, FAILED]))
    assert document == {"events": [to_document(SUBMITTED), to_document(FAILED)]}
    assert yaml.safe_load(_printed("yaml", False, [SUBMITTED, FAILED])) == document


def test_following_prints_one_document_per_event_as_it_comes() -> None:
    text = _printed("json", True, [SUBMITTED], [], [FAILED, LATER])
    assert [json.loads(line) for line in text.splitlines()] == [
        to_document(event) for event in (SUBMITTED, FAILED, LATER)
    ]
    documents = list(yaml.safe_load_all(_printed("yaml", True, [SUBMITTED], [FAILED])))
    assert documents == [to_document(SUBMITTED), to_document(FAILED)]
