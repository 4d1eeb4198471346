"""Table views of JobService replies: one job in detail, job lists, a job's history."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from jobq.ctl.output import (
    detail_table,
    enum_field,
    instant,
    list_table,
    or_none,
    preview,
    short_id,
    status_text,
    when,
)

if TYPE_CHECKING:
    from jobq.rpc._gen import common_pb2 as cpb
    from jobq.rpc._gen import job_service_pb2 as jpb

DETAIL_PREVIEW = 200
"""Characters of payload, result and error shown by `job status`; JSON and YAML carry all."""


def job_detail(job: cpb.Job, now: datetime) -> Table:
    """Every field of one job, times with their age (progress and a cancel request only when
    there are any)."""
    return detail_table(
        [
            ("Job", job.job_id),
            ("Queue", job.queue_name),
            ("Status", status_text(enum_field(job, "status"))),
            ("Priority", str(job.priority)),
            *([("Concurrency key", job.concurrency_key)] if job.concurrency_key else []),
            ("Retries", f"{job.retry_count} of {job.max_retries}"),
            ("Attempt", str(job.attempt)),
            ("Worker", or_none(job.worker_id)),
            ("Schedule", or_none(job.schedule_name)),
            ("Created", when(job, "created_at", now, exact=True)),
            ("Not before", when(job, "not_before", now, exact=True)),
            ("Started", when(job, "started_at", now, exact=True)),
            ("Completed", when(job, "completed_at", now, exact=True)),
            ("Updated", when(job, "updated_at", now, exact=True)),
            ("Payload", preview(job.payload, DETAIL_PREVIEW)),
            ("Result", preview(job.result, DETAIL_PREVIEW)),
            ("Error", preview(job.error_message, DETAIL_PREVIEW)),
            ("Runs after", or_none("\n".join(job.depends_on))),
            *_progress_and_cancel_rows(job, now),
        ]
    )


def _progress_and_cancel_rows(job: cpb.Job, now: datetime) -> list[tuple[str, str | Text]]:
    """`Progress  42% resized 42 of 100`, when it was reported, and who cancelled the job (or
    asked to, for a RUNNING one)."""
    rows: list[tuple[str, str | Text]] = []
    if job.HasField("progress"):
        label = f"{job.progress:.0%}"
        rows.append(("Progress", f"{label} {job.progress_message}".strip()))
        rows.append(("Progress at", when(job, "progress_updated_at", now, exact=True)))
    if job.HasField("cancel_requested_at"):
        rows.append(("Cancel requested", when(job, "cancel_requested_at", now, exact=True)))
    if job.cancelled_by:
        rows.append(("Cancelled by", job.cancelled_by))
    return rows


def job_changed(job: cpb.Job, verb: str) -> Text:
    """One line after cancel or retry: `job <id> cancelled: now DEAD_LETTERED`."""
    if verb == "cancelled" and job.HasField("cancel_requested_at") and not job.completed_at:
        # A RUNNING job: only requested; its worker stops it, then it ends CANCELLED.
        text = Text(f"job {job.job_id} cancel requested: still ")
        text.append_text(status_text(enum_field(job, "status")))
        text.append(" until its worker stops it")
        return text
    text = Text(f"job {job.job_id} {verb}: now ")
    text.append_text(status_text(enum_field(job, "status")))
    return text


def jobs_table(reply: jpb.ListJobsResponse, now: datetime) -> RenderableType:
    """One line per job, newest first, then the token of the next page when there is one."""
    if not reply.jobs:
        table: RenderableType = Text("no jobs")
    else:
        table = list_table(
            ["id", "queue", "status", "prio", "retries", "created", "worker", "payload"],
            (
                [
                    job.job_id,
                    job.queue_name,
                    status_text(enum_field(job, "status")),
                    str(job.priority),
                    f"{job.retry_count}/{job.max_retries}",
                    when(job, "created_at", now),
                    short_id(job.worker_id),
                    preview(job.payload),
                ]
                for job in reply.jobs
            ),
        )
    if not reply.next_page_token:
        return table
    return Group(table, Text(f"next page: --page-token {reply.next_page_token}"))


def events_table(reply: jpb.GetJobLogsResponse, now: datetime) -> RenderableType:
    """A job's state changes, oldest first."""
    if not reply.events:
        return Text("no events")
    return list_table(
        ["time", "age", "from", "to", "reason", "worker", "detail"],
        (
            [
                instant(event, "occurred_at"),
                when(event, "occurred_at", now),
                status_text(enum_field(event, "from_status")),
                status_text(enum_field(event, "to_status")),
                event.reason,
                short_id(event.worker_id),
                preview(event.detail, 80),
            ]
            for event in reply.events
        ),
    )
