"""`jq-ctl job submit --idempotency-key KEY`: the key goes into the request, and a reply for
a job that already held it says so (stderr for tables, `existing` in JSON), while stdout keeps
the bare id."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from jobq.ctl.cli import run
from jobq.ctl.client import Client
from jobq.rpc._gen import job_service_pb2 as jpb

JOB_ID = "0190a5e4-0000-7000-8000-000000000001"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("JQ_"):
            monkeypatch.delenv(name)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[jpb.SubmitJobRequest]:
    """The requests jq-ctl sends; the fake server says a key 'held' is already held."""
    requests: list[jpb.SubmitJobRequest] = []

    def fake_call(self: Client, rpc: Any, request: Any, reply: Any, subject: str = "") -> Any:
        assert isinstance(request, jpb.SubmitJobRequest)
        requests.append(request)
        return jpb.SubmitJobResponse(job_id=JOB_ID, existing=request.idempotency_key == "held")

    monkeypatch.setattr(Client, "_call", fake_call)
    return requests


def _submit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run([*args[:2], "job", "submit", *args[2:], "--", "true"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_key_is_sent_and_a_new_job_prints_only_its_id(
    sent: list[jpb.SubmitJobRequest], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _submit(capsys, "--output", "table", "--idempotency-key", "fresh") == (
        0,
        JOB_ID + "\n",
        "",
    )
    assert [r.idempotency_key for r in sent] == ["fresh"]


def test_without_the_option_no_key_is_sent(
    sent: list[jpb.SubmitJobRequest], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _submit(capsys, "--output", "table")[0] == 0
    assert [r.idempotency_key for r in sent] == [""]


def test_a_held_key_prints_the_id_and_says_the_job_already_existed(
    sent: list[jpb.SubmitJobRequest], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _submit(capsys, "--output", "table", "--idempotency-key", "held")
    assert (code, out) == (0, JOB_ID + "\n")
    assert err == (
        f"job {JOB_ID} already existed (idempotency key 'held'): nothing new was submitted\n"
    )


def test_json_says_existing(
    sent: list[jpb.SubmitJobRequest], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _submit(capsys, "--output", "json", "--idempotency-key", "held")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"job_id": JOB_ID, "existing": True}
