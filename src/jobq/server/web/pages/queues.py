"""The queues page: every queue's depth by status, oldest pending age, throughput and flow
state; pause, resume, create and delete (with the queue's name typed as confirmation)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.web.context import WebContext
from jobq.server.web.gateway import GatewayError
from jobq.server.web.page import act, done, look, render
from jobq.server.web.pages import forms
from jobq.server.web.pages.formatting import duration, rate
from jobq.server.web.pages.job_detail import event_row

__all__ = ["Throughput", "routes"]

_ADMIN = "/jobq.v1.AdminService"
_MAX_LIMIT = 1_000_000
_STATS_AT_ONCE = 4
_QUEUE_EVENTS = 50
"""The queue page's recent activity: its newest job events."""
_MAX_QUEUES_SHOWN = 500
"""Stats are one call per queue; past this many the page lists the first ones by name."""


class Throughput:
    """Jobs finished per minute per queue, from the DONE and DEAD_LETTERED counts seen at
    successive page loads (live refreshes included) over the last few minutes.

    GetQueueStats gives counts, not rates; the difference of two counts over the time between
    them is the rate. A queue's count can fall (retention deletes old jobs, a retry takes one
    out of DEAD_LETTERED): a fall restarts its samples rather than showing a negative rate."""

    WINDOW_S = 300.0
    MIN_SPAN_S = 10.0

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def per_minute(self, queue: str, finished: int, now: float | None = None) -> float | None:
        """Record `finished` for `queue`; its rate over the window, None until samples span
        MIN_SPAN_S (one job finished over a second is not sixty a minute)."""
        now = time.monotonic() if now is None else now
        samples = self._samples.setdefault(queue, deque(maxlen=600))
        if samples and finished < samples[-1][1]:
            samples.clear()
        samples.append((now, finished))
        while samples and now - samples[0][0] > self.WINDOW_S:
            samples.popleft()
        first_t, first_n = samples[0]
        if now - first_t < self.MIN_SPAN_S:
            return None
        return (finished - first_n) * 60.0 / (now - first_t)

    def forget_except(self, names: set[str]) -> None:
        for name in set(self._samples) - names:
            del self._samples[name]


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    paused: bool
    counts: dict[str, int]
    oldest_pending: str
    per_minute: str
    flow: list[str]
    settings: str
    total_retries: int
    error: str


