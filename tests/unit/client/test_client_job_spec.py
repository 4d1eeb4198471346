"""Payloads and options built by the SDK, and how an ended job becomes a result or an error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from jobq.client.errors import JobCancelled, JobDeadLettered, JobFailed
from jobq.client.job_info import JobInfo, JobStatus
from jobq.client.job_spec import (
    InvalidJob,
    SubmitOptions,
    command_job,
    decode_result,
    handler_job,
    handler_name,
    outcome,
)
from jobq.domain.payload import parse_payload


def module_level(x: int) -> int:
    return x


def test_handler_payload_is_what_the_worker_runs() -> None:
    spec = handler_job("myapp.tasks:add", [1, 2], {"scale": 3})
    assert json.loads(spec.payload) == {
        "handler": "myapp.tasks:add",
        "args": [1, 2],
        "kwargs": {"scale": 3},
    }
    parsed = parse_payload(spec.payload)
    assert parsed.handler == "myapp.tasks:add"  # type: ignore[union-attr]


def test_empty_args_and_kwargs_are_left_out() -> None:
    assert json.loads(handler_job("ping").payload) == {"handler": "ping"}


def test_a_function_is_named_by_its_task_name_or_module_and_qualname() -> None:
    def local() -> None:
        return None

    local.task_name = "custom"  # type: ignore[attr-defined]
    assert handler_name(local) == "custom"
    assert handler_name(module_level) == f"{__name__}:module_level"
    with pytest.raises(InvalidJob, match="cannot name"):
        handler_name(lambda: None)


def test_arguments_that_are_not_json_are_refused_before_any_call() -> None:
    with pytest.raises(InvalidJob, match="not JSON-serialisable") as caught:
        handler_job("h", [object()])
    assert caught.value.code == "INVALID_ARGUMENT"
    with pytest.raises(InvalidJob):
        handler_job("h", [float("nan")])


def test_command_payload_and_its_checks() -> None:
    spec = command_job(["echo", "hi"], env={"A": "1"}, timeout_s=5, stdin="in")
    assert json.loads(spec.payload) == {
        "command": ["echo", "hi"],
        "env": {"A": "1"},
        "timeout_s": 5,
        "stdin": "in",
    }
    with pytest.raises(InvalidJob, match="list of strings"):
        command_job("echo hi")
    with pytest.raises(InvalidJob, match="LD_PRELOAD"):
        command_job(["true"], env={"LD_PRELOAD": "x.so"})


def test_every_request_carries_an_idempotency_key() -> None:
    spec = handler_job("h")
    first, second = spec.to_request(), spec.to_request()
    assert first.idempotency_key
    assert second.idempotency_key
    assert first.idempotency_key != second.idempotency_key
    keyed = handler_job("h", options=SubmitOptions(idempotency_key="order-7"))
    assert keyed.to_request().idempotency_key == "order-7"


def test_options_become_request_fields() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    request = handler_job(
        "h", options=SubmitOptions(queue="emails", priority=7, not_before=when, max_retries=0)
    ).to_request()
    assert (request.queue_name, request.priority, request.max_retries) == ("emails", 7, 0)
    assert request.HasField("max_retries")
    assert request.not_before.ToDatetime(tzinfo=UTC) == when
    assert not request.HasField("delay")
    delayed = handler_job("h", options=SubmitOptions(delay=timedelta(seconds=90))).to_request()
    assert delayed.delay.ToTimedelta() == timedelta(seconds=90)
    assert not handler_job("h").to_request().HasField("max_retries")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue": "bad name"}, "queue name"),
        ({"priority": 10}, "priority"),
        ({"delay": 1, "not_before": datetime.now(UTC)}, "not both"),
        ({"delay": -1}, "negative"),
        ({"max_retries": 1001}, "max_retries"),
        ({"idempotency_key": "x" * 256}, "idempotency_key"),
        ({"idempotency_key": "tab\there"}, "idempotency_key"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        SubmitOptions(**options)  # type: ignore[arg-type]


def ended(status: JobStatus, payload: bytes, result: bytes = b"", error: str = "") -> JobInfo:
    return JobInfo(
        job_id="00000000-0000-0000-0000-000000000001",
        queue_name="default",
        status=status,
        payload=payload,
        priority=0,
        max_retries=0,
        retry_count=0,
        attempt=1,
        interruptions=0,
        worker_id="w",
        result=result,
        error_message=error,
        created_at=None,
        started_at=None,
        completed_at=None,
        not_before=None,
        updated_at=None,
    )


def test_results_are_decoded_by_kind_of_job() -> None:
    handler = handler_job("h").payload
    command = command_job(["echo"]).payload
    assert decode_result(ended(JobStatus.DONE, handler, b'{"a": [1, 2]}')) == {"a": [1, 2]}
    assert decode_result(ended(JobStatus.DONE, handler, b"null")) is None
    assert decode_result(ended(JobStatus.DONE, handler, b"")) is None
    assert decode_result(ended(JobStatus.DONE, command, b"hello\n")) == b"hello\n"


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        ("RETRIES_EXHAUSTED", JobFailed),
        ("CANCELLED", JobCancelled),
        ("REFUSED", JobDeadLettered),
        ("", JobDeadLettered),
    ],
)
def test_a_dead_lettered_job_raises_by_its_reason(
    reason: str, error: type[JobDeadLettered]
) -> None:
    job = ended(JobStatus.DEAD_LETTERED, handler_job("h").payload, error="ValueError: boom")
    with pytest.raises(error, match="ValueError: boom") as caught:
        outcome(job, reason)
    assert type(caught.value) is error
    assert caught.value.error_message == "ValueError: boom"
    assert caught.value.job is job
