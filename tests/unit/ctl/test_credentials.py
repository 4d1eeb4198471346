"""Where jq-ctl's bearer token comes from: --token or --token-file (never both), and errors
about the file that never show what it holds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobq.config import CtlSettings
from jobq.ctl.cli import run
from jobq.ctl.context import GlobalOptions, load_ctl_settings
from jobq.ctl.credentials import BOTH_GIVEN, bearer_token, read_token_file
from jobq.ctl.errors import EXIT_USAGE, CtlError

SECRET = "jq_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("JQ_"):
            monkeypatch.delenv(name)


def _settings(token: str | None = None, token_file: str | None = None) -> CtlSettings:
    return load_ctl_settings(GlobalOptions(token=token, token_file=token_file))


def test_the_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"\n  {SECRET}\r\n\n")
    assert read_token_file(str(path)) == SECRET
    assert bearer_token(_settings(token_file=str(path))) == SECRET


def test_the_token_file_comes_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET)
    monkeypatch.setenv("JQ_CTL_TOKEN_FILE", str(path))
    assert bearer_token(_settings()) == SECRET


def test_a_token_alone_is_used_as_given() -> None:
    assert bearer_token(_settings(token="abc")) == "abc"
    assert bearer_token(_settings()) == ""


def test_a_token_and_a_token_file_together_are_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET)
    with pytest.raises(CtlError) as caught:
        bearer_token(_settings(token="abc", token_file=str(path)))
    assert str(caught.value) == BOTH_GIVEN
    assert caught.value.exit_code == EXIT_USAGE
    monkeypatch.setenv("JQ_CTL_TOKEN", "abc")  # the environment's token counts as given
    with pytest.raises(CtlError, match="not both"):
        bearer_token(_settings(token_file=str(path)))


@pytest.mark.parametrize(
    ("content", "says"),
    [
        pytest.param("", "is empty", id="empty"),
        pytest.param(" \n\t\n", "is empty", id="blank"),
        pytest.param(f"{SECRET} {SECRET}", "must hold the token alone", id="two-words"),
        pytest.param(f"Bearer {SECRET}\n", "must hold the token alone", id="with-scheme"),
    ],
)
def test_a_file_without_one_token_is_a_usage_error_that_hides_the_content(
    tmp_path: Path, content: str, says: str
) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(CtlError) as caught:
        read_token_file(str(path))
    message = str(caught.value)
    assert message == f"--token-file {path} {says}" + (
        " (it has more than one word)" if "alone" in says else ""
    )
    assert SECRET not in message
    assert caught.value.exit_code == EXIT_USAGE


def test_an_unreadable_token_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(CtlError) as caught:
        read_token_file(str(missing))
    assert str(caught.value) == f"cannot read --token-file {missing}: No such file or directory"
    assert caught.value.exit_code == EXIT_USAGE
    with pytest.raises(CtlError, match=r"cannot read --token-file .*: Is a directory"):
        read_token_file(str(tmp_path))


def test_a_binary_token_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(CtlError) as caught:
        read_token_file(str(path))
    assert str(caught.value) == f"--token-file {path} is not UTF-8 text"


def test_jq_ctl_says_it_in_one_line_and_exits_2_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "token"
    path.write_text(f"{SECRET} extra")
    nowhere = ["--server-addr", "127.0.0.1:1", "--timeout", "0.2"]
    assert run([*nowhere, "--token-file", str(path), "system", "status"]) == EXIT_USAGE
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"jq-ctl: --token-file {path} must hold the token alone")
    assert SECRET not in line
    assert run([*nowhere, "--token", "x", "--token-file", str(path), "queue", "list"]) == 2
    assert capsys.readouterr().err == f"jq-ctl: {BOTH_GIVEN}\n"