def routes(ctx: WebContext) -> list[BaseRoute]:
    throughput = Throughput()

    async def queues_page(request: Request) -> Response:
        viewer = await look(ctx, request)
        if isinstance(viewer, Response):
            return viewer
        try:
            listed = await ctx.gateway.call(
                f"{_ADMIN}/ListQueues", apb.ListQueuesRequest(), viewer.caller
            )
        except GatewayError as exc:
            return render(
                ctx, request, viewer, "queues.html", exc.http_status, nav="queues",
                rows=[], load_error=exc.message, more=0,
            )  # fmt: skip
        queues = list(listed.queues)[:_MAX_QUEUES_SHOWN]
        # A few at a time: each is a query, and the pool also serves workers and clients.
        stats_calls = asyncio.Semaphore(_STATS_AT_ONCE)

        async def stats_of(name: str) -> Any:
            async with stats_calls:
                return await _stats(name)

        async def _stats(name: str) -> Any:
            try:
                reply = await ctx.gateway.call(
                    f"{_ADMIN}/GetQueueStats", apb.GetQueueStatsRequest(name=name), viewer.caller
                )
                return reply.stats
            except GatewayError as exc:  # deleted meanwhile: show the row with the reason
                return exc

        stats = await asyncio.gather(*(stats_of(q.name) for q in queues))
        throughput.forget_except({q.name for q in queues})
        rows = [_row(queue, stat, throughput) for queue, stat in zip(queues, stats, strict=True)]
        return render(
            ctx, request, viewer, "queues.html", nav="queues", rows=rows, load_error="",
            more=len(listed.queues) - len(queues),
        )  # fmt: skip

    async def queue_page(request: Request) -> Response:
        viewer = await look(ctx, request)
        if isinstance(viewer, Response):
            return viewer
        try:
            name = forms.queue_name(request.path_params["name"])
        except forms.FormError as exc:
            return render(ctx, request, viewer, "error.html", 404, message=f"No such queue: {exc}")
        try:
            reply = await ctx.gateway.call(
                f"{_ADMIN}/GetQueueStats", apb.GetQueueStatsRequest(name=name), viewer.caller
            )
        except GatewayError as exc:
            message = f"No queue is named {name}." if exc.http_status == 404 else exc.message
            return render(ctx, request, viewer, "error.html", exc.http_status, message=message)
        stats = reply.stats
        events_error = ""
        try:
            page = await ctx.gateway.call(
                "/jobq.v1.JobService/ListJobEvents",
                jpb.ListJobEventsRequest(queue_name=name, limit=_QUEUE_EVENTS, newest=True),
                viewer.caller,
            )
            events = [event_row(event) for event in reversed(page.events)]
        except GatewayError as exc:
            events, events_error = [], exc.message
        return render(
            ctx, request, viewer, "queue_detail.html", nav="queues",
            row=_row(stats.queue, stats, throughput), stats=stats, events=events,
            events_error=events_error,
        )  # fmt: skip

    async def create(request: Request) -> Response:
        acted = await act(ctx, request)
        if isinstance(acted, Response):
            return acted
        viewer, form = acted
        try:
            name = forms.queue_name(forms.text(form, "name"))
            message = apb.CreateQueueRequest(name=name)
            retries = forms.number(forms.text(form, "max_retries"), "max retries", 0, 1000)
            ttl = forms.number(forms.text(form, "ttl_seconds"), "TTL", 0, 2_000_000_000)
            interruptions = forms.number(
                forms.text(form, "max_interruptions"), "max interruptions", 0, 1000
            )
        except forms.FormError as exc:
            return done(ctx, "/queues", error=f"Queue not created: {exc}")
        if retries is not None:
            message.max_retries = retries
        if ttl is not None:
            message.ttl_seconds = ttl
        if interruptions is not None:
            message.max_interruptions = interruptions
        try:
            await ctx.gateway.call(f"{_ADMIN}/CreateQueue", message, viewer.caller)
        except GatewayError as exc:
            return done(ctx, "/queues", error=f"Queue {name} not created: {exc.message}")
        return done(ctx, "/queues", notice=f"Queue {name} created")

    async def pause_or_resume(request: Request, verb: str) -> Response:
        acted = await act(ctx, request)
        if isinstance(acted, Response):
            return acted
        viewer, form = acted
        try:
            name = forms.queue_name(forms.text(form, "name", max_chars=200))
        except forms.FormError as exc:
            return done(ctx, "/queues", error=f"Queue not {verb}d: {exc}")
        message: Any = (
            apb.PauseQueueRequest(name=name)
            if verb == "pause"
            else apb.ResumeQueueRequest(name=name)
        )
        method = "PauseQueue" if verb == "pause" else "ResumeQueue"
        back = _back(form, name)
        try:
            await ctx.gateway.call(f"{_ADMIN}/{method}", message, viewer.caller)
        except GatewayError as exc:
            return done(ctx, back, error=f"Queue {name} not {verb}d: {exc.message}")
        return done(ctx, back, notice=f"Queue {name} {verb}d")

    async def delete(request: Request) -> Response:
        acted = await act(ctx, request)
        if isinstance(acted, Response):
            return acted
        viewer, form = acted
        try:
            name = forms.queue_name(forms.text(form, "name", max_chars=200))
            typed = forms.text(form, "confirm", max_chars=200)
        except forms.FormError as exc:
            return done(ctx, "/queues", error=f"Queue not deleted: {exc}")
        if typed != name:
            return done(
                ctx,
                "/queues",
                error=f"Queue {name} not deleted: type its name exactly to confirm",
            )
        force = forms.text(form, "force") == "on"
        try:
            reply = await ctx.gateway.call(
                f"{_ADMIN}/DeleteQueue", apb.DeleteQueueRequest(name=name, force=force),
                viewer.caller,
            )  # fmt: skip
        except GatewayError as exc:
            return done(ctx, "/queues", error=f"Queue {name} not deleted: {exc.message}")
        jobs = f" with {reply.deleted_jobs} job(s)" if reply.deleted_jobs else ""
        return done(ctx, "/queues", notice=f"Queue {name} deleted{jobs}")

    async def limits(request: Request) -> Response:
        acted = await act(ctx, request)
        if isinstance(acted, Response):
            return acted
        viewer, form = acted
        try:
            name = forms.queue_name(forms.text(form, "name", max_chars=200))
            message = _limits_request(name, form)
        except forms.FormError as exc:
            return done(ctx, _back(form, None), error=f"Limits not changed: {exc}")
        back = _back(form, name)
        try:
            await ctx.gateway.call(f"{_ADMIN}/SetQueueLimits", message, viewer.caller)
        except GatewayError as exc:
            return done(ctx, back, error=f"Limits of {name} not changed: {exc.message}")
        return done(ctx, back, notice=f"Limits of queue {name} changed")

    async def pause(request: Request) -> Response:
        return await pause_or_resume(request, "pause")

    async def resume(request: Request) -> Response:
        return await pause_or_resume(request, "resume")

    return [
        Route("/queues", queues_page, methods=["GET"]),
        Route("/queues/create", create, methods=["POST"]),
        Route("/queues/{name}", queue_page, methods=["GET"]),
        Route("/queues/pause", pause, methods=["POST"]),
        Route("/queues/resume", resume, methods=["POST"]),
        Route("/queues/delete", delete, methods=["POST"]),
        Route("/queues/limits", limits, methods=["POST"]),
    ]


