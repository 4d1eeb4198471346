"""The JSON and YAML documents: complete, in a fixed order, and read back unchanged."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import yaml
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from jobq.ctl.documents import bytes_value, dump_json, dump_yaml, enum_name, to_document
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


CREATED = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def a_job(**fields: object) -> cpb.Job:
    base: dict[str, object] = {
        "job_id": "01a20275-85b7-7060-96a7-b813ac40ca99",
        "queue_name": "default",
        "payload": b'{"command": ["echo", "hello"]}',
        "priority": 3,
        "status": cpb.JOB_STATUS_DONE,
        "max_retries": 2,
        "result": b"hello\n",
        "created_at": stamp(CREATED),
    }
    base.update(fields)
    return cpb.Job(**base)  # type: ignore[arg-type]


def test_a_job_has_every_field_in_proto_order() -> None:
    document = to_document(a_job())
    assert list(document) == [f.name for f in cpb.Job.DESCRIPTOR.fields]
    assert document["job_id"] == "01a20275-85b7-7060-96a7-b813ac40ca99"
    assert document["payload"] == '{"command": ["echo", "hello"]}'
    assert document["result"] == "hello\n"
    assert document["status"] == "DONE"
    assert document["priority"] == 3
    assert document["created_at"] == "2024-05-01T12:00:00.123456Z"
    assert document["started_at"] is None  # unset timestamps are null, never 1970
    assert document["worker_id"] == ""


def test_nested_messages_and_unspecified_enums() -> None:
    event = cpb.JobEvent(id=1, job_id="j", to_status=cpb.JOB_STATUS_PENDING, reason="SUBMITTED")
    document = to_document(jpb.GetJobLogsResponse(events=[event]))
    assert document["events"][0]["from_status"] is None
    assert document["events"][0]["to_status"] == "PENDING"
    assert document["events"][0]["occurred_at"] is None


def test_bytes_that_are_not_utf8_are_base64_with_a_marker() -> None:
    raw = b"\xff\xfe\x00binary"
    document = to_document(a_job(result=raw))
    assert document["result"] == {"base64": base64.b64encode(raw).decode()}
    assert bytes_value("é".encode()) == "é"


@given(st.binary(max_size=64))
def test_bytes_survive_the_document(data: bytes) -> None:
    value = bytes_value(data)
    restored = base64.b64decode(value["base64"]) if isinstance(value, dict) else value.encode()
    assert restored == data


def test_maps_are_sorted_and_durations_are_seconds() -> None:
    reply = apb.GetSystemStatusResponse(
        version="1.2.3",
        uptime=Duration(seconds=90, nanos=500_000_000),
        started_at=stamp(CREATED),
        components=[apb.ComponentHealth(name="postgres", state=apb.COMPONENT_STATE_HEALTHY)],
        jobs_by_status={"RUNNING": 2, "DONE": 5, "PENDING": 1},
    )
    document = to_document(reply)
    assert document["uptime"] == 90.5
    assert list(document["jobs_by_status"]) == ["DONE", "PENDING", "RUNNING"]
    assert document["workers_by_status"] == {}
    assert document["components"] == [{"name": "postgres", "state": "HEALTHY", "detail": ""}]


def test_optional_fields_that_are_unset_are_null() -> None:
    assert to_document(apb.CreateQueueRequest(name="q"))["max_retries"] is None
    assert to_document(apb.CreateQueueRequest(name="q", max_retries=0))["max_retries"] == 0


def test_enum_names_lose_their_prefix_and_keep_unknown_numbers() -> None:
    assert enum_name(cpb.JobStatus.DESCRIPTOR, cpb.JOB_STATUS_DEAD_LETTERED) == "DEAD_LETTERED"
    assert enum_name(cpb.WorkerStatus.DESCRIPTOR, cpb.WORKER_STATUS_DRAINING) == "DRAINING"
    assert enum_name(apb.ComponentState.DESCRIPTOR, apb.COMPONENT_STATE_DISABLED) == "DISABLED"
    assert enum_name(cpb.JobStatus.DESCRIPTOR, 0) is None
    assert enum_name(cpb.JobStatus.DESCRIPTOR, 42) == "42"


def test_json_and_yaml_read_back_to_the_same_document() -> None:
    document = to_document(jpb.ListJobsResponse(jobs=[a_job(), a_job()], next_page_token="t"))
    assert json.loads(dump_json(document)) == document
    assert yaml.safe_load(dump_yaml(document)) == document
    assert list(yaml.safe_load(dump_yaml(document))["jobs"][0]) == list(document["jobs"][0])


def test_json_is_stable() -> None:
    assert dump_json(to_document(a_job())) == dump_json(to_document(a_job()))
