"""One job: its facts, progress, payload, result or error, attempts, event timeline and log;
retry and cancel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.web.context import WebContext
from jobq.server.web.gateway import GatewayError
from jobq.server.web.page import Viewer, act, done, look, render
from jobq.server.web.pages import forms
from jobq.server.web.pages.formatting import ago, iso, job_status, shown_bytes, when

__all__ = ["EventRow", "event_row", "routes"]

_JOBS = "/jobq.v1.JobService"
TIMELINE_EVENTS = 200
"""The timeline shows the job's newest events up to this many (a job retried for days has
thousands); the log below has them all."""
RETRYABLE = frozenset({"FAILED", "DEAD_LETTERED"})
CANCELLABLE = frozenset({"PENDING", "WAITING", "ASSIGNED", "RUNNING"})


@dataclass(frozen=True, slots=True)
class EventRow:
    job_id: str
    at: str
    at_ago: str
    from_status: str
    to_status: str
    reason: str
    worker: str
    attempt: int
    detail: str


@dataclass(slots=True)
class AttemptRow:
    attempt: int
    worker: str = ""
    began: str = ""
    ended: str = ""
    outcome: str = ""
    detail: str = ""
    reasons: list[str] = field(default_factory=list)


def routes(ctx: WebContext) -> list[BaseRoute]:
    async def job_page(request: Request) -> Response:
        viewer = await look(ctx, request)
        if isinstance(viewer, Response):
            return viewer
        try:
            job_id = forms.job_id(request.path_params["job_id"])
        except forms.FormError as exc:
            return _not_found(ctx, request, viewer, f"No such job: {exc}")
        try:
            reply = await ctx.gateway.call(
                f"{_JOBS}/GetJobStatus", jpb.GetJobStatusRequest(job_id=job_id), viewer.caller
            )
        except GatewayError as exc:
            if exc.http_status == 404:
                return _not_found(ctx, request, viewer, f"No job has the id {job_id}.")
            return render(ctx, request, viewer, "error.html", exc.http_status, message=exc.message)
        job = reply.job
        timeline, log, events_error = await _events(ctx, viewer, job_id)
        return render(
            ctx, request, viewer, "job_detail.html", nav="jobs",
            **_facts(job), timeline=timeline, attempts=_attempts(log), log=_log_text(log),
            events_error=events_error,
        )  # fmt: skip

    async def job_action(request: Request, verb: str) -> Response:
        acted = await act(ctx, request)
        if isinstance(acted, Response):
            return acted
        viewer = acted[0]
        try:
            job_id = forms.job_id(request.path_params["job_id"])
        except forms.FormError as exc:
            return done(ctx, "/jobs", error=f"Nothing done: {exc}")
        here = f"/jobs/{job_id}"
        message: Any = (
            jpb.RetryJobRequest(job_id=job_id)
            if verb == "retry"
            else jpb.CancelJobRequest(job_id=job_id)
        )
        method = "RetryJob" if verb == "retry" else "CancelJob"
        try:
            reply = await ctx.gateway.call(f"{_JOBS}/{method}", message, viewer.caller)
        except GatewayError as exc:
            past = "retried" if verb == "retry" else "cancelled"
            return done(ctx, here, error=f"Job not {past}: {exc.message}")
        if verb == "retry":
            return done(ctx, here, notice="Job retried: it is PENDING again")
        if job_status(reply.job.status) == "RUNNING":
            return done(ctx, here, notice="Cancel requested: the worker stops the job")
        return done(ctx, here, notice="Job cancelled")

    async def retry(request: Request) -> Response:
        return await job_action(request, "retry")

    async def cancel(request: Request) -> Response:
        return await job_action(request, "cancel")

    return [
        Route("/jobs/{job_id}", job_page, methods=["GET"]),
        Route("/jobs/{job_id}/retry", retry, methods=["POST"]),
        Route("/jobs/{job_id}/cancel", cancel, methods=["POST"]),
    ]


def _not_found(ctx: WebContext, request: Request, viewer: Viewer, message: str) -> Response:
    return render(ctx, request, viewer, "error.html", 404, message=message, nav="jobs")


async def _events(
    ctx: WebContext, viewer: Viewer, job_id: str
) -> tuple[list[EventRow], list[Any], str]:
    """The timeline (newest events, newest first), the whole log (oldest first), and an
    error message when either could not be read (the page still shows the job)."""
    try:
        page = await ctx.gateway.call(
            f"{_JOBS}/ListJobEvents",
            jpb.ListJobEventsRequest(job_id=job_id, limit=TIMELINE_EVENTS, newest=True),
            viewer.caller,
        )
        logs = await ctx.gateway.call(
            f"{_JOBS}/GetJobLogs", jpb.GetJobLogsRequest(job_id=job_id), viewer.caller
        )
    except GatewayError as exc:
        return [], [], exc.message
    rows = [event_row(event) for event in reversed(page.events)]
    return rows, list(logs.events), ""


def event_row(event: Any) -> EventRow:
    at = when(event.occurred_at)
    return EventRow(
        job_id=event.job_id,
        at=iso(at),
        at_ago=ago(at),
        from_status="" if not event.from_status else job_status(event.from_status),
        to_status=job_status(event.to_status),
        reason=event.reason,
        worker=event.worker_id,
        attempt=event.attempt,
        detail=event.detail,
    )


def _facts(job: Any) -> dict[str, Any]:
    status = job_status(job.status)
    progress = job.progress if job.HasField("progress") else None
    times = {
        "created": when(job.created_at, job.HasField("created_at")),
        "updated": when(job.updated_at, job.HasField("updated_at")),
        "started": when(job.started_at, job.HasField("started_at")),
        "completed": when(job.completed_at, job.HasField("completed_at")),
        "not_before": when(job.not_before, job.HasField("not_before")),
        "cancel_requested": when(job.cancel_requested_at, job.HasField("cancel_requested_at")),
        "progress_updated": when(job.progress_updated_at, job.HasField("progress_updated_at")),
    }
    return {
        "job": job,
        "status": status,
        "times": {name: (iso(moment), ago(moment)) for name, moment in times.items()},
        "progress": progress,
        "progress_percent": None if progress is None else round(progress * 100),
        "payload": shown_bytes(job.payload),
        "result": shown_bytes(job.result),
        "may_retry": status in RETRYABLE,
        "may_cancel": status in CANCELLABLE and not job.HasField("cancel_requested_at"),
    }


def _attempts(events: list[Any]) -> list[AttemptRow]:
    """One row per attempt (claim) from the job's events: who ran it, when, how it ended."""
    attempts: dict[int, AttemptRow] = {}
    for event in events:
        if event.attempt <= 0:
            continue
        row = attempts.setdefault(event.attempt, AttemptRow(event.attempt))
        moment = iso(when(event.occurred_at))
        row.began = row.began or moment
        row.worker = event.worker_id or row.worker
        row.reasons.append(event.reason)
        if event.reason not in ("ASSIGNED", "STARTED"):
            row.ended = moment
            row.outcome = job_status(event.to_status) + (
                f" ({event.reason})" if event.reason else ""
            )
            if event.detail:
                row.detail = event.detail
    return sorted(attempts.values(), key=lambda row: -row.attempt)


def _log_text(events: list[Any]) -> str:
    """The job's log as `jq-ctl job logs` prints it: one line per state change."""
    lines = []
    for event in events:
        moment = iso(when(event.occurred_at))
        source = job_status(event.from_status) if event.from_status else "(new)"
        line = f"{moment}  {source} -> {job_status(event.to_status)}  {event.reason}"
        if event.attempt:
            line += f"  attempt={event.attempt}"
        if event.worker_id:
            line += f"  worker={event.worker_id}"
        if event.detail:
            line += f"  {event.detail}"
        lines.append(line)
    return "\n".join(lines)
