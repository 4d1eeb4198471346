"""Table views of AdminService replies: queues, queue statistics, workers, system status."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from jobq.ctl.documents import duration_seconds
from jobq.ctl.durations import humanize_seconds
from jobq.ctl.output import (
    NONE,
    detail_table,
    enum_field,
    instant,
    list_table,
    preview,
    status_text,
    when,
)
from jobq.rpc.convert import rate_from_proto

if TYPE_CHECKING:
    from jobq.rpc._gen import admin_service_pb2 as apb
    from jobq.rpc._gen import common_pb2 as cpb

JOB_STATUSES = ("PENDING", "ASSIGNED", "RUNNING", "DONE", "FAILED", "DEAD_LETTERED", "WAITING")
WORKER_STATUSES = ("ONLINE", "DRAINING", "OFFLINE")


def _ttl(seconds: int) -> str:
    return humanize_seconds(seconds) if seconds else "none"


def queues_table(reply: apb.ListQueuesResponse, now: datetime) -> RenderableType:
    """One line per queue: its retries, interruptions, TTL and age."""
    if not reply.queues:
        return Text("no queues")
    return list_table(
        ["name", "max retries", "max interruptions", "ttl", "flow", "created"],
        (
            [
                q.name,
                str(q.max_retries),
                str(q.max_interruptions),
                _ttl(q.ttl_seconds),
                flow_text(q),
                when(q, "created_at", now),
            ]
            for q in reply.queues
        ),
    )


def queue_created(queue: cpb.Queue) -> Text:
    """One line after `queue create`."""
    return Text(
        f"queue '{queue.name}' created (max retries {queue.max_retries}, "
        f"max interruptions {queue.max_interruptions}, ttl {_ttl(queue.ttl_seconds)})"
    )


def flow_text(queue: cpb.Queue) -> str:
    """'paused, max 10 running, 5/1s per key', or '-' for an ordinary queue."""
    parts = []
    if queue.paused:
        parts.append("paused")
    if queue.max_running:
        parts.append(f"max {queue.max_running} running")
    if queue.key_max_running:
        parts.append(f"max {queue.key_max_running} running per key")
    if queue.HasField("rate"):
        parts.append(_rate(queue.rate))
    if queue.HasField("key_rate"):
        parts.append(f"{_rate(queue.key_rate)} per key")
    return ", ".join(parts) or NONE


def _rate(rate: cpb.RateLimit) -> str:
    return str(rate_from_proto(rate))


def queue_flow(what: str, queue: cpb.Queue) -> Text:
    """One line after `queue pause|resume|limit`."""
    return Text(f"queue '{queue.name}' {what}: {flow_text(queue)}")


def queue_deleted(name: str, reply: apb.DeleteQueueResponse) -> Text:
    """One line after `queue delete`."""
    return Text(f"queue '{name}' deleted with {reply.deleted_jobs} job(s)")


def queue_stats(reply: apb.GetQueueStatsResponse) -> Table:
    """A queue's jobs per status, oldest pending age, retries and interruptions."""
    stats = reply.stats
    oldest = stats.oldest_pending_age_s
    return detail_table(
        [
            ("Queue", stats.queue_name),
            *((name, str(getattr(stats, name.lower()))) for name in JOB_STATUSES),
            ("Oldest pending", humanize_seconds(oldest) if oldest else NONE),
            ("Total retries", str(stats.total_retries)),
            ("Max interruptions", str(stats.max_interruptions)),
            ("Total interruptions", str(stats.total_interruptions)),
            ("Flow", flow_text(stats.queue)),
        ]
    )


def workers_table(reply: apb.ListWorkersResponse, now: datetime) -> RenderableType:
    """One line per worker: status, busy slots, queues, heartbeat age."""
    if not reply.workers:
        return Text("no workers")
    return list_table(
        ["id", "host", "status", "jobs", "queues", "last heartbeat", "registered"],
        (
            [
                w.worker_id,
                w.hostname or NONE,
                status_text(enum_field(w, "status")),
                f"{w.active_job_count}/{w.concurrency}",
                ",".join(w.queues) or NONE,
                when(w, "last_heartbeat", now),
                when(w, "registered_at", now),
            ]
            for w in reply.workers
        ),
    )


def worker_changed(worker: cpb.Worker, what: str) -> Text:
    """One line after drain or shutdown: `worker <id> draining: now DRAINING`."""
    text = Text(f"worker {worker.worker_id} {what}: now ")
    text.append_text(status_text(enum_field(worker, "status")))
    return text


def _counts(counts: dict[str, int], order: tuple[str, ...]) -> Text:
    names = [*order, *sorted(set(counts) - set(order))]
    text = Text()
    for name in names:
        if text:
            text.append("  ")
        text.append_text(status_text(name))
        text.append(f" {counts.get(name, 0)}")
    return text


def system_status(reply: apb.GetSystemStatusResponse, now: datetime) -> RenderableType:
    """Version, uptime and counts, then one line per component."""
    summary = detail_table(
        [
            ("Version", reply.version or NONE),
            ("Started", when(reply, "started_at", now, exact=True)),
            ("Uptime", humanize_seconds(duration_seconds(reply.uptime))),
            ("Workers", _counts(dict(reply.workers_by_status), WORKER_STATUSES)),
            ("Jobs", _counts(dict(reply.jobs_by_status), JOB_STATUSES)),
        ]
    )
    components = list_table(
        ["component", "state", "detail"],
        ([c.name, status_text(enum_field(c, "state")), c.detail or NONE] for c in reply.components),
    )
    return Group(summary, Text(""), components)


def _outcome(outcome: str) -> Text:
    """`ok` in green; a refusal (`FAILED_PRECONDITION: ...`) in red."""
    return Text(outcome, style="green" if outcome == "ok" else "red")


def audit_table(reply: apb.ListAuditEventsResponse, now: datetime) -> RenderableType:
    """One line per audit record, newest first, then the token of the next page if any."""
    if not reply.events:
        table: RenderableType = Text("no audit events")
    else:
        table = list_table(
            ["time", "age", "actor", "action", "target", "outcome", "detail"],
            (
                [
                    instant(event, "occurred_at"),
                    when(event, "occurred_at", now),
                    event.actor,
                    event.action,
                    preview(event.target, 64),
                    _outcome(preview(event.outcome, 120)),
                    preview(event.detail, 60),
                ]
                for event in reply.events
            ),
        )
    if not reply.next_page_token:
        return table
    return Group(table, Text(f"next page: --page-token {reply.next_page_token}"))
