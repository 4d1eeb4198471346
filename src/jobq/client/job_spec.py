"""What a submit sends: the payload a worker runs and the options around it, built and checked
on the client before any call, so a job the server would refuse fails here with the same words.

    {"handler": "myapp.tasks:resize", "args": [...], "kwargs": {...}}   a Python handler
    {"command": ["echo", "hi"], "env": {...}, "cwd": "...", ...}        a command

A handler is named by a string or given as the function: a `@jobq.task` function carries the
name it was registered under (`task_name`); any other module-level function is named
"module:qualname", which a worker runs when it was started with `--import module`.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from uuid import UUID

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from jobq.client.errors import CallFailed, JobCancelled, JobDeadLettered, JobFailed
from jobq.client.job_info import JobInfo, JobStatus
from jobq.domain.errors import InvalidArgument
from jobq.domain.ids import uuid7_text
from jobq.domain.payload import PayloadError, check_document
from jobq.domain.validation import QUEUE_NAME_PATTERN, check_concurrency_key, check_depends_on
from jobq.observability import tracing
from jobq.rpc._gen import job_service_pb2 as jpb

__all__ = [
    "DEFAULT_QUEUE",
    "InvalidJob",
    "JobSpec",
    "SubmitOptions",
    "command_job",
    "decode_result",
    "handler_job",
    "handler_name",
    "identify_by_key",
    "outcome",
]

DEFAULT_QUEUE: Final = "default"
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255

Handler = str | Callable[..., Any]
"""A registered handler name, or the function itself."""
Delay = float | int | timedelta


class InvalidJob(CallFailed, ValueError):
    """A job refused on the client, before any call: what the server would answer with
    INVALID_ARGUMENT (code "INVALID_ARGUMENT", so one `except CallFailed` covers both)."""

    def __init__(self, details: str) -> None:
        super().__init__("INVALID_ARGUMENT", details)


@dataclass(frozen=True)
class SubmitOptions:
    """Where and when a job runs. None leaves the choice to the server (the queue's
    max_retries, at once). `idempotency_key` None: a fresh random key per job, so the client's own
    retries of the call can never create the job twice."""

    queue: str = DEFAULT_QUEUE
    priority: int = 0
    delay: Delay | None = None
    not_before: datetime | None = None
    max_retries: int | None = None
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    """The key the queue's per-key concurrency and rate limits count the job under."""
    depends_on: tuple[str, ...] = ()
    """The ids of the jobs this one runs after (README, "Dependencies"): it waits WAITING until
    they are all DONE, and is dead-lettered (DEPENDENCY_FAILED) if one is dead-lettered."""

    def __post_init__(self) -> None:
        if not isinstance(self.queue, str) or not QUEUE_NAME_PATTERN.fullmatch(self.queue):
            raise InvalidJob(
                f"queue name {self.queue!r} is not 1 to 128 characters from A-Z a-z 0-9 _ . -"
            )
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise InvalidJob("priority must be an integer from 0 to 9")
        if not 0 <= self.priority <= 9:
            raise InvalidJob(f"priority must be from 0 to 9, got {self.priority}")
        if self.delay is not None and self.not_before is not None:
            raise InvalidJob("give delay or not_before, not both")
        if self.delay is not None and _seconds(self.delay) < 0:
            raise InvalidJob("delay must not be negative")
        if self.max_retries is not None and not 0 <= self.max_retries <= 1000:
            raise InvalidJob(f"max_retries must be from 0 to 1000, got {self.max_retries}")
        key = self.idempotency_key
        if key is not None and not (
            0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH and key.isascii() and key.isprintable()
        ):
            raise InvalidJob("idempotency_key must be 1 to 255 printable ASCII characters")
        if self.concurrency_key is not None:
            if not isinstance(self.concurrency_key, str) or not self.concurrency_key:
                raise InvalidJob("concurrency_key must be 1 to 255 printable ASCII characters")
            try:
                check_concurrency_key(self.concurrency_key)  # the server's own rule
            except InvalidArgument as exc:
                raise InvalidJob(str(exc)) from None
        if self.depends_on:
            try:
                check_depends_on(self.depends_on)
            except InvalidArgument as exc:
                raise InvalidJob(str(exc)) from None


