"""What every dashboard page, API route and live stream is built with."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.templating import Jinja2Templates

from jobq.config import LimitsSettings
from jobq.server.web.access import Access
from jobq.server.web.gateway import Gateway
from jobq.server.web.history import History
from jobq.server.web.live import LiveFeed

__all__ = ["WebContext"]


@dataclass(frozen=True, slots=True)
class WebContext:
    gateway: Gateway
    """Every read and action: the gRPC servicers' own methods, as the caller, scope-checked."""
    access: Access
    """Sessions, logins, CSRF, and who an API request comes from."""
    templates: Jinja2Templates
    live: LiveFeed
    """Coalesced change signals from this replica's lifecycle stream, for Server-Sent Events."""
    history: History
    """Jobs started/finished/failed per interval and queue depth over the last hour."""
    limits: LimitsSettings
    max_body_bytes: int
    """Largest request body accepted (grpc.max_message_bytes): bigger ones get 413 unread."""
    version: str
