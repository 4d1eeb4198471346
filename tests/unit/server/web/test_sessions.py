"""Login cookies and CSRF tokens: signed, expiring, bound to their session, never forgeable."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobq.config import DashboardSettings
from jobq.domain.errors import ConfigError
from jobq.server.web.sessions import SessionCodec, session_secret

KEY = b"k" * 32


def test_a_session_survives_its_cookie_and_ends_at_its_expiry() -> None:
    codec = SessionCodec(KEY, ttl_s=60)
    session = codec.new("ab" * 32, now=1000.0)
    cookie = codec.encode(session)
    assert codec.decode(cookie, now=1059.0) == session
    assert codec.decode(cookie, now=1060.0) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"),  # signature changed
        lambda c: "x" + c,  # payload changed
        lambda c: c.replace(".", ""),  # no signature
        lambda c: c + ".more",
        lambda c: "",
        lambda c: "a" * 600 + "." + "b",  # over-long
    ],
)
def test_a_tampered_cookie_is_no_session(tamper: object) -> None:
    codec = SessionCodec(KEY, ttl_s=60)
    cookie = codec.encode(codec.new("ab" * 32))
    assert callable(tamper)
    assert codec.decode(tamper(cookie)) is None


def test_a_cookie_signed_under_another_key_is_no_session() -> None:
    cookie = SessionCodec(b"other" * 8, ttl_s=60).encode(SessionCodec(KEY, 60).new("cd" * 32))
    assert SessionCodec(KEY, ttl_s=60).decode(cookie) is None


def test_csrf_tokens_are_bound_to_their_session() -> None:
    codec = SessionCodec(KEY, ttl_s=60)
    one, two = codec.new(), codec.new()
    assert one.sid != two.sid
    assert codec.csrf_ok(one, codec.csrf_token(one))
    assert not codec.csrf_ok(one, codec.csrf_token(two))
    assert not codec.csrf_ok(one, None)
    assert not codec.csrf_ok(one, "")
    assert not codec.csrf_ok(None, codec.csrf_token(one))
    assert not codec.csrf_ok(one, codec.csrf_token(one) + "0" * 200)


def test_sealed_values_cannot_be_forged() -> None:
    codec = SessionCodec(KEY, ttl_s=60)
    sealed = codec.seal({"notice": "Queue paused"})
    assert codec.unseal(sealed) == {"notice": "Queue paused"}
    signature = sealed.split(".")[1]
    forged = SessionCodec(b"x" * 32, 60).seal({"notice": "evil"}).split(".")[0]
    assert codec.unseal(f"{forged}.{signature}") is None
    assert codec.unseal(None) is None


def test_the_secret_comes_from_the_setting_or_the_file_and_must_be_long(tmp_path: Path) -> None:
    assert session_secret(DashboardSettings(session_secret="s" * 40)) == b"s" * 40
    path = tmp_path / "secret"
    path.write_text("f" * 40 + "\n")
    assert session_secret(DashboardSettings(session_secret_file=str(path))) == b"f" * 40
    random_one = session_secret(DashboardSettings())
    assert len(random_one) == 32
    assert random_one != session_secret(DashboardSettings())
    with pytest.raises(ConfigError, match="at least 32"):
        session_secret(DashboardSettings(session_secret="short"))
    with pytest.raises(ConfigError, match="not both"):
        session_secret(DashboardSettings(session_secret="s" * 40, session_secret_file=str(path)))
    with pytest.raises(ConfigError, match="cannot read"):
        session_secret(DashboardSettings(session_secret_file=str(tmp_path / "missing")))
