"""The hand-written JobEvent bytes are exactly what the protobuf runtime writes, for every
status, with and without the optional fields, at the edges of varints and lengths."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from jobq.domain.states import JobStatus
from jobq.rpc._gen import common_pb2
from jobq.server.event_encoding import STATUS_NUMBER, encode_job_event

STATUSES = [s.value for s in JobStatus]


def reference(
    event_id: int,
    job_id: str,
    queue: str,
    from_status: str | None,
    to_status: str,
    worker_id: str | None,
    reason: str,
    detail: str | None,
    occurred_us: int,
    attempt: int | None,
) -> bytes:
    seconds, micros = divmod(occurred_us, 1_000_000)
    return common_pb2.JobEvent(
        id=event_id,
        job_id=job_id,
        queue_name=queue,
        from_status=0 if from_status is None else STATUS_NUMBER[from_status],
        to_status=STATUS_NUMBER[to_status],
        worker_id=worker_id or "",
        reason=reason,
        detail=detail or "",
        occurred_at=Timestamp(seconds=seconds, nanos=micros * 1000),
        attempt=attempt or 0,
    ).SerializeToString(deterministic=True)


def test_every_job_status_has_its_proto_number() -> None:
    assert set(STATUS_NUMBER) == set(STATUSES)
    assert STATUS_NUMBER["PENDING"] == common_pb2.JOB_STATUS_PENDING


@pytest.mark.parametrize("event_id", [1, 127, 128, 16_383, 16_384, 2**31, 2**62])
@pytest.mark.parametrize("occurred_us", [0, 1, 999_999, 1_000_000, 1_767_225_600_123_456])
def test_edges_of_varints(event_id: int, occurred_us: int) -> None:
    args = (
        event_id,
        str(uuid.uuid4()),
        "default",
        None,
        "DONE",
        None,
        "COMPLETED",
        None,
        occurred_us,
        None,
    )
    assert encode_job_event(*args) == reference(*args)


@given(
    event_id=st.integers(min_value=0, max_value=2**63 - 1),
    queue=st.text(min_size=1, max_size=200),
    from_status=st.none() | st.sampled_from(STATUSES),
    to_status=st.sampled_from(STATUSES),
    worker=st.booleans(),
    reason=st.text(max_size=40),
    detail=st.none() | st.text(max_size=400),
    occurred_us=st.integers(min_value=0, max_value=2**50),
    attempt=st.none() | st.integers(min_value=0, max_value=2**31 - 1),
)
def test_any_event_is_byte_for_byte_the_runtimes(
    event_id: int,
    queue: str,
    from_status: str | None,
    to_status: str,
    worker: bool,
    reason: str,
    detail: str | None,
    occurred_us: int,
    attempt: int | None,
) -> None:
    args = (
        event_id,
        str(uuid.uuid4()),
        queue,
        from_status,
        to_status,
        str(uuid.uuid4()) if worker else None,
        reason,
        detail,
        occurred_us,
        attempt,
    )
    encoded = encode_job_event(*args)
    assert encoded == reference(*args)
    assert common_pb2.JobEvent.FromString(encoded).id == event_id
