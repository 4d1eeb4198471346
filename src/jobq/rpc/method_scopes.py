"""The scope each RPC needs, in one table (README "Security" shows the same table).

Keys are gRPC method paths (`/package.Service/Method`). The standard health service needs no
credential (Kubernetes probes and load balancers call it); every other method is listed here,
and a test fails when a method of any served service is missing, so a new RPC cannot go out
unguarded.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from jobq.domain.scopes import Scope

__all__ = ["METHOD_SCOPES", "PUBLIC_METHODS", "method_path"]


def method_path(service: str, method: str) -> str:
    return f"/{service}/{method}"


_JOBS = "jobq.v1.JobService"
_WORKERS = "jobq.v1.WorkerService"
_ADMIN = "jobq.v1.AdminService"
_REFLECTION = "grpc.reflection.v1alpha.ServerReflection"

PUBLIC_METHODS: Final = frozenset(
    method_path("grpc.health.v1.Health", method) for method in ("Check", "Watch", "List")
)
"""Answered without a credential: the standard gRPC health service."""

_TABLE: dict[str, Scope] = {
    method_path(_JOBS, "SubmitJob"): Scope.SUBMIT,
    method_path(_JOBS, "SubmitJobs"): Scope.SUBMIT,
    method_path(_JOBS, "SubmitJobStream"): Scope.SUBMIT,
    method_path(_JOBS, "GetJobStatus"): Scope.READ,
    method_path(_JOBS, "ListJobs"): Scope.READ,
    method_path(_JOBS, "GetJobLogs"): Scope.READ,
    method_path(_JOBS, "ListJobEvents"): Scope.READ,
    method_path(_JOBS, "WatchJobs"): Scope.READ,
    method_path(_JOBS, "CancelJob"): Scope.ADMIN,
    method_path(_JOBS, "RetryJob"): Scope.ADMIN,
    method_path(_WORKERS, "RegisterWorker"): Scope.WORKER,
    method_path(_WORKERS, "Heartbeat"): Scope.WORKER,
    method_path(_WORKERS, "StreamJobs"): Scope.WORKER,
    method_path(_WORKERS, "StreamJobBatches"): Scope.WORKER,
    method_path(_WORKERS, "AckJobs"): Scope.WORKER,
    method_path(_WORKERS, "ReportResult"): Scope.WORKER,
    method_path(_WORKERS, "ReportResults"): Scope.WORKER,
    method_path(_WORKERS, "Deregister"): Scope.WORKER,
    method_path(_WORKERS, "ReportProgress"): Scope.WORKER,
    method_path(_ADMIN, "ListQueues"): Scope.READ,
    method_path(_ADMIN, "GetQueueStats"): Scope.READ,
    method_path(_ADMIN, "ListWorkers"): Scope.READ,
    method_path(_ADMIN, "GetSystemStatus"): Scope.READ,
    method_path(_ADMIN, "CreateQueue"): Scope.ADMIN,
    method_path(_ADMIN, "DeleteQueue"): Scope.ADMIN,
    method_path(_ADMIN, "PauseQueue"): Scope.ADMIN,
    method_path(_ADMIN, "ResumeQueue"): Scope.ADMIN,
    method_path(_ADMIN, "SetQueueLimits"): Scope.ADMIN,
    method_path(_ADMIN, "DrainWorker"): Scope.ADMIN,
    method_path(_ADMIN, "ShutdownWorker"): Scope.ADMIN,
    method_path(_ADMIN, "ListAuditEvents"): Scope.ADMIN,
    method_path(_ADMIN, "ListSchedules"): Scope.READ,
    method_path(_ADMIN, "GetSchedule"): Scope.READ,
    method_path(_ADMIN, "CreateSchedule"): Scope.ADMIN,
    method_path(_ADMIN, "DeleteSchedule"): Scope.ADMIN,
    method_path(_ADMIN, "PauseSchedule"): Scope.ADMIN,
    method_path(_ADMIN, "ResumeSchedule"): Scope.ADMIN,
}
_TABLE[method_path(_REFLECTION, "ServerReflectionInfo")] = Scope.READ

METHOD_SCOPES: Final = MappingProxyType(_TABLE)
"""Method path → the one scope a caller needs for it."""
