"""The process-wide client behind `@jobq.task` functions' `.delay()` and `.submit()`.

Configured once, early (`jobq.configure(server_addr=..., token_file=...)`), or, when nobody
configured it, made on first use from the environment (JQ_CTL_*) as jq-ctl would. It is a sync
`Client`, shared by every thread, so submits from many threads are batched together.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Any

from jobq.client.connection import ConnectionSettings
from jobq.client.sync_client import Client

__all__ = ["configure", "default_client", "reset_default_client"]

_lock = threading.Lock()
_options: dict[str, Any] = {}
_client: Client | None = None


def configure(
    server_addr: str | None = None,
    *,
    timeout_s: float | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    token: str | None = None,
    token_file: str | None = None,
    config_file: str | Path | None = None,
    settings: ConnectionSettings | None = None,
    **client_options: Any,
) -> Client:
    """Set up the default client (closing one made before) and return it. `client_options`
    are the other arguments of `Client` (auto_batch, linger_s, max_batch, retry).

    Raises:
        ConfigurationError: unusable settings, at once rather than at the first `.delay()`.
    """
    global _client
    options: dict[str, Any] = {
        "server_addr": server_addr,
        "timeout_s": timeout_s,
        "tls_ca": tls_ca,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "token": token,
        "token_file": token_file,
        "config_file": config_file,
        "settings": settings,
        **client_options,
    }
    client = Client(**options)
    with _lock:
        previous, _client = _client, client
        _options.clear()
        _options.update(options)
    if previous is not None:
        previous.close()
    return client


def default_client() -> Client:
    """The default client, made from the environment if `configure()` was never called."""
    global _client
    with _lock:
        if _client is None:
            _client = Client(**_options)
        return _client


def reset_default_client() -> None:
    """Close and forget the default client and its configuration (tests, forked children)."""
    global _client
    with _lock:
        previous, _client = _client, None
        _options.clear()
    if previous is not None:
        previous.close()


atexit.register(reset_default_client)
