"""`job submit`'s payload: exactly one source, and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobq.ctl.errors import CtlError
from jobq.ctl.payloads import build_payload


def test_a_command_becomes_a_command_payload() -> None:
    body = build_payload(None, None, ["echo", "hello world", "--flag"])
    assert json.loads(body) == {"command": ["echo", "hello world", "--flag"]}


def test_json_payloads_are_sent_as_given() -> None:
    text = '{"handler": "app.tasks:ping",  "args": [1]}'
    assert build_payload(text, None, []) == text.encode()


def test_a_payload_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "payload.json"
    path.write_bytes(b'{"command": ["true"]}\n')
    assert build_payload(None, path, []) == b'{"command": ["true"]}\n'


@pytest.mark.parametrize(
    ("payload", "command", "message"),
    [
        (
            None,
            [],
            r"give exactly one of --payload, --payload-file or -- CMD ARGS\.\.\. \(got none\)",
        ),
        ('{"a": 1}', ["true"], r"\(got --payload and -- CMD ARGS\)"),
        ("{not json", [], r"--payload is not valid JSON: .* at line 1 column 2"),
    ],
)
def test_bad_payloads_are_usage_errors(
    payload: str | None, command: list[str], message: str
) -> None:
    with pytest.raises(CtlError, match=message) as caught:
        build_payload(payload, None, command)
    assert caught.value.exit_code == 2


def test_bad_payload_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(CtlError, match=r"cannot read --payload-file .*: No such file"):
        build_payload(None, tmp_path / "missing.json", [])
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(CtlError, match="is not UTF-8 text"):
        build_payload(None, binary, [])
