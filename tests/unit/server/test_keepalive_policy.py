"""The server's keepalive policy admits the SDK's pings: a gRPC server answers pings it deems
too frequent with GOAWAY "too_many_pings", which ends every call on the connection (the submit
stream, waits). The two sides are configured in different modules; this ties them together."""

from __future__ import annotations

from jobq.client.connection import CHANNEL_OPTIONS
from jobq.config import load_settings
from jobq.server.grpc_server import server_options


def test_the_server_accepts_the_pings_the_sdk_sends() -> None:
    client = dict(CHANNEL_OPTIONS)
    server = dict(server_options(load_settings(None, env={}).settings.grpc))
    # The SDK pings between calls too, so the server must allow pings without calls ...
    assert client["grpc.keepalive_permit_without_calls"] == 1
    assert server["grpc.keepalive_permit_without_calls"] == 1
    # ... and no more often than the server accepts them without data.
    assert (
        server["grpc.http2.min_recv_ping_interval_without_data_ms"]
        <= (client["grpc.keepalive_time_ms"])
    )
