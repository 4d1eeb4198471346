"""The workers page: every worker's state, queues, slots in use, last heartbeat and the jobs
it runs; drain and shut down."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb
from jobq.server.web.context import WebContext
from jobq.server.web.gateway import GatewayError
from jobq.server.web.page import Viewer, act, done, look, render
from jobq.server.web.pages import forms
from jobq.server.web.pages.formatting import ago, iso, when, worker_status

__all__ = ["routes"]

_ADMIN = "/jobq.v1.AdminService"
WORKER_STATUSES = ("ONLINE", "DRAINING", "OFFLINE")
_JOBS_SHOWN = 5
"""Running jobs listed per worker; the count says how many more."""
_RUNNING_SCANNED = 100
"""Running jobs read to find each worker's (ListJobs' largest page)."""
_LIVE = frozenset({"ONLINE", "DRAINING"})


@dataclass(frozen=True, slots=True)
class WorkerRow:
    worker_id: str
    hostname: str
    status: str
    queues: list[str]
    active: int
    concurrency: int
    heartbeat: str
    heartbeat_ago: str
    registered: str
    jobs: list[str]
    more_jobs: int


def routes(ctx: WebContext) -> list[BaseRoute]:
    async def workers_page(request: Request) -> Response:
        viewer = await look(ctx, request)
        if isinstance(viewer, Response):
            return viewer
        status = request.query_params.get("status", "").strip().upper()
        if status and status not in WORKER_STATUSES:
            return _page(
                ctx, request, viewer, [], "",
                f"unknown status {status[:30]!r}: choose one of {', '.join(WORKER_STATUSES)}",
                400,
            )  # fmt: skip
        message = apb.ListWorkersRequest()
        if status:
            message.status = cast(
                cpb.WorkerStatus, cpb.WorkerStatus.Value(f"WORKER_STATUS_{status}")
            )
        try:
            reply = await ctx.gateway.call(f"{_ADMIN}/ListWorkers", message, viewer.caller)
        except GatewayError as exc:
            return _page(ctx, request, viewer, [], status, exc.message, exc.http_status)
        running = await _running_jobs(ctx, viewer)
        rows = [_row(worker, running.get(worker.worker_id, [])) for worker in reply.workers]
        # Live ones first (what an operator acts on), then by name.
        rows.sort(key=lambda row: (row.status not in _LIVE, row.hostname, row.worker_id))
        return _page(ctx, request, viewer, rows, status, "", 200)

    async def worker_action(request: Request, verb: str) -> Response:
        acted = await act(ctx, request)
        if isinstance(acted, Response):
            return acted
        viewer, form = acted
        try:
            worker_id = forms.uuid_text(forms.text(form, "worker_id", max_chars=100), "worker id")
        except forms.FormError as exc:
            return done(ctx, "/workers", error=f"Nothing done: {exc}")
        past = "drained" if verb == "drain" else "shut down"
        request_message: Any = (
            apb.DrainWorkerRequest(worker_id=worker_id)
            if verb == "drain"
            else apb.ShutdownWorkerRequest(worker_id=worker_id)
        )
        method = "DrainWorker" if verb == "drain" else "ShutdownWorker"
        try:
            await ctx.gateway.call(f"{_ADMIN}/{method}", request_message, viewer.caller)
        except GatewayError as exc:
            return done(ctx, "/workers", error=f"Worker {worker_id} not {past}: {exc.message}")
        if verb == "drain":
            notice = f"Worker {worker_id} is draining: it finishes its jobs and takes no more"
        else:
            notice = f"Worker {worker_id} was asked to shut down at its next heartbeat"
        return done(ctx, "/workers", notice=notice)

    async def drain(request: Request) -> Response:
        return await worker_action(request, "drain")

    async def shutdown(request: Request) -> Response:
        return await worker_action(request, "shutdown")

    return [
        Route("/workers", workers_page, methods=["GET"]),
        Route("/workers/drain", drain, methods=["POST"]),
        Route("/workers/shutdown", shutdown, methods=["POST"]),
    ]


async def _running_jobs(ctx: WebContext, viewer: Viewer) -> dict[str, list[str]]:
    """Worker id → ids of the RUNNING jobs it holds (of the newest 100 running jobs)."""
    try:
        reply = await ctx.gateway.call(
            "/jobq.v1.JobService/ListJobs",
            jpb.ListJobsRequest(status=cpb.JOB_STATUS_RUNNING, limit=_RUNNING_SCANNED),
            viewer.caller,
        )
    except GatewayError:
        return {}  # the table still shows the counts the workers report
    by_worker: dict[str, list[str]] = defaultdict(list)
    for job in reply.jobs:
        if job.worker_id:
            by_worker[job.worker_id].append(job.job_id)
    return by_worker


def _row(worker: Any, jobs: list[str]) -> WorkerRow:
    heartbeat = when(worker.last_heartbeat, worker.HasField("last_heartbeat"))
    registered = when(worker.registered_at, worker.HasField("registered_at"))
    return WorkerRow(
        worker_id=worker.worker_id,
        hostname=worker.hostname,
        status=worker_status(worker.status),
        queues=list(worker.queues),
        active=worker.active_job_count,
        concurrency=worker.concurrency,
        heartbeat=iso(heartbeat),
        heartbeat_ago=ago(heartbeat),
        registered=iso(registered),
        jobs=jobs[:_JOBS_SHOWN],
        more_jobs=max(0, len(jobs) - _JOBS_SHOWN),
    )


def _page(
    ctx: WebContext,
    request: Request,
    viewer: Viewer,
    rows: list[WorkerRow],
    status: str,
    load_error: str,
    status_code: int,
) -> Response:
    return render(
        ctx, request, viewer, "workers.html", status_code, nav="workers", rows=rows,
        status=status, statuses=WORKER_STATUSES, load_error=load_error, live=_LIVE,
    )  # fmt: skip
