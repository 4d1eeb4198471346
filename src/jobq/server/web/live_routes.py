"""GET /live/events (the pages' Server-Sent Events stream) and GET /live/history (the
overview charts' points).

Both need what a page needs: a logged-in viewer (with authentication off, anyone the loopback
listener lets in). A script cannot follow a redirect to the login page, so they answer 401 with
a one-line text instead of `look`'s redirect.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from jobq.server.caller import Caller
from jobq.server.web.context import WebContext
from jobq.server.web.live import StreamsFull

__all__ = ["routes"]

_STATUS_METHOD = "/jobq.v1.AdminService/GetSystemStatus"
"""The read the overview makes: a viewer allowed it may see the live streams too."""


def routes(ctx: WebContext) -> list[BaseRoute]:
    # Samples that show other replicas' work wake the streams too (their changes never reach
    # this replica's lifecycle stream).
    ctx.history.on_activity(ctx.live.mark)

    def viewer(request: Request) -> Caller | Response:
        caller = ctx.access.caller_of(ctx.access.session(request))
        if caller is None:
            return PlainTextResponse("401 log in to the dashboard first\n", 401)
        if not ctx.gateway.authorized(caller, _STATUS_METHOD):
            return PlainTextResponse("403 this token has no read scope\n", 403)
        return caller

    async def events(request: Request) -> Response:
        who = viewer(request)
        if isinstance(who, Response):
            return who
        try:
            ctx.live.check_room()
        except StreamsFull as exc:
            return PlainTextResponse(f"503 {exc}\n", 503, headers={"Retry-After": "10"})
        return StreamingResponse(
            ctx.live.stream(),
            media_type="text/event-stream",
            headers={
                "Cache-Control": "no-store",
                # nginx and the like must pass each event on at once, not buffer the stream.
                "X-Accel-Buffering": "no",
            },
        )

    async def history(request: Request) -> Response:
        who = viewer(request)
        if isinstance(who, Response):
            return who
        return JSONResponse(ctx.history.as_json())

    return [
        Route("/live/events", events, methods=["GET"]),
        Route("/live/history", history, methods=["GET"]),
    ]
