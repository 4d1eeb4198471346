"""Headers every dashboard and API response carries, and the requests refused before routing.

The Content-Security-Policy allows scripts, styles, images and connections from this origin
only: no inline script or style, no eval, no framing (`frame-ancestors 'none'`, and
X-Frame-Options for old browsers), forms post only here. HTML and JSON are never cached
(they carry job data); the vendored assets under /static are, for an hour.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobq.server.web.access import Access

__all__ = ["CONTENT_SECURITY_POLICY", "SecurityHeaders"]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)

_COMMON = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000")
_NO_STORE = (b"cache-control", b"no-store")
_STATIC_CACHE = (b"cache-control", b"public, max-age=3600")


class SecurityHeaders:
    """ASGI middleware: adds the headers above; answers 421 to a Host that does not name this
    machine while authentication is off (DNS rebinding), before any route runs."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access
        self.headers = [*_COMMON, *([_HSTS] if access.https else [])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        static = str(scope.get("path", "")).startswith("/static/")
        extra = [*self.headers, _STATIC_CACHE if static else _NO_STORE]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in extra}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *extra]}
            await send(message)

        if not self.access.host_allowed(host):
            body = b"misdirected request: this jq-server answers to localhost only\n"
            await with_headers(
                {
                    "type": "http.response.start",
                    "status": 421,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, with_headers)