def submit_options(
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    delay: Delay | None = None,
    not_before: datetime | None = None,
    max_retries: int | None = None,
    idempotency_key: str | None = None,
    concurrency_key: str | None = None,
    depends_on: Iterable[object] | None = None,
) -> SubmitOptions:
    """SubmitOptions of a submit call's arguments. The common ones (no delay, time, key or
    prerequisites) are made once per (queue, priority, max_retries) and shared: their checks
    then cost nothing per submit. `depends_on` takes job ids (text or UUID) or the jobs
    themselves (what submit returns, or a JobInfo)."""
    if depends_on is not None:
        return SubmitOptions(
            queue,
            priority,
            delay,
            not_before,
            max_retries,
            idempotency_key,
            concurrency_key,
            prerequisite_ids(depends_on),
        )
    if delay is None and not_before is None and idempotency_key is None:
        try:
            return _plain_options(queue, priority, max_retries, concurrency_key)
        except TypeError:  # an unhashable argument: let the checks below name it
            pass
    return SubmitOptions(
        queue, priority, delay, not_before, max_retries, idempotency_key, concurrency_key
    )


def prerequisite_ids(jobs: Iterable[object]) -> tuple[str, ...]:
    """The job ids of `jobs`: text or UUIDs as they are, a submitted Job or AsyncJob by its
    `id`, a JobInfo by its `job_id`."""
    if isinstance(jobs, str | bytes):
        raise InvalidJob("depends_on takes a list of jobs or job ids, not one string")
    ids = []
    for job in jobs:
        job_id = (
            job
            if isinstance(job, str | UUID)
            else getattr(job, "job_id", None) or getattr(job, "id", None)
        )
        if not isinstance(job_id, str | UUID):
            raise InvalidJob(f"depends_on: {job!r} is neither a job nor a job id")
        ids.append(str(job_id))
    return tuple(ids)


@functools.lru_cache(maxsize=256, typed=True)  # typed: True is not the priority 1
def _plain_options(
    queue: str, priority: int, max_retries: int | None, concurrency_key: str | None
) -> SubmitOptions:
    return SubmitOptions(queue, priority, None, None, max_retries, None, concurrency_key)


def _seconds(delay: Delay) -> float:
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if not math.isfinite(seconds):
        raise InvalidJob("delay must be a finite number of seconds")
    return seconds


@dataclass(frozen=True)
class JobSpec:
    """One job to submit: its payload (JSON bytes, already checked) and its options."""

    payload: bytes
    options: SubmitOptions = SubmitOptions()

    def to_request(
        self, idempotency_key: str | None = None, *, client_id: bool = False
    ) -> jpb.SubmitJobRequest:
        """The SubmitJobRequest, with what makes its retries safe: the options' key, else
        `idempotency_key`, else, with `client_id`, a job id chosen here (a UUIDv7: the server
        takes a repeat of it for the same job, at no cost beyond its primary key), else a new
        random key (128 bits from the OS, as hex: what str(uuid4()) is made of, at a fifth of
        the cost). Servers before SubmitJobStream ignore a job id: send one only to a server
        that has the stream."""
        options = self.options
        key = options.idempotency_key or idempotency_key
        if key is None and client_id:
            request = jpb.SubmitJobRequest(
                queue_name=options.queue,
                payload=self.payload,
                priority=options.priority,
                job_id=uuid7_text(),
            )
        else:
            request = jpb.SubmitJobRequest(
                queue_name=options.queue,
                payload=self.payload,
                priority=options.priority,
                idempotency_key=key or os.urandom(16).hex(),
            )
        if options.max_retries is not None:
            request.max_retries = options.max_retries
        if options.concurrency_key is not None:
            request.concurrency_key = options.concurrency_key
        if options.depends_on:
            request.depends_on.extend(options.depends_on)
        if options.delay is not None:
            duration = Duration()
            duration.FromTimedelta(timedelta(seconds=_seconds(options.delay)))
            request.delay.CopyFrom(duration)
        if options.not_before is not None:
            stamp = Timestamp()
            stamp.FromDatetime(options.not_before)  # a naive datetime is taken as UTC
            request.not_before.CopyFrom(stamp)
        # Built in the caller's context: its current OpenTelemetry span (a traced web request)
        # becomes the parent of the job's spans, per job, as batching mixes callers (issue 20).
        caller = tracing.caller_context()
        if caller is not None:
            request.traceparent, request.tracestate = caller
        return request


