"""The dashboard's pages, one module each; every module exports `routes(ctx)`."""

from __future__ import annotations

from starlette.routing import BaseRoute

from jobq.server.web.context import WebContext
from jobq.server.web.pages import job_detail, jobs, overview, queues, workers

__all__ = ["routes"]


def routes(ctx: WebContext) -> list[BaseRoute]:
    return [
        *overview.routes(ctx),
        *queues.routes(ctx),
        *jobs.routes(ctx),
        *job_detail.routes(ctx),
        *workers.routes(ctx),
    ]
