"""The HTTP/JSON API under /api/v1."""

from __future__ import annotations

from starlette.routing import BaseRoute

from jobq.server.web.context import WebContext

__all__ = ["routes"]


def routes(ctx: WebContext) -> list[BaseRoute]:
    return []
