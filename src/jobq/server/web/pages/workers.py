"""The workers page."""

from __future__ import annotations

from starlette.routing import BaseRoute

from jobq.server.web.context import WebContext

__all__ = ["routes"]


def routes(ctx: WebContext) -> list[BaseRoute]:
    return []
