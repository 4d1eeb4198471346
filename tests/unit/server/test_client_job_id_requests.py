"""SubmitJobRequest.job_id as new_job_from_request reads it: empty means the server chooses;
else a UUIDv7 in text form, never with an idempotency key; anything else is InvalidArgument
naming the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from jobq.config.settings import LimitsSettings
from jobq.domain.errors import InvalidArgument
from jobq.domain.ids import uuid7
from jobq.rpc._gen import job_service_pb2 as pb
from jobq.server.submission import new_job_from_request

NOW = datetime(2024, 5, 1, tzinfo=UTC)
PAYLOAD = b'{"command": ["true"]}'


def _job(job_id: str, key: str = "") -> tuple[uuid.UUID, bool]:
    request = pb.SubmitJobRequest(
        queue_name="default", payload=PAYLOAD, job_id=job_id, idempotency_key=key
    )
    job = new_job_from_request(request, LimitsSettings(), NOW)
    return job.job_id, job.id_from_client


def test_no_id_means_the_server_makes_one() -> None:
    job_id, chosen = _job("")
    assert job_id.version == 7
    assert not chosen


@pytest.mark.parametrize("spelling", [str, lambda u: str(u).upper(), lambda u: u.hex])
def test_a_uuid7_is_taken_as_the_job_id(spelling: object) -> None:
    wanted = uuid7()
    assert callable(spelling)
    assert _job(spelling(wanted)) == (wanted, True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not-a-uuid", "malformed job_id 'not-a-uuid': expected a UUID"),
        ("x" * 65, "malformed job_id: expected a UUID"),
        pytest.param(  # a random value, a fixed test id: the same in every xdist process
            str(uuid.uuid4()), "job_id must be a UUIDv7 (RFC 9562), got version 4", id="a-uuid4"
        ),
        ("00000000-0000-0000-0000-000000000000", "job_id must be a UUIDv7 (RFC 9562), got version"),
        # the version nibble says 7, the variant bits do not say RFC 9562
        ("01890a5d-ac96-774b-0cb2-e05ec98e3a2f", "job_id must be a UUIDv7 (RFC 9562)"),
    ],
)
def test_anything_but_a_uuid7_is_refused(raw: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        _job(raw)
    assert str(refused.value).startswith(message)


def test_an_id_and_a_key_together_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="give job_id or idempotency_key, not both"):
        _job(str(uuid7()), key="order-42")
