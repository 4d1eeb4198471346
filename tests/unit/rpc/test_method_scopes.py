"""The scope each RPC needs, pinned: changing who may call what is a decision, not an accident."""

from __future__ import annotations

from jobq.domain.scopes import Scope
from jobq.rpc.method_scopes import METHOD_SCOPES, PUBLIC_METHODS

EXPECTED = {
    "submit": {"JobService/SubmitJob", "JobService/SubmitJobs", "JobService/SubmitJobStream"},
    "read": {
        "JobService/GetJobStatus",
        "JobService/ListJobs",
        "JobService/GetJobLogs",
        "JobService/ListJobEvents",
        "JobService/WatchJobs",
        "AdminService/ListQueues",
        "AdminService/GetQueueStats",
        "AdminService/ListWorkers",
        "AdminService/GetSystemStatus",
        "ServerReflection/ServerReflectionInfo",
        "AdminService/ListSchedules",
        "AdminService/GetSchedule",
    },
    "admin": {
        "JobService/CancelJob",
        "JobService/RetryJob",
        "AdminService/CreateQueue",
        "AdminService/DeleteQueue",
        "AdminService/PauseQueue",
        "AdminService/ResumeQueue",
        "AdminService/SetQueueLimits",
        "AdminService/DrainWorker",
        "AdminService/ShutdownWorker",
        "AdminService/ListAuditEvents",
        "AdminService/CreateSchedule",
        "AdminService/DeleteSchedule",
        "AdminService/PauseSchedule",
        "AdminService/ResumeSchedule",
    },
    "worker": {
        "WorkerService/RegisterWorker",
        "WorkerService/Heartbeat",
        "WorkerService/StreamJobs",
        "WorkerService/StreamJobBatches",
        "WorkerService/AckJobs",
        "WorkerService/ReportResult",
        "WorkerService/ReportResults",
        "WorkerService/Deregister",
        "WorkerService/ReportProgress",
    },
}


def _short(path: str) -> str:
    service, method = path.lstrip("/").split("/")
    return f"{service.rsplit('.', 1)[-1]}/{method}"


def test_each_method_needs_the_scope_the_readme_documents() -> None:
    actual: dict[str, set[str]] = {scope.value: set() for scope in Scope}
    for path, scope in METHOD_SCOPES.items():
        actual[scope.value].add(_short(path))
    assert actual == EXPECTED


def test_only_the_standard_health_service_is_public() -> None:
    assert {_short(path) for path in PUBLIC_METHODS} == {
        "Health/Check",
        "Health/Watch",
        "Health/List",
    }


def test_the_readme_scope_table_matches_the_code() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- scopes:start -->\n(.*?)<!-- scopes:end -->", readme, re.S)
    assert block is not None
    documented: dict[str, set[str]] = {}
    for line in block.group(1).splitlines()[2:]:
        scope, allows = (cell.strip() for cell in line.strip("|").split("|"))
        names = {re.sub(r" \(.*\)$", "", name.strip()) for name in allows.split(",")}
        documented[scope.strip("`")] = names
    assert documented == EXPECTED
