"""The dashboard's ASGI application: login, pages, /api/v1, live streams and static assets."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from jobq.server.web import api, live_routes, login, pages
from jobq.server.web.context import WebContext
from jobq.server.web.security import SecurityHeaders

__all__ = ["STATIC_DIR", "TEMPLATES_DIR", "build_asgi_app"]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"


def build_asgi_app(ctx: WebContext) -> Starlette:
    routes: list[BaseRoute] = [
        *login.routes(ctx),
        *api.routes(ctx),
        *pages.routes(ctx),
        *live_routes.routes(ctx),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"error": {"code": _code(exc.status_code), "message": exc.detail}},
                status_code=exc.status_code,
            )
        return PlainTextResponse(f"{exc.status_code} {exc.detail}\n", exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        # Never a stack trace to the client; the log has it (uvicorn's error logger).
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"error": {"code": "INTERNAL", "message": "internal error"}}, status_code=500
            )
        return PlainTextResponse("500 internal error\n", 500)

    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders, access=ctx.access)],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


def _code(status: int) -> str:
    return {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        413: "RESOURCE_EXHAUSTED",
        415: "INVALID_ARGUMENT",
    }.get(status, "UNKNOWN")
