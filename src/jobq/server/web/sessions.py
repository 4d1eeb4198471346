"""Dashboard logins and CSRF tokens: signed cookies, nothing stored on the server.

A login checks the token like any gRPC call, then sets the `jq_session` cookie (HttpOnly,
SameSite=Strict, Secure under HTTPS): a random session id, the token's SHA-256 (never the
token) and an expiry, signed with HMAC-SHA256 under `dashboard.session_secret`. Every request
finds the caller again from the digest, so a token removed from the configuration ends its
logins at once. Without authentication (loopback only) every browser still gets a session, for
its CSRF token.

CSRF: every form and every fetch that changes something carries `csrf_token(session)`, an HMAC
of the session id; `csrf_ok` compares in constant time. The SameSite=Strict cookie already
keeps other sites' requests anonymous; the token is the second lock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from jobq.config import DashboardSettings
from jobq.domain.errors import ConfigError

__all__ = ["COOKIE", "MIN_SECRET_CHARS", "Session", "SessionCodec", "session_secret"]

COOKIE = "jq_session"
MIN_SECRET_CHARS = 32
_MAX_COOKIE_CHARS = 512


@dataclass(frozen=True, slots=True)
class Session:
    """One browser's session: its id, the digest of the token it logged in with ('' when
    anonymous: authentication off, or not logged in yet) and when it ends (epoch seconds)."""

    sid: str
    token_digest: str
    expires_at: float


def session_secret(settings: DashboardSettings) -> bytes:
    """The signing key: the setting, the file, or (neither) a random key for this process."""
    if settings.session_secret and settings.session_secret_file:
        raise ConfigError("set dashboard.session_secret or dashboard.session_secret_file, not both")
    secret = settings.session_secret
    if settings.session_secret_file:
        try:
            secret = Path(settings.session_secret_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"dashboard.session_secret_file: cannot read {settings.session_secret_file}: "
                f"{exc.strerror or exc}"
            ) from None
    if not secret:
        random_key: bytes = secrets.token_bytes(32)
        return random_key
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"dashboard.session_secret is {len(secret)} characters; use at least "
            f"{MIN_SECRET_CHARS} (for example: openssl rand -hex 32)"
        )
    return secret.encode()


class SessionCodec:
    """Issues and reads session cookies, and the CSRF tokens bound to them."""

    def __init__(self, secret: bytes, ttl_s: float) -> None:
        self._key = hashlib.sha256(b"jobq-dashboard-session\0" + secret).digest()
        self._csrf_key = hashlib.sha256(b"jobq-dashboard-csrf\0" + secret).digest()
        self.ttl_s = ttl_s

    def new(self, token_digest: str = "", now: float | None = None) -> Session:
        """A fresh session (a new id: a login never keeps the id it had before)."""
        issued = time.time() if now is None else now
        return Session(secrets.token_urlsafe(18), token_digest, issued + self.ttl_s)

    def encode(self, session: Session) -> str:
        return self.seal(
            {"s": session.sid, "t": session.token_digest, "e": int(session.expires_at)}
        )

    def decode(self, value: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, or None: absent, malformed, forged or expired."""
        body = self.unseal(value)
        if not isinstance(body, dict):
            return None
        try:
            session = Session(str(body["s"]), str(body["t"]), float(body["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= (time.time() if now is None else now):
            return None
        return session

    def seal(self, value: object) -> str:
        """`value` (JSON) as a signed cookie value: readable, but not forgeable."""
        body = json.dumps(value, separators=(",", ":")).encode()
        payload = base64.urlsafe_b64encode(body).rstrip(b"=")
        return f"{payload.decode()}.{self._sign(payload)}"

    def unseal(self, value: str | None) -> object:
        """What `seal` sealed, or None when absent, malformed or forged."""
        if not value or len(value) > _MAX_COOKIE_CHARS or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature, self._sign(payload.encode())):
            return None
        try:
            return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session | None, token: str | None) -> bool:
        if session is None or not token or len(token) > 128:
            return False
        return hmac.compare_digest(token, self.csrf_token(session))

    def _sign(self, payload: bytes) -> str:
        digest = hmac.new(self._key, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
