"""The jobs page: jobs newest first, filtered by queue and status, searched by id, paged by
the RPC's keyset token; dead-lettered jobs can be retried in bulk."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.web.context import WebContext
from jobq.server.web.gateway import GatewayError
from jobq.server.web.page import Viewer, act, done, look, render
from jobq.server.web.pages import forms
from jobq.server.web.pages.formatting import JOB_STATUSES, ago, iso, job_status, when

__all__ = ["PAGE_SIZE", "routes"]

PAGE_SIZE = 50
MAX_BULK = 100
"""Most jobs one bulk retry touches (each is one RetryJob call)."""
_MAX_TOKEN_CHARS = 512
_TRAIL_PAGES = 20
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,512}")
_JOBS = "/jobq.v1.JobService"


@dataclass(frozen=True, slots=True)
class JobRow:
    job_id: str
    queue: str
    status: str
    attempt: int
    retries: str
    created: str
    created_ago: str
    updated: str
    updated_ago: str


@dataclass(frozen=True, slots=True)
class Filters:
    queue: str = ""
    status: str = ""
    page_token: str = ""
    trail: tuple[str, ...] = ()
    """The page tokens of the pages between the first and this one, for Previous: the RPC
    pages forward only, so the way back travels in the URL (at most _TRAIL_PAGES deep)."""

    def url(self, page_token: str = "", trail: tuple[str, ...] = ()) -> str:
        values = {
            "queue": self.queue,
            "status": self.status,
            "page_token": page_token,
            "prev": ".".join(trail),
        }
        query = urlencode({k: v for k, v in values.items() if v})
        return f"/jobs?{query}" if query else "/jobs"

    def next_url(self, token: str) -> str:
        trail = (*self.trail, self.page_token) if self.page_token else self.trail
        return self.url(token, trail[-_TRAIL_PAGES:])

    def previous_url(self) -> str:
        if self.trail:
            return self.url(self.trail[-1], self.trail[:-1])
        return self.url() if self.page_token else ""

    def list_url(self) -> str:
        """This listing's first page (where an action goes back to)."""
        return self.url()


def routes(ctx: WebContext) -> list[BaseRoute]:
    async def jobs_page(request: Request) -> Response:
        viewer = await look(ctx, request)
        if isinstance(viewer, Response):
            return viewer
        params = request.query_params
        search = params.get("q", "").strip()
        queue_names = await _queue_names(ctx, viewer)
        try:
            if search:
                # An exact id goes to its page; anything else is an error here, not a search
                # of payloads (the API has no such search).
                return RedirectResponse(f"/jobs/{forms.job_id(search)}", status_code=303)
            filters = _filters(params.get("queue", ""), params.get("status", ""))
            token = params.get("page_token", "")
            if len(token) > _MAX_TOKEN_CHARS:
                raise forms.FormError("page token: too long; start again from the first page")
            trail = _trail(params.get("prev", ""))
        except forms.FormError as exc:
            return _page(ctx, request, viewer, Filters(), queue_names, search, str(exc), 400)
        filters = Filters(filters.queue, filters.status, token, trail)
        return await _listing(ctx, request, viewer, filters, queue_names, search)

    async def retry_bulk(request: Request) -> Response:
        acted = await act(ctx, request)
        if isinstance(acted, Response):
            return acted
        viewer, form = acted
        try:
            back = _filters(forms.text(form, "queue"), forms.text(form, "status"))
        except forms.FormError:
            back = Filters()
        field = "page_job" if forms.text(form, "which") == "page" else "job_id"
        raw_ids = form.getlist(field)
        if not raw_ids:
            return done(ctx, back.list_url(), error="Nothing retried: select at least one job")
        if len(raw_ids) > MAX_BULK:
            return done(
                ctx, back.list_url(), error=f"Nothing retried: at most {MAX_BULK} jobs at once"
            )
        try:
            ids = list(dict.fromkeys(forms.job_id(str(raw)) for raw in raw_ids))
        except forms.FormError as exc:
            return done(ctx, back.list_url(), error=f"Nothing retried: {exc}")
        retried, failures = 0, []
        for job_id in ids:
            try:
                await ctx.gateway.call(
                    f"{_JOBS}/RetryJob", jpb.RetryJobRequest(job_id=job_id), viewer.caller
                )
                retried += 1
            except GatewayError as exc:
                failures.append(f"{job_id[:8]}…: {exc.message}")
        summary = f"{retried} retried, {len(failures)} failed"
        if failures:
            reasons = "; ".join(failures[:3]) + ("; …" if len(failures) > 3 else "")
            return done(ctx, back.list_url(), notice="" if not retried else summary,
                        error=f"{summary}: {reasons}")  # fmt: skip
        return done(ctx, back.list_url(), notice=summary)

    return [
        Route("/jobs", jobs_page, methods=["GET"]),
        Route("/jobs/retry", retry_bulk, methods=["POST"]),
    ]


