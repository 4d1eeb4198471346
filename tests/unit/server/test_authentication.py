"""Authenticator: tokens by hash in constant time, certificates by CN, scopes, messages."""

from __future__ import annotations

import pytest

from jobq.config import load_settings
from jobq.domain.errors import PermissionDenied, Unauthenticated
from jobq.domain.scopes import Scope
from jobq.domain.tokens import new_token_secret, token_digest
from jobq.server.authentication import Authenticator
from jobq.server.caller import ANONYMOUS

SECRET = new_token_secret()
OTHER = new_token_secret()


def authenticator(**env: str) -> Authenticator:
    settings = load_settings(None, env=env).settings
    return Authenticator.from_settings(settings.auth, settings.grpc)


def tokens_env() -> dict[str, str]:
    return {
        "JQ_AUTH_TOKENS": f"ci:submit+read:{token_digest(SECRET)},ops:admin:{token_digest(OTHER)}"
    }


def test_with_nothing_configured_everyone_is_anonymous_with_every_scope() -> None:
    auth = authenticator()
    assert not auth.enabled
    assert auth.authenticate(None, None) is ANONYMOUS
    assert auth.authenticate("Bearer anything", None) is ANONYMOUS
    assert ANONYMOUS.scopes == frozenset(Scope)


def test_a_configured_token_is_its_caller() -> None:
    auth = authenticator(**tokens_env())
    caller = auth.authenticate(f"Bearer {SECRET}", None)
    assert (caller.name, caller.kind, caller.label) == ("ci", "token", "token:ci")
    assert caller.scopes == {Scope.SUBMIT, Scope.READ}
    assert auth.authenticate(f"bearer   {OTHER} ", None).name == "ops"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing credential"),
        ("", "malformed authorization"),
        ("Token abc", "malformed authorization"),
        ("Bearer", "malformed authorization"),
        # Random values, fixed test ids: every pytest-xdist process must collect the same ids.
        pytest.param(f"Bearer {SECRET}x", "invalid bearer token", id="another-token"),
        pytest.param(  # the hash is not the key
            f"Bearer {token_digest(SECRET)}", "invalid bearer token", id="the-token's-hash"
        ),
    ],
)
def test_anything_but_a_configured_token_is_unauthenticated(
    header: str | None, message: str
) -> None:
    with pytest.raises(Unauthenticated, match=message) as caught:
        authenticator(**tokens_env()).authenticate(header, None)
    assert SECRET not in str(caught.value)


def test_a_missing_scope_is_permission_denied_naming_it() -> None:
    auth = authenticator(**tokens_env())
    caller = auth.authenticate(f"Bearer {SECRET}", None)
    auth.authorize(caller, Scope.READ, "/jobq.v1.JobService/ListJobs")
    with pytest.raises(PermissionDenied) as caught:
        auth.authorize(caller, Scope.ADMIN, "/jobq.v1.AdminService/DeleteQueue")
    assert (
        str(caught.value) == "token 'ci' lacks the admin scope needed by AdminService/DeleteQueue"
    )


def test_client_certificates_are_callers_by_their_common_name() -> None:
    auth = authenticator(
        JQ_GRPC_TLS_CERT="s.crt",
        JQ_GRPC_TLS_KEY="s.key",
        JQ_GRPC_TLS_CLIENT_CA="ca.crt",
        JQ_AUTH_CERTIFICATES="worker-1:worker",
    )
    assert auth.enabled
    caller = auth.authenticate(None, {"x509_common_name": [b"worker-1"]})
    assert (caller.label, caller.scopes) == ("cert:worker-1", {Scope.WORKER})
    with pytest.raises(PermissionDenied, match=r"CN=stranger has no scopes"):
        auth.authenticate(None, {"x509_common_name": [b"stranger"]})
    with pytest.raises(Unauthenticated, match="or a client certificate"):
        auth.authenticate(None, {})