def identify_by_key(requests: Sequence[jpb.SubmitJobRequest]) -> None:
    """Give each request that a client-chosen job id identifies that id as its idempotency key
    instead, for a server that knows keys but not job ids (one without SubmitJobStream)."""
    for request in requests:
        if request.job_id and not request.idempotency_key:
            request.idempotency_key = request.job_id
            request.ClearField("job_id")


def handler_name(handler: Handler) -> str:
    """The name a payload gives `handler`: the string itself, a task's registered name, or
    "module:qualname" of a module-level function."""
    if isinstance(handler, str):
        if not handler:
            raise InvalidJob("handler name must not be empty")
        return handler
    registered = getattr(handler, "task_name", None)
    if isinstance(registered, str) and registered:
        return registered
    module = getattr(handler, "__module__", None)
    qualname = getattr(handler, "__qualname__", None)
    if not (isinstance(module, str) and isinstance(qualname, str)) or "<locals>" in qualname:
        raise InvalidJob(
            f"cannot name {handler!r} in a payload: decorate it with @jobq.task, define it at "
            "the top of a module, or pass its registered name"
        )
    return f"{module}:{qualname}"


_ENCODER: Final = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
"""json.dumps with these arguments would build an encoder for every payload."""


def _encode(document: Mapping[str, Any]) -> bytes:
    try:
        payload = _ENCODER.encode(document).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJob(f"the job's arguments are not JSON-serialisable: {exc}") from None
    try:
        # The very checks the server and the worker make, on the document itself: it went
        # through json.dumps, so its lists and objects are what they will decode to.
        check_document(document)
    except PayloadError as exc:
        raise InvalidJob(exc.message) from None
    return payload


def handler_job(
    handler: Handler,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    options: SubmitOptions | None = None,
) -> JobSpec:
    """A job that calls a Python handler with JSON-encodable `args` and `kwargs`."""
    document: dict[str, Any] = {"handler": handler_name(handler)}
    if args:
        document["args"] = list(args)
    if kwargs:
        document["kwargs"] = dict(kwargs)
    return JobSpec(_encode(document), options or SubmitOptions())


def command_job(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout_s: float | None = None,
    stdin: str | None = None,
    options: SubmitOptions | None = None,
) -> JobSpec:
    """A job that runs `argv` without a shell (the worker must allow the executable)."""
    if isinstance(argv, str):
        raise InvalidJob('a command is a list of strings, e.g. ["echo", "hi"], not one string')
    document: dict[str, Any] = {"command": list(argv)}
    if env:
        document["env"] = dict(env)
    if cwd is not None:
        document["cwd"] = cwd
    if timeout_s is not None:
        document["timeout_s"] = timeout_s
    if stdin is not None:
        document["stdin"] = stdin
    return JobSpec(_encode(document), options or SubmitOptions())


def is_command(payload: bytes) -> bool:
    try:
        return "command" in json.loads(payload)
    except (ValueError, TypeError):
        return False


def decode_result(job: JobInfo) -> Any:
    """A DONE job's result: a handler's return value decoded from JSON (None when it returned
    nothing), or a command's stdout as bytes."""
    if is_command(job.payload):
        return job.result
    if not job.result:
        return None
    return json.loads(job.result)


def outcome(job: JobInfo, reason: str) -> Any:
    """The decoded result of an ended job, or the JobError saying how it ended without one.
    `reason` is the reason of its dead-lettering, from its log ("" when unknown)."""
    if job.status is JobStatus.DONE:
        return decode_result(job)
    if reason == "CANCELLED":
        raise JobCancelled(job, reason)
    if reason == "RETRIES_EXHAUSTED":
        raise JobFailed(job, reason)
    raise JobDeadLettered(job, reason)
