"""The /api/v1 route table: each HTTP route is one unary RPC, and says how the request is built.

One table serves both the handlers (`api.py`) and the OpenAPI document (`openapi.py`), so the
document cannot drift from what is served. A route names its RPC by method path, which path
parameters and query parameters fill which request fields, and whether a JSON body fills the
rest of the request message (proto3 JSON, unknown fields refused).

Only the client and operator RPCs are here. The worker protocol (RegisterWorker, StreamJobs,
ReportResult ...) stays gRPC-only: it is streaming, long-lived and needs the worker scope, and
nothing but jq-worker speaks it. WatchJobs and SubmitJobStream are streams too: poll
`GET /api/v1/jobs/{job_id}` and use `POST /api/v1/jobs:batch` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from jobq.rpc.method_scopes import method_path

__all__ = ["API_PREFIX", "API_ROUTES", "ApiRoute", "Body"]

API_PREFIX = "/api/v1"

_JOBS = "jobq.v1.JobService"
_ADMIN = "jobq.v1.AdminService"


class Body(Enum):
    """What a route does with a request body."""

    NONE = "none"
    """No body: a GET. A body sent anyway is refused (400)."""
    OPTIONAL = "optional"
    """An action on the resource the path names: no body, or a JSON object with the request's
    other fields (DELETE /queues/{name} may take {"force": true})."""
    REQUIRED = "required"
    """A JSON object: the request message (create, submit, set limits)."""


@dataclass(frozen=True, slots=True)
class ApiRoute:
    http_method: str
    path: str
    """Under API_PREFIX, with `{param}` placeholders (Starlette's and OpenAPI's syntax)."""
    rpc: str
    """The gRPC method path the route calls through the gateway."""
    summary: str
    tag: str
    body: Body = Body.NONE
    path_fields: Mapping[str, str] = field(default_factory=dict)
    """Path parameter → the request field it fills."""
    query_fields: Mapping[str, str] = field(default_factory=dict)
    """Query parameter → the request field it fills. Any other query parameter is a 400."""
    name: str = ""
    """The OpenAPI operationId when the RPC's name is taken by another route."""

    @property
    def operation_id(self) -> str:
        return self.name or self.rpc.rsplit("/", 1)[1]

    @property
    def full_path(self) -> str:
        return API_PREFIX + self.path


def _r(
    http_method: str,
    path: str,
    service: str,
    method: str,
    summary: str,
    tag: str,
    body: Body = Body.NONE,
    path_fields: Mapping[str, str] | None = None,
    query_fields: Mapping[str, str] | None = None,
    name: str = "",
) -> ApiRoute:
    return ApiRoute(
        http_method,
        path,
        method_path(service, method),
        summary,
        tag,
        body,
        MappingProxyType(dict(path_fields or {})),
        MappingProxyType(dict(query_fields or {})),
        name,
    )


_JOB_ID = {"job_id": "job_id"}
_QUEUE = {"name": "name"}
_WORKER = {"worker_id": "worker_id"}
_SCHEDULE = {"name": "name"}

