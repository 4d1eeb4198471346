"""The web dashboard and HTTP/JSON API of jq-server (`dashboard.*`).

Off by default (port 0). When on, it follows the listeners' rule (`config/exposure.py`): a
non-loopback address needs authentication or --insecure. It authenticates with the same
tokens as the gRPC API; it serves HTTPS with grpc.tls_cert/grpc.tls_key when they are set.
"""

from __future__ import annotations

from pydantic import Field

from jobq.config.section import OptionalPort, Section

__all__ = ["DashboardSettings"]


class DashboardSettings(Section):
    """The dashboard's listener and its login sessions."""

    host: str = Field(
        "127.0.0.1",
        description="Address of the dashboard and /api/v1. A non-loopback address needs "
        "authentication (auth.tokens) or grpc.insecure.",
    )
    port: OptionalPort = Field(
        0, description="Port of the dashboard and the HTTP/JSON API; 0 (default) turns it off."
    )
    session_secret: str = Field(
        "",
        repr=False,
        description="Key that signs login cookies (32+ characters). Empty: a random key per "
        "start (logins end when jq-server restarts); give every replica behind one address "
        "the same key.",
    )
    session_secret_file: str = Field(
        "", description="File holding dashboard.session_secret (instead of the setting)."
    )
    session_ttl_s: float = Field(
        43200.0, gt=0, le=2592000, description="Seconds a dashboard login lasts (at most 30 days)."
    )
