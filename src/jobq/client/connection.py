"""Where jq-server is and how to reach it: the same settings, with the same names, as jq-ctl.

    Client()                                  # JQ_CTL_* from the environment, else defaults
    Client("jobq.internal:50051", token_file="/run/secrets/jobq", tls_ca="ca.pem")
    Client(config_file="jobq.yaml")           # its `ctl` section, then JQ_CTL_*, then arguments

Precedence, lowest first: the defaults, the `ctl` section of `config_file`, the environment
(`JQ_CTL_SERVER_ADDR`, `JQ_CTL_TIMEOUT_S`, `JQ_CTL_TLS_CA`, `JQ_CTL_TLS_CERT`, `JQ_CTL_TLS_KEY`,
`JQ_CTL_TOKEN`, `JQ_CTL_TOKEN_FILE`), and the arguments. Only the `ctl` variables are read from
the environment: an application's client does not fail over a worker's or server's variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc

from jobq.client.errors import ConfigurationError
from jobq.config import load_settings
from jobq.domain.errors import ConfigError

__all__ = ["ConnectionSettings", "call_metadata", "channel_credentials", "resolve_settings"]

ENV_PREFIX: Final = "JQ_CTL_"
CHANNEL_OPTIONS: Final = (
    # Keep the connection alive between bursts, so a wait after a quiet minute does not find a
    # connection a NAT or load balancer dropped silently.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
)


@dataclass(frozen=True)
class ConnectionSettings:
    """Resolved connection settings. `token` is the secret itself (read from `token_file` when
    that was given); `repr()` leaves it out."""

    server_addr: str = "localhost:50051"
    timeout_s: float = 10.0
    """Deadline of each unary call (a wait has its own timeout)."""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    token: str = ""

    def __repr__(self) -> str:
        token = "'***'" if self.token else "''"
        return (
            f"ConnectionSettings(server_addr={self.server_addr!r}, timeout_s={self.timeout_s!r}, "
            f"tls_ca={self.tls_ca!r}, tls_cert={self.tls_cert!r}, tls_key={self.tls_key!r}, "
            f"token={token})"
        )


def resolve_settings(
    server_addr: str | None = None,
    *,
    timeout_s: float | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    token: str | None = None,
    token_file: str | None = None,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ConnectionSettings:
    """The settings from the arguments, the environment and the config file (see the module).

    Raises:
        ConfigurationError: a bad value, both a token and a token file, an unreadable token file.
    """
    source = os.environ if env is None else env
    ctl_env = {name: value for name, value in source.items() if name.startswith(ENV_PREFIX)}
    overrides: dict[str, object] = {
        "ctl.server_addr": server_addr,
        "ctl.timeout_s": timeout_s,
        "ctl.tls_ca": tls_ca,
        "ctl.tls_cert": tls_cert,
        "ctl.tls_key": tls_key,
        "ctl.token": token,
        "ctl.token_file": token_file,
    }
    if token is not None:  # an argument beats a token file from the environment, and back
        overrides["ctl.token_file"] = token_file or ""
    elif token_file is not None:
        overrides["ctl.token"] = ""
    try:
        loaded = load_settings(
            Path(config_file) if config_file is not None else None,
            env=ctl_env,
            overrides=overrides,
        )
    except ConfigError as exc:
        raise ConfigurationError("; ".join(str(exc).splitlines())) from None
    ctl = loaded.settings.ctl
    if ctl.token and ctl.token_file:
        raise ConfigurationError(
            "give a token (token=, JQ_CTL_TOKEN or ctl.token) or a token file (token_file=, "
            "JQ_CTL_TOKEN_FILE or ctl.token_file), not both"
        )
    if bool(ctl.tls_cert) != bool(ctl.tls_key):
        raise ConfigurationError("tls_cert and tls_key must be given together (mutual TLS)")
    return ConnectionSettings(
        server_addr=ctl.server_addr,
        timeout_s=ctl.timeout_s,
        tls_ca=ctl.tls_ca,
        tls_cert=ctl.tls_cert,
        tls_key=ctl.tls_key,
        token=read_token_file(ctl.token_file) if ctl.token_file else ctl.token,
    )


def read_token_file(path: str) -> str:
    """The token in `path`, surrounding whitespace removed. Errors name the file, never what
    it holds."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(f"cannot read token file {path}: {reason}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"token file {path} is not UTF-8 text") from None
    token = text.strip()
    if not token:
        raise ConfigurationError(f"token file {path} is empty")
    if any(char.isspace() for char in token):
        raise ConfigurationError(f"token file {path} must hold the token alone")
    return token


def call_metadata(settings: ConnectionSettings) -> tuple[tuple[str, str], ...]:
    """`authorization: Bearer <token>` when there is a token. Per-call metadata rather than
    call credentials: gRPC refuses call credentials on a plain-text channel."""
    return (("authorization", f"Bearer {settings.token}"),) if settings.token else ()


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(f"cannot read {what} file {path}: {reason}") from None


def channel_credentials(settings: ConnectionSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials from the PEM files, or None for plain text (no TLS setting given).
    Without `tls_ca` the system's trusted roots verify the server."""
    if not (settings.tls_ca or settings.tls_cert or settings.tls_key):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca, "tls_ca") if settings.tls_ca else None,
        private_key=_read(settings.tls_key, "tls_key") if settings.tls_key else None,
        certificate_chain=_read(settings.tls_cert, "tls_cert") if settings.tls_cert else None,
    )


def open_channel(settings: ConnectionSettings) -> grpc.Channel:
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.insecure_channel(settings.server_addr, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(settings.server_addr, credentials, options=CHANNEL_OPTIONS)


def open_aio_channel(settings: ConnectionSettings) -> grpc.aio.Channel:
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(settings.server_addr, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(settings.server_addr, credentials, options=CHANNEL_OPTIONS)