API_ROUTES: tuple[ApiRoute, ...] = (
    # Jobs
    _r("POST", "/jobs", _JOBS, "SubmitJob", "Submit a job", "jobs", Body.REQUIRED),
    _r(
        "POST",
        "/jobs:batch",
        _JOBS,
        "SubmitJobs",
        "Submit many jobs, all or none",
        "jobs",
        Body.REQUIRED,
    ),
    _r(
        "GET",
        "/jobs",
        _JOBS,
        "ListJobs",
        "List jobs, newest first",
        "jobs",
        query_fields={
            "queue": "queue_name",
            "status": "status",
            "page_size": "limit",
            "page_token": "page_token",
        },
    ),
    _r(
        "GET",
        "/jobs/{job_id}",
        _JOBS,
        "GetJobStatus",
        "A job as it is now",
        "jobs",
        path_fields=_JOB_ID,
    ),
    _r(
        "GET",
        "/jobs/{job_id}/events",
        _JOBS,
        "ListJobEvents",
        "A job's lifecycle events, oldest first, paged by event id",
        "jobs",
        path_fields=_JOB_ID,
        query_fields={"after_id": "after_id", "limit": "limit", "newest": "newest"},
    ),
    _r(
        "GET",
        "/jobs/{job_id}/logs",
        _JOBS,
        "GetJobLogs",
        "A job's state changes, oldest first",
        "jobs",
        path_fields=_JOB_ID,
    ),
    _r(
        "POST",
        "/jobs/{job_id}/cancel",
        _JOBS,
        "CancelJob",
        "Cancel a job",
        "jobs",
        Body.OPTIONAL,
        _JOB_ID,
    ),
    _r(
        "POST",
        "/jobs/{job_id}/retry",
        _JOBS,
        "RetryJob",
        "Retry a failed or dead-lettered job",
        "jobs",
        Body.OPTIONAL,
        _JOB_ID,
    ),
    _r(
        "GET",
        "/events",
        _JOBS,
        "ListJobEvents",
        "Lifecycle events of every job (or one queue), oldest first",
        "jobs",
        query_fields={
            "queue": "queue_name",
            "job_id": "job_id",
            "after_id": "after_id",
            "limit": "limit",
            "newest": "newest",
        },
        name="ListAllJobEvents",
    ),
    # Queues
    _r("GET", "/queues", _ADMIN, "ListQueues", "Every queue, by name", "queues"),
    _r("POST", "/queues", _ADMIN, "CreateQueue", "Create a queue", "queues", Body.REQUIRED),
    _r(
        "DELETE",
        "/queues/{name}",
        _ADMIN,
        "DeleteQueue",
        "Delete a queue (with force=true: and its jobs)",
        "queues",
        Body.OPTIONAL,
        _QUEUE,
        {"force": "force"},
    ),
    _r(
        "GET",
        "/queues/{name}/stats",
        _ADMIN,
        "GetQueueStats",
        "A queue's counts per status, oldest pending age and settings",
        "queues",
        path_fields=_QUEUE,
    ),
    _r(
        "POST",
        "/queues/{name}/pause",
        _ADMIN,
        "PauseQueue",
        "Pause a queue",
        "queues",
        Body.OPTIONAL,
        _QUEUE,
    ),
    _r(
        "POST",
        "/queues/{name}/resume",
        _ADMIN,
        "ResumeQueue",
        "Resume a paused queue",
        "queues",
        Body.OPTIONAL,
        _QUEUE,
    ),
    _r(
        "PUT",
        "/queues/{name}/limits",
        _ADMIN,
        "SetQueueLimits",
        "Set or remove a queue's concurrency and rate limits",
        "queues",
        Body.REQUIRED,
        _QUEUE,
    ),
    # Workers
    _r(
        "GET",
        "/workers",
        _ADMIN,
        "ListWorkers",
        "Workers, optionally by status",
        "workers",
        query_fields={"status": "status"},
    ),
    _r(
        "POST",
        "/workers/{worker_id}/drain",
        _ADMIN,
        "DrainWorker",
        "Drain a worker: no new jobs",
        "workers",
        Body.OPTIONAL,
        _WORKER,
    ),
    _r(
        "POST",
        "/workers/{worker_id}/shutdown",
        _ADMIN,
        "ShutdownWorker",
        "Ask a worker to stop",
        "workers",
        Body.OPTIONAL,
        _WORKER,
    ),
    # Schedules
    _r("GET", "/schedules", _ADMIN, "ListSchedules", "Every schedule, by name", "schedules"),
    _r(
        "POST",
        "/schedules",
        _ADMIN,
        "CreateSchedule",
        "Create a schedule",
        "schedules",
        Body.REQUIRED,
    ),
    _r(
        "GET",
        "/schedules/{name}",
        _ADMIN,
        "GetSchedule",
        "A schedule and its next run times",
        "schedules",
        path_fields=_SCHEDULE,
    ),
    _r(
        "DELETE",
        "/schedules/{name}",
        _ADMIN,
        "DeleteSchedule",
        "Delete a schedule",
        "schedules",
        Body.OPTIONAL,
        _SCHEDULE,
    ),
    _r(
        "POST",
        "/schedules/{name}/pause",
        _ADMIN,
        "PauseSchedule",
        "Pause a schedule",
        "schedules",
        Body.OPTIONAL,
        _SCHEDULE,
    ),
    _r(
        "POST",
        "/schedules/{name}/resume",
        _ADMIN,
        "ResumeSchedule",
        "Resume a paused schedule",
        "schedules",
        Body.OPTIONAL,
        _SCHEDULE,
    ),
    # System
    _r("GET", "/system", _ADMIN, "GetSystemStatus", "Version, uptime, health, counts", "system"),
    _r(
        "GET",
        "/audit",
        _ADMIN,
        "ListAuditEvents",
        "The audit trail of admin actions, newest first",
        "system",
        query_fields={
            "action": "action",
            "actor": "actor",
            "page_size": "limit",
            "page_token": "page_token",
        },
    ),
)
"""Every /api/v1 route but the OpenAPI document's own."""