def _back(form: Any, name: str | None) -> str:
    """Where an action of a queue's own page goes back to: that page; else the list."""
    if name is not None and forms.text(form, "back", max_chars=20) == "queue":
        return f"/queues/{name}"
    return "/queues"


def _limits_request(name: str, form: Any) -> apb.SetQueueLimitsRequest:
    """SetQueueLimits from the limits form: an empty field leaves its limit as it is, 0
    removes it. FormError for a bad number, a rate without its period, or nothing to change."""
    message = apb.SetQueueLimitsRequest(name=name)
    changed = False
    for field in ("max_running", "key_max_running"):
        value = forms.number(forms.text(form, field), field.replace("_", " "), 0, _MAX_LIMIT)
        if value is not None:
            setattr(message, field, value)
            changed = True
    for field in ("rate", "key_rate"):
        label = field.replace("_", " ")
        limit = forms.number(forms.text(form, f"{field}_limit"), f"{label} limit", 0, _MAX_LIMIT)
        period_ms = forms.number(
            forms.text(form, f"{field}_period_ms"), f"{label} period (ms)", 1, 86_400_000
        )
        if limit is None:
            if period_ms is not None:
                raise forms.FormError(f"give the {label} limit with its period")
            continue
        if limit > 0 and period_ms is None:
            raise forms.FormError(f"give the {label} period with its limit")
        rate_message = getattr(message, field)
        rate_message.limit = limit
        rate_message.period.FromMilliseconds(period_ms or 1000)
        changed = True
    if not changed:
        raise forms.FormError("fill in at least one limit (0 removes one)")
    return message


def _row(queue: Any, stats: Any, throughput: Throughput) -> QueueRow:
    flow = []
    if queue.max_running:
        flow.append(f"at most {queue.max_running} running")
    if queue.key_max_running:
        flow.append(f"at most {queue.key_max_running} running per key")
    if queue.HasField("rate") and queue.rate.limit:
        flow.append(f"{rate(queue.rate)} starts")
    if queue.HasField("key_rate") and queue.key_rate.limit:
        flow.append(f"{rate(queue.key_rate)} starts per key")
    settings = f"max retries {queue.max_retries}, max interruptions {queue.max_interruptions}"
    if queue.ttl_seconds:
        settings += f", TTL {duration(queue.ttl_seconds)}"
    if isinstance(stats, GatewayError):
        return QueueRow(
            queue.name, queue.paused, {}, "", "", flow, settings, 0, stats.message
        )  # fmt: skip
    counts = {
        "PENDING": stats.pending,
        "WAITING": stats.waiting,
        "ASSIGNED": stats.assigned,
        "RUNNING": stats.running,
        "DONE": stats.done,
        "DEAD_LETTERED": stats.dead_lettered,
    }
    per_minute = throughput.per_minute(queue.name, stats.done + stats.dead_lettered)
    return QueueRow(
        name=queue.name,
        paused=queue.paused,
        counts=counts,
        oldest_pending=duration(stats.oldest_pending_age_s) if stats.pending else "",
        per_minute="" if per_minute is None else f"{per_minute:.1f}",
        flow=flow,
        settings=settings,
        total_retries=stats.total_retries,
        error="",
    )
