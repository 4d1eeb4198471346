"""Connection settings: the arguments, then JQ_CTL_*, then the config file's ctl section."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobq.client.connection import call_metadata, resolve_settings
from jobq.client.errors import ConfigurationError


def test_defaults_are_jq_ctls() -> None:
    settings = resolve_settings(env={})
    assert settings.server_addr == "localhost:50051"
    assert settings.timeout_s == 10.0
    assert settings.token == ""
    assert call_metadata(settings) == ()


def test_the_environment_uses_jq_ctls_names() -> None:
    settings = resolve_settings(
        env={
            "JQ_CTL_SERVER_ADDR": "jobq:6000",
            "JQ_CTL_TIMEOUT_S": "2.5",
            "JQ_CTL_TOKEN": "s3cret",
            "JQ_CTL_TLS_CA": "/ca.pem",
            "JQ_WORKER_CONCURRENCY": "not a number",  # another program's: ignored
        }
    )
    assert (settings.server_addr, settings.timeout_s, settings.tls_ca) == (
        "jobq:6000",
        2.5,
        "/ca.pem",
    )
    assert call_metadata(settings) == (("authorization", "Bearer s3cret"),)
    assert "s3cret" not in repr(settings)


def test_arguments_beat_the_environment_and_the_file(tmp_path: Path) -> None:
    config = tmp_path / "jobq.yaml"
    config.write_text("ctl:\n  server_addr: file:1\n  timeout_s: 3\n")
    from_file = resolve_settings(config_file=config, env={})
    assert (from_file.server_addr, from_file.timeout_s) == ("file:1", 3.0)
    from_env = resolve_settings(config_file=config, env={"JQ_CTL_SERVER_ADDR": "env:2"})
    assert from_env.server_addr == "env:2"
    given = resolve_settings("arg:3", config_file=config, env={"JQ_CTL_SERVER_ADDR": "env:2"})
    assert given.server_addr == "arg:3"


def test_a_token_file_is_read_and_an_argument_token_beats_an_env_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    settings = resolve_settings(env={"JQ_CTL_TOKEN_FILE": str(token_file)})
    assert settings.token == "from-file"
    overridden = resolve_settings(token="direct", env={"JQ_CTL_TOKEN_FILE": str(token_file)})
    assert overridden.token == "direct"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JQ_CTL_TIMEOUT_S": "-1"}, "ctl.timeout_s"),
        ({"JQ_CTL_TOKEN": "a", "JQ_CTL_TOKEN_FILE": "/f"}, "not both"),
        ({"JQ_CTL_TOKEN_FILE": "/nonexistent/token"}, "cannot read token file"),
        ({"JQ_CTL_TLS_CERT": "/c.pem"}, "together"),
    ],
)
def test_unusable_settings_are_one_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        resolve_settings(env=env)


def test_errors_never_show_a_token_files_content(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("two words")
    with pytest.raises(ConfigurationError) as caught:
        resolve_settings(token_file=str(token_file), env={})
    assert "two" not in str(caught.value)
