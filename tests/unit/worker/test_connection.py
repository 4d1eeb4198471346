"""The worker's credentials for jq-server: token, token file and TLS files, read at start-up."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from jobq.config import WorkerSettings
from jobq.domain.errors import ConfigError
from jobq.worker.connection import PLAINTEXT, WorkerCredentials, load_credentials

SECRET = "jq_s3cret-token.value"


def settings(**fields: Any) -> WorkerSettings:
    return WorkerSettings(**fields)


def test_no_settings_mean_plaintext_without_a_token() -> None:
    credentials = load_credentials(settings())
    assert credentials == PLAINTEXT
    assert not credentials.tls
    assert not credentials.authenticated
    assert credentials.metadata() == ()


def test_the_token_goes_into_every_calls_metadata_as_a_bearer_token() -> None:
    credentials = load_credentials(settings(token=SECRET))
    assert credentials.authenticated
    assert credentials.metadata() == (("authorization", f"Bearer {SECRET}"),)


def test_the_token_file_is_read_with_its_whitespace_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {SECRET}\n\n")
    assert load_credentials(settings(token_file=str(path))).token == SECRET


def test_token_and_token_file_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET)
    with pytest.raises(ConfigError, match=r"worker\.token or worker\.token_file, not both"):
        load_credentials(settings(token="other", token_file=str(path)))


def test_an_unreadable_or_empty_token_file_names_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError, match=re.escape(f"worker.token_file: cannot read {missing}: ")):
        load_credentials(settings(token_file=str(missing)))
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    with pytest.raises(ConfigError, match=re.escape(f"worker.token_file: {empty} is empty")):
        load_credentials(settings(token_file=str(empty)))


def test_a_token_that_cannot_be_metadata_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("two words-s3cret")
    with pytest.raises(ConfigError) as raised:
        load_credentials(settings(token_file=str(path)))
    assert "s3cret" not in str(raised.value)
    assert str(raised.value).startswith("worker.token_file: ")


def test_the_token_never_shows_in_the_repr() -> None:
    credentials = load_credentials(settings(token=SECRET))
    assert SECRET not in repr(credentials)
    assert SECRET not in repr(WorkerCredentials(token=SECRET))


def test_a_ca_alone_means_tls_without_a_client_certificate(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"CA PEM")
    credentials = load_credentials(settings(tls_ca=str(ca)))
    assert credentials.tls
    assert credentials.root_certificates == b"CA PEM"
    assert credentials.certificate_chain is None
    assert not credentials.authenticated


def test_a_client_certificate_needs_its_key_and_the_reverse(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"CERT")
    key.write_bytes(b"KEY")
    for fields in ({"tls_cert": str(cert)}, {"tls_key": str(key)}):
        with pytest.raises(ConfigError, match=r"worker\.tls_cert and worker\.tls_key must be set"):
            load_credentials(settings(**fields))
    credentials = load_credentials(settings(tls_cert=str(cert), tls_key=str(key)))
    assert credentials.tls  # the system's roots verify the server
    assert credentials.root_certificates is None
    assert (credentials.certificate_chain, credentials.private_key) == (b"CERT", b"KEY")
    assert credentials.authenticated


def test_an_unreadable_tls_file_names_its_setting(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(b"KEY")
    with pytest.raises(ConfigError, match=r"^worker\.tls_cert: cannot read "):
        load_credentials(settings(tls_cert=str(tmp_path / "nope.pem"), tls_key=str(key)))
    with pytest.raises(ConfigError, match=r"^worker\.tls_ca: cannot read "):
        load_credentials(settings(tls_ca=str(tmp_path / "nope.pem")))
