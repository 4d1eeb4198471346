"""Who is calling, and may they: bearer tokens and client certificates mapped to scopes.

A call is authenticated by, in this order:

1. a bearer token (`authorization: Bearer <secret>` metadata): its SHA-256 is compared, in
   constant time, with every configured `auth.tokens` hash (the server never holds secrets);
2. the client certificate of a mutual-TLS connection: its subject CN is looked up in
   `auth.certificates`. gRPC has already verified the certificate against `grpc.tls_client_ca`
   during the handshake; a certificate it did not trust never gets this far.

With neither tokens nor a client CA configured, authentication is off: the server then listens
on loopback only (`config/exposure.py`) and every caller is `ANONYMOUS` with every scope.

Messages say what is missing in one line and never echo a secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence

from jobq.config import AuthSettings, GrpcSettings
from jobq.domain.errors import PermissionDenied, Unauthenticated
from jobq.domain.scopes import Scope
from jobq.domain.tokens import token_digest
from jobq.server.caller import ANONYMOUS, Caller

__all__ = ["AUTHORIZATION_METADATA_KEY", "Authenticator"]

AUTHORIZATION_METADATA_KEY = "authorization"
_BEARER = "bearer "
_MAX_TOKEN_CHARS = 1024
"""Longer "tokens" are refused unhashed: no real secret is that long."""

AuthContext = Mapping[str, Iterable[bytes]]
"""What `ServicerContext.auth_context()` returns: property name → values."""


class Authenticator:
    """Turns a call's metadata and TLS peer into a `Caller`, and checks its scope."""

    def __init__(
        self,
        tokens: Sequence[tuple[str, Caller]],
        certificates: Mapping[str, Caller],
        *,
        client_certificates: bool,
    ) -> None:
        """`tokens` pairs each token's hex SHA-256 with its caller; `certificates` maps a
        certificate's subject CN to its caller; `client_certificates` says mutual TLS is on."""
        self._tokens = tuple(tokens)
        self._certificates = dict(certificates)
        self._client_certificates = client_certificates
        self.enabled = bool(self._tokens) or client_certificates
        """False: no authentication configured; every caller is ANONYMOUS."""

    @classmethod
    def from_settings(cls, auth: AuthSettings, grpc: GrpcSettings) -> Authenticator:
        tokens = [
            (entry.sha256, Caller(entry.name, "token", _scopes(entry.scopes)))
            for entry in auth.tokens
        ]
        certificates = {
            entry.common_name: Caller(entry.common_name, "certificate", _scopes(entry.scopes))
            for entry in auth.certificates
        }
        return cls(tokens, certificates, client_certificates=bool(grpc.tls_client_ca))

    def authenticate(self, authorization: str | None, auth_context: AuthContext | None) -> Caller:
        """The caller, from the `authorization` metadata value (None when absent) or, failing
        that, the TLS peer's certificate. Raises Unauthenticated."""
        if not self.enabled:
            return ANONYMOUS
        if authorization is not None:
            return self._by_token(authorization)
        if self._client_certificates and auth_context is not None:
            caller = self._by_certificate(auth_context)
            if caller is not None:
                return caller
        raise Unauthenticated(
            "missing credential: send a bearer token (metadata 'authorization: Bearer <token>')"
            + (" or a client certificate" if self._client_certificates else "")
        )

    def authorize(self, caller: Caller, scope: Scope, method: str) -> None:
        """Raises PermissionDenied unless `caller` holds `scope` (`method` names the RPC)."""
        if scope not in caller.scopes:
            what = f"token '{caller.name}'" if caller.kind == "token" else caller.label
            raise PermissionDenied(
                f"{what} lacks the {scope.value} scope needed by {_short_method(method)}"
            )

    def by_digest(self, digest: str) -> Caller | None:
        """The caller whose token has this hex SHA-256, or None: how a dashboard login cookie
        (which holds the digest, never the secret) finds its caller again on every request,
        so a token removed from the configuration ends its logins."""
        found: Caller | None = None
        for expected, caller in self._tokens:  # every entry, so timing does not tell which
            if hmac.compare_digest(digest, expected):
                found = caller
        return found

    def _by_token(self, authorization: str) -> Caller:
        if not authorization[: len(_BEARER)].lower() == _BEARER:
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer <token>'")
        secret = authorization[len(_BEARER) :].strip()
        if not secret or len(secret) > _MAX_TOKEN_CHARS:
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer <token>'")
        found = self.by_digest(token_digest(secret))
        if found is None:
            raise Unauthenticated("invalid bearer token: it matches none of the server's tokens")
        return found

    def _by_certificate(self, auth_context: AuthContext) -> Caller | None:
        names = list(auth_context.get("x509_common_name") or ())
        if not names:
            return None
        common_name = names[0].decode("utf-8", "replace")
        caller = self._certificates.get(common_name)
        if caller is None:
            raise PermissionDenied(
                f"client certificate CN={common_name} has no scopes: list it in auth.certificates"
            )
        return caller


def _scopes(names: Sequence[str]) -> frozenset[Scope]:
    return frozenset(Scope(name) for name in names)


def _short_method(method: str) -> str:
    """`/jobq.v1.AdminService/DeleteQueue` → `AdminService/DeleteQueue`."""
    service, _, name = method.lstrip("/").rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}/{name}"
