"""The domain state enums match the proto enums and the SPEC §4 reasons."""

from __future__ import annotations

from enum import Enum

from google.protobuf.descriptor import EnumDescriptor

from jobq.domain.states import JobStatus, Reason, WorkerStatus
from jobq.rpc._gen import common_pb2

SPEC_REASONS = [
    "SUBMITTED",
    "ASSIGNED",
    "STARTED",
    "COMPLETED",
    "FAILED",
    "RETRY",
    "RETRIES_EXHAUSTED",
    "CANCELLED",
    "TTL_EXPIRED",
    "MANUAL_RETRY",
    "WORKER_LOST",
    "ASSIGNMENT_TIMEOUT",
    "WORKER_SHUTDOWN",
    "DELIVERY_FAILED",  # our addition: a failed stream write
    "REFUSED",  # our addition: a job its worker will never run, dead-lettered at once
    "WORKER_RESTARTED",  # our addition: a new process registered under the worker's id
    "POISON",  # our addition: interrupted more often than the queue's max_interruptions
    "DEPENDENCIES_MET",  # issue 18: a WAITING job's prerequisites are all DONE
    "DEPENDENCY_FAILED",  # issue 18: a prerequisite of a WAITING job was dead-lettered
    "CANCEL_REQUESTED",  # our addition (issue 18): CancelJob asked a RUNNING job to stop
]


def _proto_names(descriptor: EnumDescriptor, prefix: str) -> list[str]:
    """The enum's value names without `prefix`, UNSPECIFIED left out, in number order."""
    names = []
    for value in sorted(descriptor.values, key=lambda value: value.number):
        assert value.name.startswith(prefix), value.name
        if value.number == 0:
            assert value.name == f"{prefix}UNSPECIFIED"
            continue
        names.append(value.name.removeprefix(prefix))
    return names


def _members(enum: type[Enum]) -> list[str]:
    for member in enum:
        assert member.value == member.name
    return [member.name for member in enum]


def test_job_status_matches_proto() -> None:
    proto = _proto_names(common_pb2.JobStatus.DESCRIPTOR, "JOB_STATUS_")
    assert _members(JobStatus) == proto


def test_worker_status_matches_proto() -> None:
    proto = _proto_names(common_pb2.WorkerStatus.DESCRIPTOR, "WORKER_STATUS_")
    assert _members(WorkerStatus) == proto


def test_reason_matches_spec() -> None:
    assert _members(Reason) == SPEC_REASONS
