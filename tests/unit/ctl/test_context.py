"""jq-ctl's settings: defaults, file < environment < flags, one-line configuration errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobq.ctl.context import GlobalOptions, load_ctl_settings
from jobq.ctl.errors import CtlError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("JQ_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    ctl = load_ctl_settings(GlobalOptions())
    assert (ctl.server_addr, ctl.output, ctl.timeout_s, ctl.token) == (
        "localhost:50051",
        "table",
        10.0,
        "",
    )


def test_flags_beat_the_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "jobq.yaml"
    config.write_text("ctl:\n  server_addr: file:1\n  output: yaml\n  timeout_s: 3\n")
    assert load_ctl_settings(GlobalOptions(config=config)).server_addr == "file:1"
    monkeypatch.setenv("JQ_CTL_SERVER_ADDR", "env:2")
    monkeypatch.setenv("JQ_CTL_OUTPUT", "json")
    ctl = load_ctl_settings(GlobalOptions(config=config, output="table"))
    assert (ctl.server_addr, ctl.output, ctl.timeout_s) == ("env:2", "table", 3.0)
    ctl = load_ctl_settings(GlobalOptions(config=config, server_addr="flag:3", timeout_s=0.5))
    assert (ctl.server_addr, ctl.timeout_s) == ("flag:3", 0.5)


def test_every_problem_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JQ_CTL_TIMEOUT_S", "-1")
    with pytest.raises(CtlError) as caught:
        load_ctl_settings(GlobalOptions(output="xml"))
    message = str(caught.value)
    assert "ctl.timeout_s (from JQ_CTL_TIMEOUT_S)" in message
    assert "ctl.output" in message
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_only_warnings_about_ctl_are_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "jobq.yaml"
    config.write_text("ctl:\n  token: abc\ndb:\n  password: pw\n")
    assert load_ctl_settings(GlobalOptions(config=config)).token == "abc"
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("jq-ctl: warning: ctl.token is set in the config file")
