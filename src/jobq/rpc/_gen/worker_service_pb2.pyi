import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerCommand(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_COMMAND_UNSPECIFIED: _ClassVar[WorkerCommand]
    WORKER_COMMAND_DRAIN: _ClassVar[WorkerCommand]
    WORKER_COMMAND_SHUTDOWN: _ClassVar[WorkerCommand]

class JobOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_OUTCOME_UNSPECIFIED: _ClassVar[JobOutcome]
    JOB_OUTCOME_SUCCEEDED: _ClassVar[JobOutcome]
    JOB_OUTCOME_FAILED: _ClassVar[JobOutcome]
    JOB_OUTCOME_SHUTDOWN: _ClassVar[JobOutcome]
    JOB_OUTCOME_REFUSED: _ClassVar[JobOutcome]
    JOB_OUTCOME_CANCELLED: _ClassVar[JobOutcome]
WORKER_COMMAND_UNSPECIFIED: WorkerCommand
WORKER_COMMAND_DRAIN: WorkerCommand
WORKER_COMMAND_SHUTDOWN: WorkerCommand
JOB_OUTCOME_UNSPECIFIED: JobOutcome
JOB_OUTCOME_SUCCEEDED: JobOutcome
JOB_OUTCOME_FAILED: JobOutcome
JOB_OUTCOME_SHUTDOWN: JobOutcome
JOB_OUTCOME_REFUSED: JobOutcome
JOB_OUTCOME_CANCELLED: JobOutcome

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "hostname", "concurrency", "queues", "version", "incarnation")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    hostname: str
    concurrency: int
    queues: _containers.RepeatedScalarFieldContainer[str]
    version: str
    incarnation: str
    def __init__(self, worker_id: _Optional[str] = ..., hostname: _Optional[str] = ..., concurrency: _Optional[int] = ..., queues: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ..., incarnation: _Optional[str] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ("worker_id", "heartbeat_interval_s", "incarnation", "heartbeat_timeout_s")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    heartbeat_interval_s: int
    incarnation: str
    heartbeat_timeout_s: float
    def __init__(self, worker_id: _Optional[str] = ..., heartbeat_interval_s: _Optional[int] = ..., incarnation: _Optional[str] = ..., heartbeat_timeout_s: _Optional[float] = ...) -> None: ...

class JobAttempt(_message.Message):
    __slots__ = ("job_id", "attempt", "claim_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    claim_id: str
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., claim_id: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "active_job_count", "running", "incarnation")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_JOB_COUNT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    active_job_count: int
    running: _containers.RepeatedCompositeFieldContainer[JobAttempt]
    incarnation: str
    def __init__(self, worker_id: _Optional[str] = ..., active_job_count: _Optional[int] = ..., running: _Optional[_Iterable[_Union[JobAttempt, _Mapping]]] = ..., incarnation: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("commands", "cancels")
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    CANCELS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedScalarFieldContainer[WorkerCommand]
    cancels: _containers.RepeatedCompositeFieldContainer[JobAttempt]
    def __init__(self, commands: _Optional[_Iterable[_Union[WorkerCommand, str]]] = ..., cancels: _Optional[_Iterable[_Union[JobAttempt, _Mapping]]] = ...) -> None: ...

class StreamJobsRequest(_message.Message):
    __slots__ = ("worker_id", "incarnation")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    incarnation: str
    def __init__(self, worker_id: _Optional[str] = ..., incarnation: _Optional[str] = ...) -> None: ...

class JobAssignment(_message.Message):
    __slots__ = ("job_id", "queue_name", "payload", "attempt", "worker_id", "priority", "retry_count", "max_retries", "timeout_s", "created_at", "claim_id", "traceparent", "tracestate")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    TRACESTATE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    queue_name: str
    payload: bytes
    attempt: int
    worker_id: str
    priority: int
    retry_count: int
    max_retries: int
    timeout_s: int
    created_at: _timestamp_pb2.Timestamp
    claim_id: str
    traceparent: str
    tracestate: str
    def __init__(self, job_id: _Optional[str] = ..., queue_name: _Optional[str] = ..., payload: _Optional[bytes] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., priority: _Optional[int] = ..., retry_count: _Optional[int] = ..., max_retries: _Optional[int] = ..., timeout_s: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., claim_id: _Optional[str] = ..., traceparent: _Optional[str] = ..., tracestate: _Optional[str] = ...) -> None: ...

class JobAssignmentBatch(_message.Message):
    __slots__ = ("assignments", "cancels")
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    CANCELS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[JobAssignment]
    cancels: _containers.RepeatedCompositeFieldContainer[JobAttempt]
    def __init__(self, assignments: _Optional[_Iterable[_Union[JobAssignment, _Mapping]]] = ..., cancels: _Optional[_Iterable[_Union[JobAttempt, _Mapping]]] = ...) -> None: ...

class AckJobsRequest(_message.Message):
    __slots__ = ("worker_id", "jobs", "incarnation")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    jobs: _containers.RepeatedCompositeFieldContainer[JobAttempt]
    incarnation: str
    def __init__(self, worker_id: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[JobAttempt, _Mapping]]] = ..., incarnation: _Optional[str] = ...) -> None: ...

class AckJobsResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[AttemptOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[AttemptOutcome, _Mapping]]] = ...) -> None: ...

class ReportResultRequest(_message.Message):
    __slots__ = ("worker_id", "job_id", "attempt", "outcome", "result", "error_message", "claim_id", "incarnation")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    job_id: str
    attempt: int
    outcome: JobOutcome
    result: bytes
    error_message: str
    claim_id: str
    incarnation: str
    def __init__(self, worker_id: _Optional[str] = ..., job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., outcome: _Optional[_Union[JobOutcome, str]] = ..., result: _Optional[bytes] = ..., error_message: _Optional[str] = ..., claim_id: _Optional[str] = ..., incarnation: _Optional[str] = ...) -> None: ...

class ReportResultResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReportResultsRequest(_message.Message):
    __slots__ = ("worker_id", "results", "incarnation")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    results: _containers.RepeatedCompositeFieldContainer[ReportResultRequest]
    incarnation: str
    def __init__(self, worker_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[ReportResultRequest, _Mapping]]] = ..., incarnation: _Optional[str] = ...) -> None: ...

class ReportResultsResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[AttemptOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[AttemptOutcome, _Mapping]]] = ...) -> None: ...

class AttemptOutcome(_message.Message):
    __slots__ = ("job_id", "attempt", "accepted", "message")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    accepted: bool
    message: str
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class DeregisterRequest(_message.Message):
    __slots__ = ("worker_id", "incarnation")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    incarnation: str
    def __init__(self, worker_id: _Optional[str] = ..., incarnation: _Optional[str] = ...) -> None: ...

class DeregisterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("job_id", "attempt", "claim_id", "fraction", "message")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    claim_id: str
    fraction: float
    message: str
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., claim_id: _Optional[str] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class ReportProgressRequest(_message.Message):
    __slots__ = ("worker_id", "items", "incarnation")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    items: _containers.RepeatedCompositeFieldContainer[JobProgress]
    incarnation: str
    def __init__(self, worker_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[JobProgress, _Mapping]]] = ..., incarnation: _Optional[str] = ...) -> None: ...

class ReportProgressResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[AttemptOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[AttemptOutcome, _Mapping]]] = ...) -> None: ...
