"""depends_on in the SDK (issue 18): checked on the client with the server's words, carried in
every SubmitJobRequest, refused by the transactional enqueue."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from jobq.client.enqueue import new_job
from jobq.client.job_spec import InvalidJob, handler_job, submit_options
from jobq.domain.ids import uuid7_text


@dataclass
class _Job:
    job_id: str


def test_jobs_ids_and_uuids_are_all_prerequisites() -> None:
    first, second, third = uuid7_text(), uuid7_text(), uuid.uuid4()
    options = submit_options(depends_on=[_Job(first), second, third])
    assert options.depends_on == (first, second, str(third))
    request = handler_job("app:run", options=options).to_request(client_id=True)
    assert list(request.depends_on) == [first, second, str(third)]
    assert request.job_id not in request.depends_on


def test_no_prerequisites_send_none() -> None:
    assert submit_options().depends_on == ()
    assert list(handler_job("app:run").to_request().depends_on) == []


@pytest.mark.parametrize(
    ("depends_on", "message"),
    [
        (["nope"], "malformed depends_on job id 'nope': expected a UUID"),
        ([_Job("x" * 36)], "malformed depends_on job id"),
        ("01a22dc8-0ef7-71a4-93d7-1007d8b12231", "a list of jobs or job ids, not one string"),
        ([42], "42 is neither a job nor a job id"),
        (["01a22dc8-0ef7-71a4-93d7-1007d8b12231"] * 2, "names job"),
        ([uuid7_text() for _ in range(101)], "at most 100 jobs, got 101"),
    ],
)
def test_bad_prerequisites_are_refused_before_any_call(depends_on: object, message: str) -> None:
    with pytest.raises(InvalidJob, match=message):
        submit_options(depends_on=depends_on)  # type: ignore[arg-type]


def test_the_transactional_enqueue_refuses_prerequisites() -> None:
    spec = handler_job("app:run", options=submit_options(depends_on=[uuid7_text()]))
    with pytest.raises(InvalidJob, match="not supported by enqueue"):
        new_job(spec, datetime.now(UTC))
