"""The committed gRPC modules match proto/*.proto, and every service keeps its RPCs."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf.descriptor import FileDescriptor

from jobq.rpc._gen import admin_service_pb2, job_service_pb2, worker_service_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
GEN_DIR = REPO_ROOT / "src" / "jobq" / "rpc" / "_gen"
HINT = "the generated code is out of date: run `make proto` and commit src/jobq/rpc/_gen"


def _load_gen_proto() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "jobq_tools_gen_proto", REPO_ROOT / "tools" / "gen_proto.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(directory: Path) -> dict[str, bytes]:
    """The regular files of a directory (no caches), by name."""
    return {path.name: path.read_bytes() for path in directory.iterdir() if path.is_file()}


def test_committed_code_matches_protos(tmp_path: Path) -> None:
    generate: Callable[[Path], None] = _load_gen_proto().generate
    generate(tmp_path)
    expected = _files(tmp_path)
    committed = _files(GEN_DIR)

    missing = sorted(expected.keys() - committed.keys())
    extra = sorted(committed.keys() - expected.keys())
    assert not missing, f"missing from {GEN_DIR}: {missing}; {HINT}"
    assert not extra, f"not generated from proto/ but present in {GEN_DIR}: {extra}; {HINT}"
    differing = sorted(name for name in expected if expected[name] != committed[name])
    assert not differing, f"differ from what proto/ generates: {differing}; {HINT}"


EXPECTED_RPCS = {
    "JobService": (
        job_service_pb2.DESCRIPTOR,
        [
            "SubmitJob",
            "SubmitJobs",
            "SubmitJobStream",
            "CancelJob",
            "GetJobStatus",
            "ListJobs",
            "GetJobLogs",
            "ListJobEvents",
            "RetryJob",
            "WatchJobs",
        ],
    ),
    "WorkerService": (
        worker_service_pb2.DESCRIPTOR,
        [
            "RegisterWorker",
            "Heartbeat",
            "StreamJobs",
            "StreamJobBatches",
            "AckJobs",
            "ReportResult",
            "ReportResults",
            "Deregister",
            "ReportProgress",
        ],
    ),
    "AdminService": (
        admin_service_pb2.DESCRIPTOR,
        [
            "CreateQueue",
            "DeleteQueue",
            "ListQueues",
            "GetQueueStats",
            "PauseQueue",
            "ResumeQueue",
            "SetQueueLimits",
            "ListWorkers",
            "DrainWorker",
            "ShutdownWorker",
            "GetSystemStatus",
            "ListAuditEvents",
            "CreateSchedule",
            "ListSchedules",
            "GetSchedule",
            "DeleteSchedule",
            "PauseSchedule",
            "ResumeSchedule",
        ],
    ),
}


@pytest.mark.parametrize("service_name", sorted(EXPECTED_RPCS))
def test_service_has_exactly_its_rpcs(service_name: str) -> None:
    file_descriptor: FileDescriptor
    file_descriptor, expected = EXPECTED_RPCS[service_name]
    service = file_descriptor.services_by_name[service_name]
    assert service.full_name == f"jobq.v1.{service_name}"
    assert [method.name for method in service.methods] == expected


def test_only_the_job_streams_the_watch_stream_and_the_submit_stream() -> None:
    streaming = [
        (method.full_name, method.client_streaming, method.server_streaming)
        for _, (file_descriptor, _) in sorted(EXPECTED_RPCS.items())
        for service in file_descriptor.services_by_name.values()
        for method in service.methods
        if method.client_streaming or method.server_streaming
    ]
    assert streaming == [
        ("jobq.v1.JobService.SubmitJobStream", True, True),
        ("jobq.v1.JobService.WatchJobs", False, True),
        ("jobq.v1.WorkerService.StreamJobs", False, True),
        ("jobq.v1.WorkerService.StreamJobBatches", False, True),
    ]
