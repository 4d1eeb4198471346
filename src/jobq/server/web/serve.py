"""Serving the dashboard inside jq-server's event loop, with uvicorn.

One process, one loop: the pages call the servicers in-process (`gateway.py`). Uvicorn normally
owns the process's signals; here jq-server does (its SIGTERM starts the graceful shutdown of
everything, the dashboard included), so the embedded server installs none. The socket is
bound by us first, so a port in use fails start-up with a clear message instead of uvicorn's
`sys.exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator, Mapping

import uvicorn
from starlette.templating import Jinja2Templates

from jobq import __version__
from jobq.config import Settings
from jobq.domain.errors import ListenError
from jobq.observability.logging_setup import get_logger
from jobq.server.authentication import Authenticator
from jobq.server.guard import MethodHandler
from jobq.server.web.access import Access
from jobq.server.web.asgi import TEMPLATES_DIR, build_asgi_app
from jobq.server.web.context import WebContext
from jobq.server.web.gateway import Gateway
from jobq.server.web.history import History
from jobq.server.web.live import LiveFeed
from jobq.server.web.sessions import SessionCodec, session_secret

__all__ = ["Dashboard", "build_dashboard"]

log = get_logger("jobq.dashboard")

_GRACEFUL_S = 3.0
"""Seconds open requests get when jq-server stops; live streams end at once."""


class _EmbeddedServer(uvicorn.Server):
    """Uvicorn without its signal handlers: jq-server's own decide when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Dashboard:
    """The dashboard's HTTP server: start() binds and serves, stop() ends it."""

    def __init__(self, ctx: WebContext, host: str, port: int, tls: tuple[str, str] | None) -> None:
        self.ctx = ctx
        self._host = host
        self._requested_port = port
        self.port: int | None = None
        config = uvicorn.Config(
            build_asgi_app(ctx),
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(_GRACEFUL_S),
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
            h11_max_incomplete_event_size=64 * 1024,
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sock = _bind(self._host, self._requested_port)
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="dashboard")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise ListenError("the dashboard stopped while starting")
            await asyncio.sleep(0.01)
        self.ctx.history.loop.start()
        log.info("dashboard serving", action="dashboard.started", port=self.port)

    async def stop(self) -> None:
        await self.ctx.live.close()  # live streams end first, or the shutdown would wait
        await self.ctx.history.loop.stop()
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, timeout=_GRACEFUL_S + 2)
        except TimeoutError:
            self._task.cancel()
        self._task = None


def build_dashboard(
    settings: Settings,
    handlers: Mapping[str, MethodHandler],
    authenticator: Authenticator,
    live: LiveFeed,
    history: History,
) -> Dashboard:
    """The dashboard of a jq-server with these settings (not started yet)."""
    # Uvicorn's own loggers: errors only (a request's stack trace stays in the server's log).
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    cfg = settings.dashboard
    tls = (settings.grpc.tls_cert, settings.grpc.tls_key) if settings.grpc.tls_cert else None
    access = Access(
        authenticator,
        SessionCodec(session_secret(cfg), cfg.session_ttl_s),
        https=tls is not None,
        listen_host=cfg.host,
    )
    ctx = WebContext(
        gateway=Gateway(handlers, authenticator),
        access=access,
        templates=Jinja2Templates(directory=TEMPLATES_DIR),
        live=live,
        history=history,
        limits=settings.limits,
        max_body_bytes=settings.grpc.max_message_bytes,
        version=__version__,
    )
    return Dashboard(ctx, cfg.host, cfg.port, tls)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = {
            errno.EADDRINUSE: "address in use (is another jq-server running on this port?)",
            errno.EADDRNOTAVAIL: "not an address of this machine",
            errno.EACCES: "permission denied (ports below 1024 need privileges)",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise ListenError(
            f"cannot listen on {host}:{port} (dashboard.host, dashboard.port): {why}"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock
