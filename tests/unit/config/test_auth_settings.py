"""auth.* and grpc.tls_* settings: YAML mappings or compact strings, validated at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobq.config import load_settings
from jobq.domain.errors import ConfigError

HASH = "ab" * 32


def test_token_entries_from_yaml_mappings_and_compact_strings(tmp_path: Path) -> None:
    config = tmp_path / "jobq.yaml"
    config.write_text(
        f"auth:\n  tokens:\n    - name: ci\n      scopes: [submit, read]\n      sha256: {HASH}\n"
        f"    - ops:admin+read:sha256:{HASH.upper()}\n"
        "  certificates:\n    - {common_name: worker-1, scopes: [worker]}\n"
    )
    auth = load_settings(config, env={}).settings.auth
    assert [(t.name, t.scopes, t.sha256) for t in auth.tokens] == [
        ("ci", ("submit", "read"), HASH),
        ("ops", ("admin", "read"), HASH),
    ]
    assert [(c.common_name, c.scopes) for c in auth.certificates] == [("worker-1", ("worker",))]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JQ_AUTH_TOKENS": f"ci:superuser:{HASH}"}, "unknown scope(s) 'superuser'"),
        ({"JQ_AUTH_TOKENS": f"ci::{HASH}"}, "name at least one scope"),
        ({"JQ_AUTH_TOKENS": "ci:read:not-a-hash"}, "sha256 must be the 64 hex digits"),
        ({"JQ_AUTH_TOKENS": f"ci:read:{HASH},ci:admin:{HASH}"}, "token names must be unique"),
        ({"JQ_AUTH_TOKENS": f"no spaces:read:{HASH}"}, "token names are 1-64 characters"),
        ({"JQ_AUTH_TOKENS": "just-a-name"}, "NAME:SCOPE+SCOPE:SHA256"),
        ({"JQ_AUTH_CERTIFICATES": "worker-1"}, "CN:SCOPE+SCOPE"),
        ({"JQ_GRPC_TLS_KEY": "k.pem"}, "grpc.tls_cert and grpc.tls_key must be set together"),
        ({"JQ_GRPC_TLS_CLIENT_CA": "ca.pem"}, "mutual TLS needs a server certificate"),
    ],
)
def test_bad_auth_settings_are_refused_naming_the_field(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, env=env)
    assert message in str(caught.value)


def test_a_worker_token_in_the_file_is_a_secret_warning(tmp_path: Path) -> None:
    config = tmp_path / "jobq.yaml"
    config.write_text("worker:\n  token: jq_abc\n")
    loaded = load_settings(config, env={})
    assert any("worker.token is set in the config file" in w for w in loaded.warnings)
    assert "jq_abc" not in repr(loaded.settings)