def _trail(raw: str) -> tuple[str, ...]:
    """The `prev` parameter: page tokens joined by '.' (not a character of theirs)."""
    if not raw:
        return ()
    parts = raw.split(".")
    if len(raw) > _TRAIL_PAGES * (_MAX_TOKEN_CHARS + 1) or len(parts) > _TRAIL_PAGES:
        raise forms.FormError("previous pages: too many; start again from the first page")
    if not all(_TOKEN.fullmatch(part) for part in parts):
        raise forms.FormError("previous pages: malformed; start again from the first page")
    return tuple(parts)


def _filters(queue: str, status: str) -> Filters:
    queue, status = queue.strip(), status.strip().upper()
    if queue:
        forms.queue_name(queue)
    if status and status not in JOB_STATUSES:
        raise forms.FormError(
            f"unknown status {status[:30]!r}: choose one of {', '.join(JOB_STATUSES)}"
        )
    return Filters(queue, status)


async def _queue_names(ctx: WebContext, viewer: Viewer) -> list[str]:
    try:
        reply = await ctx.gateway.call(
            "/jobq.v1.AdminService/ListQueues", apb.ListQueuesRequest(), viewer.caller
        )
    except GatewayError:
        return []  # the filter still works by typed URL; the listing shows any real error
    return [queue.name for queue in reply.queues]


async def _listing(
    ctx: WebContext,
    request: Request,
    viewer: Viewer,
    filters: Filters,
    queue_names: list[str],
    search: str,
) -> Response:
    message = jpb.ListJobsRequest(
        queue_name=filters.queue, limit=PAGE_SIZE, page_token=filters.page_token
    )
    if filters.status:
        message.status = cast(cpb.JobStatus, cpb.JobStatus.Value(f"JOB_STATUS_{filters.status}"))
    try:
        reply = await ctx.gateway.call(f"{_JOBS}/ListJobs", message, viewer.caller)
    except GatewayError as exc:
        text = exc.message
        if filters.page_token and exc.http_status == 400:
            text = f"{exc.message} (the page link is broken or stale: start from the first page)"
        return _page(ctx, request, viewer, filters, queue_names, search, text, exc.http_status)
    rows = [_row(job) for job in reply.jobs]
    return _page(
        ctx, request, viewer, filters, queue_names, search, "", 200,
        rows=rows,
        next_url=filters.next_url(reply.next_page_token) if reply.next_page_token else "",
    )  # fmt: skip


def _page(
    ctx: WebContext,
    request: Request,
    viewer: Viewer,
    filters: Filters,
    queue_names: list[str],
    search: str,
    load_error: str,
    status_code: int,
    *,
    rows: list[JobRow] | None = None,
    next_url: str = "",
) -> Response:
    values: dict[str, Any] = {
        "nav": "jobs",
        "filters": filters,
        "queue_names": queue_names,
        "statuses": JOB_STATUSES,
        "search": search,
        "load_error": load_error,
        "rows": rows or [],
        "next_url": next_url,
        "first_url": filters.url() if filters.trail else "",
        "previous_url": filters.previous_url(),
        "bulk": filters.status == "DEAD_LETTERED",
    }
    return render(ctx, request, viewer, "jobs.html", status_code, **values)


def _row(job: Any) -> JobRow:
    created = when(job.created_at)
    updated = when(job.updated_at)
    return JobRow(
        job_id=job.job_id,
        queue=job.queue_name,
        status=job_status(job.status),
        attempt=job.attempt,
        retries=f"{job.retry_count}/{job.max_retries}",
        created=iso(created),
        created_ago=ago(created),
        updated=iso(updated),
        updated_ago=ago(updated),
    )
