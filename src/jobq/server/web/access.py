"""Who is asking, for every dashboard page and /api/v1 call, and whether a change may go ahead.

Pages: the `jq_session` cookie (`sessions.py`) names the caller; without a login (and with
authentication on) a page redirects to /login. API: an `Authorization: Bearer <token>` header,
checked like a gRPC call's; or the dashboard's own session cookie, which for anything but a
read must come with the session's CSRF token in `X-CSRF-Token`.

With authentication off (loopback only) every caller is ANONYMOUS, and two browser attacks on
a loopback port stay shut: a page of another site posting to it (a change needs a CSRF token,
or a JSON body with no cross-site Origin, which a cross-site form cannot send and a cross-site
fetch cannot send without a CORS preflight we never answer), and DNS rebinding (the Host header
must name this machine).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from jobq.domain.errors import Unauthenticated
from jobq.server.authentication import Authenticator
from jobq.server.caller import ANONYMOUS, Caller
from jobq.server.web.sessions import COOKIE, Session, SessionCodec

__all__ = ["CSRF_FIELD", "CSRF_HEADER", "Access", "ApiRefusal"]

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


class ApiRefusal(Exception):
    """An API request refused before any RPC: 401 (no or bad credential) or 403."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Access:
    authenticator: Authenticator
    sessions: SessionCodec
    https: bool
    listen_host: str

    @property
    def authentication(self) -> bool:
        return self.authenticator.enabled

    # --- sessions ------------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        return self.sessions.decode(request.cookies.get(COOKIE))

    def caller_of(self, session: Session | None) -> Caller | None:
        """The caller a session stands for: ANONYMOUS with authentication off; the token's
        caller after a login (None once that token is no longer configured); else None."""
        if not self.authenticator.enabled:
            return ANONYMOUS
        if session is None or not session.token_digest:
            return None
        return self.authenticator.by_digest(session.token_digest)

    def login(self, token: str) -> tuple[Caller, Session]:
        """Check `token` as the gRPC API would; a new session for it. Raises Unauthenticated."""
        from jobq.domain.tokens import token_digest

        caller = self.authenticator.authenticate(f"Bearer {token}", None)
        digest = token_digest(token.strip()) if self.authenticator.enabled else ""
        return caller, self.sessions.new(digest)

    def set_cookie(self, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.sessions.encode(session),
            max_age=int(self.sessions.ttl_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.https,
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path="/", httponly=True, samesite="strict", secure=self.https
        )

    # --- API -----------------------------------------------------------------------------

    def api_caller(self, request: Request) -> Caller:
        """The caller of an /api/v1 request, or ApiRefusal."""
        authorization = request.headers.get("authorization")
        if authorization is not None:
            try:
                return self.authenticator.authenticate(authorization, None)
            except Unauthenticated as exc:
                raise ApiRefusal(401, "UNAUTHENTICATED", str(exc)) from None
        session = self.session(request)
        if session is not None and (session.token_digest or not self.authentication):
            caller = self.caller_of(session)
            if caller is None:
                raise ApiRefusal(401, "UNAUTHENTICATED", "the dashboard login has ended")
            if request.method not in _SAFE_METHODS and not self.sessions.csrf_ok(
                session, request.headers.get(CSRF_HEADER)
            ):
                raise ApiRefusal(
                    403, "PERMISSION_DENIED", "missing or wrong X-CSRF-Token for this session"
                )
            return caller
        if self.authentication:
            raise ApiRefusal(
                401,
                "UNAUTHENTICATED",
                "missing credential: send 'Authorization: Bearer <token>'",
            )
        if request.method not in _SAFE_METHODS and self.cross_site(request):
            raise ApiRefusal(403, "PERMISSION_DENIED", "cross-site request refused")
        return ANONYMOUS

    def cross_site(self, request: Request) -> bool:
        """True when the browser says the request comes from another site."""
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return True
        origin = request.headers.get("origin")
        if origin is None:
            return False
        return urlsplit(origin).netloc != request.headers.get("host", "")

    def host_allowed(self, host_header: str | None) -> bool:
        """DNS rebinding guard with authentication off: the Host must name this machine (or
        the configured listen address). With authentication on, any Host is fine."""
        if self.authentication:
            return True
        if not host_header:
            return False
        host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        if host_header.startswith("[") and "]" in host_header:
            host = host_header[: host_header.index("]") + 1]
        return host.lower() in _LOOPBACK_HOSTS or host == self.listen_host
