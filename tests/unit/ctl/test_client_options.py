"""How jq-ctl connects: the bearer token's metadata and the TLS credentials."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from jobq.ctl.client import ConnectionOptions, call_metadata, channel_credentials
from jobq.ctl.errors import CtlError


def options(**fields: str) -> ConnectionOptions:
    return ConnectionOptions(server_addr="localhost:50051", timeout_s=5, **fields)


def test_a_token_is_sent_as_a_bearer_authorization_header() -> None:
    assert call_metadata("s3cr3t") == (("authorization", "Bearer s3cr3t"),)


def test_no_token_no_metadata() -> None:
    assert call_metadata("") == ()


def test_no_tls_option_means_a_plain_channel() -> None:
    assert channel_credentials(options()) is None


def test_tls_files_build_channel_credentials(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    credentials = channel_credentials(
        options(
            tls_ca=str(tmp_path / "ca.pem"),
            tls_cert=str(tmp_path / "cert.pem"),
            tls_key=str(tmp_path / "key.pem"),
        )
    )
    assert isinstance(credentials, grpc.ChannelCredentials)
    assert isinstance(
        channel_credentials(options(tls_ca=str(tmp_path / "ca.pem"))), grpc.ChannelCredentials
    )


def test_a_missing_tls_file_is_a_one_line_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(CtlError) as caught:
        channel_credentials(options(tls_ca=str(missing)))
    assert str(caught.value) == f"cannot read --tls-ca file {missing}: No such file or directory"
    assert caught.value.exit_code == 2


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(CtlError, match="--tls-cert and --tls-key must be given together"):
        channel_credentials(options(tls_cert=str(cert)))
