"""What every dashboard page does around its content: who is looking, rendering, actions.

A page handler starts with `viewer = await look(ctx, request)`: a `Viewer`, or a redirect to
the login page to return as it is. It renders with `render(...)`, which puts the viewer, its
CSRF token and a one-time notice into the template and refreshes the session cookie.

An action (a POST form) starts with `form = await action(ctx, request, viewer)`: the form's
fields once the CSRF token checked out, or a 403 page to return. It ends with `done(...)`, a
303 redirect back to a page with a notice ("Queue paused") or an error ("...: not found"),
which that page shows once (post/redirect/get: a reload repeats nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobq.server.caller import Caller
from jobq.server.web.access import CSRF_FIELD
from jobq.server.web.context import WebContext
from jobq.server.web.gateway import GatewayError
from jobq.server.web.sessions import Session

__all__ = ["Viewer", "act", "action", "done", "look", "render", "safe_next"]

FLASH_COOKIE = "jq_flash"
_MAX_FORM_BYTES = 64 * 1024
"""Dashboard forms are small (ids, names, numbers); a bigger body is refused unread."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person looking at a page: their session, caller (scopes) and CSRF token."""

    session: Session
    caller: Caller
    csrf_token: str
    new_session: bool

    @property
    def name(self) -> str:
        return self.caller.label


async def look(ctx: WebContext, request: Request) -> Viewer | Response:
    """The viewer of this request, or the redirect to /login (a fresh session for a browser
    without one: with authentication off, that is all it needs)."""
    session = ctx.access.session(request)
    new_session = session is None
    if session is None:
        session = ctx.access.sessions.new()
    caller = ctx.access.caller_of(session)
    if caller is None:
        target = _return_to(request)
        response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        if new_session:
            ctx.access.set_cookie(response, session)
        return response
    return Viewer(session, caller, ctx.access.sessions.csrf_token(session), new_session)


def _return_to(request: Request) -> str:
    """Where a login should lead back to: this page; for a form posted by a logged-out
    browser, the page the form was on (its Referer on this site), since the form's own URL
    answers only POST."""
    if request.method in ("GET", "HEAD"):
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc == request.headers.get("host"):
        return safe_next(referer.path + (f"?{referer.query}" if referer.query else ""))
    return "/"


def render(
    ctx: WebContext,
    request: Request,
    viewer: Viewer | None,
    template: str,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    """The page `template` with `values`, the viewer, the CSRF token and any notice."""
    flash = ctx.access.sessions.unseal(request.cookies.get(FLASH_COOKIE))
    notice = flash if isinstance(flash, dict) else {}
    response = ctx.templates.TemplateResponse(
        request,
        template,
        {
            "viewer": viewer,
            "csrf_field": CSRF_FIELD,
            "csrf_token": viewer.csrf_token if viewer else "",
            "authentication": ctx.access.authentication,
            "can": (lambda method: ctx.gateway.authorized(viewer.caller, method))
            if viewer
            else (lambda method: False),
            "notice": str(notice.get("notice", ""))[:500],
            "error": str(notice.get("error", ""))[:500],
            "version": ctx.version,
            **values,
        },
        status_code=status_code,
    )
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, samesite="strict")
    if viewer is not None and viewer.new_session:
        ctx.access.set_cookie(response, viewer.session)
    return response


async def action(ctx: WebContext, request: Request, viewer: Viewer) -> FormData | Response:
    """The fields of a dashboard form, once its CSRF token matches the session; else 403."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit() or int(length) > _MAX_FORM_BYTES:
        return render(
            ctx, request, viewer, "error.html", 413, message="the form is too large or unsized"
        )
    form = await request.form(max_files=0, max_fields=200)
    token = form.get(CSRF_FIELD)
    if not ctx.access.sessions.csrf_ok(viewer.session, token if isinstance(token, str) else None):
        return render(
            ctx,
            request,
            viewer,
            "error.html",
            403,
            message="this form has expired or did not come from this dashboard: "
            "reload the page and try again",
        )
    return form


async def act(ctx: WebContext, request: Request) -> tuple[Viewer, FormData] | Response:
    """`look` then `action`, the start of every form handler: the viewer and the form's
    fields, or the response to return as it is (the login redirect, 403, 413)."""
    viewer = await look(ctx, request)
    if isinstance(viewer, Response):
        return viewer
    form = await action(ctx, request, viewer)
    if isinstance(form, Response):
        return form
    return viewer, form


def done(
    ctx: WebContext, to: str, *, notice: str = "", error: GatewayError | str | None = None
) -> RedirectResponse:
    """Back to the page `to` (a local path) after an action, with a one-time notice."""
    response = RedirectResponse(safe_next(to), status_code=303)
    message = error.message if isinstance(error, GatewayError) else (error or "")
    flash = {"notice": notice[:300], "error": message[:300]}
    response.set_cookie(
        FLASH_COOKIE,
        ctx.access.sessions.seal(flash),
        max_age=60,
        path="/",
        httponly=True,
        samesite="strict",
        secure=ctx.access.https,
    )
    return response


def safe_next(target: str | None, default: str = "/") -> str:
    """`target` if it is a path on this site; `default` for anything else (open redirects:
    `//evil.example`, `https://...`, `/\\evil`)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
        or len(target) > 2000
    ):
        return default
    return target
