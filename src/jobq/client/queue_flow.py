"""Queues' flow control in the SDK (issue 18): pause, resume and limits (README "Flow
control"), as `Client` and `AsyncClient` methods build and read them."""

from __future__ import annotations

from dataclasses import dataclass

from jobq.client.job_spec import InvalidJob
from jobq.domain.flow_limits import Rate, check_limit, check_rate, parse_rate
from jobq.rpc._gen import admin_service_pb2 as apb
from jobq.rpc._gen import common_pb2
from jobq.rpc.convert import rate_from_proto, rate_to_proto

RateSpec = str | tuple[int, float]
"""A rate: "10/1s", "100/5m", "3/500ms", or (limit, period in seconds); a limit of 0 ("0")
removes it."""


@dataclass(frozen=True)
class QueueInfo:
    """A queue's settings as the server last reported them."""

    name: str
    max_retries: int
    max_interruptions: int
    ttl_seconds: int | None
    paused: bool
    max_running: int | None
    key_max_running: int | None
    rate: Rate | None
    key_rate: Rate | None

    @classmethod
    def from_proto(cls, queue: common_pb2.Queue) -> QueueInfo:
        return cls(
            name=queue.name,
            max_retries=queue.max_retries,
            max_interruptions=queue.max_interruptions,
            ttl_seconds=queue.ttl_seconds or None,
            paused=queue.paused,
            max_running=queue.max_running or None,
            key_max_running=queue.key_max_running or None,
            rate=rate_from_proto(queue.rate) if queue.HasField("rate") else None,
            key_rate=rate_from_proto(queue.key_rate) if queue.HasField("key_rate") else None,
        )


def limits_request(
    name: str,
    *,
    max_running: int | None,
    key_max_running: int | None,
    rate: RateSpec | None,
    key_rate: RateSpec | None,
) -> apb.SetQueueLimitsRequest:
    """The SetQueueLimits request; InvalidJob for a value the server would refuse."""
    request = apb.SetQueueLimitsRequest(name=name)
    try:
        check_limit(max_running, "max_running")
        check_limit(key_max_running, "key_max_running")
        if max_running is not None:
            request.max_running = max_running
        if key_max_running is not None:
            request.key_max_running = key_max_running
        if rate is not None:
            request.rate.CopyFrom(rate_to_proto(_parse(rate, "rate")))
        if key_rate is not None:
            request.key_rate.CopyFrom(rate_to_proto(_parse(key_rate, "key_rate")))
    except ValueError as exc:
        raise InvalidJob(str(exc)) from None
    if not any(field.name != "name" for field, _ in request.ListFields()):
        raise InvalidJob("give max_running, key_max_running, rate or key_rate")
    return request


def _parse(spec: RateSpec, what: str) -> Rate:
    if isinstance(spec, str):
        return parse_rate(spec)
    limit, period_s = spec
    rate = Rate(int(limit), float(period_s))
    check_rate(rate, what)
    return rate
