"""Which of jq-server's listeners may open, and what the operator is told about them.

The rule itself (`config/exposure.py`): without authentication every listener stays on
loopback unless `--insecure`. Checked by `jq-server` before anything starts (a configuration
mistake, exit 2) and again by `ServerApp.start` for embedders.
"""

from __future__ import annotations

from jobq.config import Settings
from jobq.config.exposure import exposure_problems, is_loopback
from jobq.observability.logging_setup import get_logger
from jobq.server.authentication import Authenticator

__all__ = ["announce_exposure", "listener_problems"]

log = get_logger("jobq.server")


def listener_problems(settings: Settings) -> list[str]:
    """Why jq-server must not start with these listeners: one line per address reachable from
    the network while no authentication is configured (and --insecure was not given)."""
    listeners = [("grpc.host", settings.grpc.host)]
    listeners += [("health.host", settings.health.host)] if settings.health.port else []
    listeners += [("metrics.host", settings.metrics.host)] if settings.metrics.port else []
    listeners += [("dashboard.host", settings.dashboard.host)] if settings.dashboard.port else []
    return exposure_problems(
        listeners,
        authenticated=Authenticator.from_settings(settings.auth, settings.grpc).enabled,
        insecure=settings.grpc.insecure,
    )


def announce_exposure(settings: Settings, authenticator: Authenticator) -> None:
    """One warning when authentication is off, or when tokens would cross a network in clear."""
    if not authenticator.enabled:
        log.warning(
            "authentication is off: every caller may do everything; configure auth.tokens "
            "or grpc.tls_client_ca before exposing jq-server"
            + ("" if settings.grpc.insecure else " (listening on loopback only)"),
            action="auth.disabled",
        )
    elif not settings.grpc.tls_cert and not is_loopback(settings.grpc.host):
        log.warning(
            "bearer tokens travel in plain text: set grpc.tls_cert and grpc.tls_key",
            action="auth.plaintext",
        )
