"""The overview page: system status as cards, and the last hour's activity as two live charts.

The status is GetSystemStatus, called as the viewer (its scope check included). The charts'
points come from GET /live/history (live_routes.py, sampled by history.py); static/overview.js
draws them with the vendored uPlot and appends points as `change` events arrive (live.js). The
cards are `data-live-region`s, so live.js refreshes them at the coalesced rate.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from jobq.rpc._gen import admin_service_pb2 as admin_pb
from jobq.server.caller import Caller
from jobq.server.web.context import WebContext
from jobq.server.web.gateway import GatewayError
from jobq.server.web.page import look, render

__all__ = ["routes"]

_STATUS = "/jobq.v1.AdminService/GetSystemStatus"
_JOB_STATUSES = ("PENDING", "WAITING", "ASSIGNED", "RUNNING", "FAILED", "DONE", "DEAD_LETTERED")
_WORKER_STATUSES = ("ONLINE", "DRAINING", "SUSPECT", "OFFLINE")
_STATES = {
    admin_pb.COMPONENT_STATE_HEALTHY: "healthy",
    admin_pb.COMPONENT_STATE_UNHEALTHY: "unhealthy",
    admin_pb.COMPONENT_STATE_DISABLED: "disabled",
    admin_pb.COMPONENT_STATE_DEGRADED: "degraded",
}


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    state: str
    detail: str


class SharedStatus:
    """GetSystemStatus shared by every overview request for up to `max_age_s`.

    Its job counts are a count over the whole jobs table; every open overview refetches at the
    live rate (up to 2/s), so without this N open pages would run it 2N times a second during
    a drain. With it: at most once per `max_age_s` per replica, however many pages are open.
    The answer is the same for every caller; each request's own scope is checked first."""

    def __init__(self, max_age_s: float = 1.0) -> None:
        self._max_age_s = max_age_s
        self._lock = asyncio.Lock()
        self._at = 0.0
        self._status: admin_pb.GetSystemStatusResponse | None = None

    async def get(self, ctx: WebContext, caller: Caller) -> admin_pb.GetSystemStatusResponse:
        async with self._lock:  # one call in flight; the others then share its answer
            now = time.monotonic()
            if self._status is None or now - self._at >= self._max_age_s:
                status: admin_pb.GetSystemStatusResponse = await ctx.gateway.call(
                    _STATUS, admin_pb.GetSystemStatusRequest(), caller
                )
                self._status, self._at = status, time.monotonic()
            return self._status


def routes(ctx: WebContext) -> list[BaseRoute]:
    shared = SharedStatus()

    async def overview(request: Request) -> Response:
        viewer = await look(ctx, request)
        if isinstance(viewer, Response):
            return viewer
        if not ctx.gateway.authorized(viewer.caller, _STATUS):
            message = "this token may not see the system status (it needs the read scope)"
            return render(ctx, request, viewer, "error.html", 403, message=message)
        try:
            status = await shared.get(ctx, viewer.caller)
        except GatewayError as exc:
            return render(ctx, request, viewer, "error.html", exc.http_status, message=exc.message)
        jobs = dict(status.jobs_by_status)
        workers = dict(status.workers_by_status)
        return render(
            ctx,
            request,
            viewer,
            "overview.html",
            nav="overview",
            server_version=status.version,
            uptime=_duration(status.uptime.seconds),
            components=[
                Component(c.name, _STATES.get(c.state, "unknown"), c.detail)
                for c in status.components
            ],
            jobs=[(name, jobs.get(name, 0)) for name in _JOB_STATUSES]
            + sorted((k, v) for k, v in jobs.items() if k not in _JOB_STATUSES),
            workers=[(name, workers.get(name, 0)) for name in _WORKER_STATUSES]
            + sorted((k, v) for k, v in workers.items() if k not in _WORKER_STATUSES),
            history_interval_s=ctx.history.interval_s,
        )

    return [Route("/", overview, methods=["GET"])]


def _duration(seconds: int) -> str:
    """`3d 4h`, `2h 5m`, `4m 10s`: the two largest units."""
    days, rest = divmod(max(seconds, 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
