"""/login and /logout: a token in, a session cookie out (`sessions.py`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from jobq.domain.errors import Unauthenticated
from jobq.observability.logging_setup import get_logger
from jobq.server.caller import Caller
from jobq.server.web.context import WebContext
from jobq.server.web.page import Viewer, act, action, render, safe_next
from jobq.server.web.sessions import Session

__all__ = ["routes"]

log = get_logger("jobq.dashboard")

_MAX_TOKEN_CHARS = 1024
_NOBODY = Caller("login", "anonymous", frozenset())


def routes(ctx: WebContext) -> list[BaseRoute]:
    async def login_page(request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if not ctx.access.authentication:  # nothing to log in to: every caller may look
            return RedirectResponse(target, status_code=303)
        session = ctx.access.session(request) or ctx.access.sessions.new()
        viewer = _pre_login(ctx, session, request)
        return render(ctx, request, viewer, "login.html", next=target)

    async def login(request: Request) -> Response:
        session = ctx.access.session(request)
        if session is None:  # no cookie yet: the form cannot carry a matching CSRF token
            return RedirectResponse("/login", status_code=303)
        viewer = _pre_login(ctx, session, request)
        form = await action(ctx, request, viewer)
        if isinstance(form, Response):
            return form
        target = safe_next(str(form.get("next") or "/"))
        token = form.get("token")
        if not isinstance(token, str) or not token.strip() or len(token) > _MAX_TOKEN_CHARS:
            return render(
                ctx, request, viewer, "login.html", 400, next=target, failed="enter a token"
            )
        try:
            caller, fresh = ctx.access.login(token.strip())
        except Unauthenticated:
            log.warning("dashboard login refused", action="dashboard.login_refused")
            return render(
                ctx,
                request,
                viewer,
                "login.html",
                401,
                next=target,
                failed="that token is not one of this server's tokens",
            )
        log.info("dashboard login", action="dashboard.login", caller=caller.label)
        response = RedirectResponse(target, status_code=303)
        ctx.access.set_cookie(response, fresh)
        return response

    async def logout(request: Request) -> Response:
        acted = await act(ctx, request)
        if isinstance(acted, Response):
            return acted
        response = RedirectResponse("/login" if ctx.access.authentication else "/", 303)
        ctx.access.clear_cookie(response)
        return response

    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


def _pre_login(ctx: WebContext, session: Session, request: Request) -> Viewer:
    """The viewer of the login page before a login: a session for its CSRF token only, and a
    caller with no scope."""
    fresh = ctx.access.session(request) is None
    return Viewer(session, _NOBODY, ctx.access.sessions.csrf_token(session), fresh)
