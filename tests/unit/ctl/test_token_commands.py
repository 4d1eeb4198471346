"""`jq-ctl token create|hash`: what they print is what jq-server's configuration accepts, and
they validate names and scopes by the server's own rules."""

from __future__ import annotations

import io
import json
import os
import textwrap

import pytest
import yaml

from jobq.config import load_settings
from jobq.config.settings import AuthSettings, TokenEntry
from jobq.ctl.cli import run
from jobq.ctl.token_commands import compact_entry, token_document, token_entry, token_text
from jobq.domain.tokens import TOKEN_PREFIX, new_token_secret, token_digest


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("JQ_"):
            monkeypatch.delenv(name)


def _create(
    capsys: pytest.CaptureFixture[str], *args: str, output: str = "table"
) -> tuple[int, str, str]:
    code = run(["--output", output, "token", "create", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_json_document_holds_the_secret_and_matching_entries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _create(capsys, "ci", "--scopes", "submit,read", output="json")
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert list(document) == [
        "name",
        "scopes",
        "secret",
        "sha256",
        "auth_tokens_entry",
        "compact",
    ]
    secret = document["secret"]
    assert secret.startswith(TOKEN_PREFIX)
    assert document["sha256"] == token_digest(secret)
    assert document["auth_tokens_entry"] == {
        "name": "ci",
        "scopes": ["submit", "read"],
        "sha256": token_digest(secret),
    }
    assert document["compact"] == f"ci:submit+read:{token_digest(secret)}"
    # jq-server takes either form, from its file or its environment.
    from_env = load_settings(None, env={"JQ_AUTH_TOKENS": document["compact"]}).settings
    from_file = AuthSettings.model_validate({"tokens": [document["auth_tokens_entry"]]})
    assert from_env.auth.tokens == from_file.tokens
    assert from_env.auth.tokens[0].scopes == ("submit", "read")


def test_each_run_makes_a_new_secret(capsys: pytest.CaptureFixture[str]) -> None:
    secrets = {json.loads(_create(capsys, "a", "-s", "admin", output="json")[1])["secret"]}
    secrets.add(json.loads(_create(capsys, "a", "-s", "admin", output="json")[1])["secret"])
    assert len(secrets) == 2


def test_yaml_output_is_the_same_document(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _create(capsys, "w-1", "--scopes", "worker", output="yaml")
    assert code == 0
    document = yaml.safe_load(out)
    assert document["compact"] == f"w-1:worker:{token_digest(document['secret'])}"


def test_the_text_shows_the_secret_once_and_a_configuration_jq_server_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _create(capsys, "ops@example", "--scopes", "read+admin")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "token 'ops@example' with scope(s) read, admin"
    secret = lines[lines.index(next(line for line in lines if line.startswith("Secret"))) + 1]
    secret = secret.strip()
    assert out.count(secret) == 1
    start = lines.index("jq-server configuration (YAML):") + 1
    end = lines.index("", start)
    config = yaml.safe_load(textwrap.dedent("\n".join(lines[start:end])))
    [entry] = AuthSettings.model_validate(config["auth"]).tokens
    assert (entry.name, entry.scopes, entry.sha256) == (
        "ops@example",
        ("read", "admin"),
        token_digest(secret),
    )
    compact = f"ops@example:read+admin:{token_digest(secret)}"
    assert f"  JQ_AUTH_TOKENS={compact}" in lines
    assert "--token-file" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param(["bad name", "-s", "read"], "Invalid value for NAME: token names", id="name"),
        pytest.param(["x" * 65, "-s", "read"], "Invalid value for NAME", id="long-name"),
        pytest.param(["ci", "-s", "read,root"], "unknown scope(s) 'root'", id="scope"),
        pytest.param(["ci", "-s", ","], "name at least one scope", id="no-scope"),
        pytest.param(["ci"], "Missing option '--scopes'", id="scopes-missing"),
        pytest.param(["-s", "read"], "Missing argument 'NAME'", id="name-missing"),
    ],
)
def test_bad_names_and_scopes_are_one_line_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    code, out, err = _create(capsys, *args)
    assert code == 2
    assert out == ""
    [line] = err.splitlines()
    assert line.startswith("jq-ctl: ")
    assert says in line
    assert TOKEN_PREFIX not in line  # no secret was printed for a refused token


def test_scopes_are_checked_as_the_server_checks_them() -> None:
    secret = new_token_secret()
    entry = token_entry("ci", "submit+read,submit", secret)
    assert entry.scopes == ("submit", "read")
    assert compact_entry(entry) == f"ci:submit+read:{token_digest(secret)}"
    assert TokenEntry.model_validate(compact_entry(entry)) == entry
    document = token_document(entry, secret)
    assert document["secret"] == secret
    assert secret in token_text(entry, secret).plain


def test_hash_reads_the_secret_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = new_token_secret()
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{secret}\n"))
    assert run(["token", "hash"]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (token_digest(secret) + "\n", "")
    monkeypatch.setattr("sys.stdin", io.StringIO(secret))
    assert run(["-o", "json", "token", "hash"]) == 0
    assert json.loads(capsys.readouterr().out) == {"sha256": token_digest(secret)}


def test_hash_warns_about_a_short_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("hunter2\n"))
    assert run(["token", "hash"]) == 0
    captured = capsys.readouterr()
    assert captured.out == token_digest("hunter2") + "\n"
    assert captured.err.startswith("jq-ctl: warning: a secret shorter than 32 characters")
    assert "hunter2" not in captured.err


@pytest.mark.parametrize(
    ("stdin", "says"),
    [
        pytest.param("", "no secret on stdin", id="empty"),
        pytest.param("  \n", "no secret on stdin", id="blank"),
        pytest.param("two words\n", "the secret must be one word", id="two-words"),
    ],
)
def test_hash_without_one_secret_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stdin: str, says: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert run(["token", "hash"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"jq-ctl: {says}")
    assert "words" not in captured.err.replace("one word", "")
