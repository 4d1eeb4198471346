"""Event sinks: the collaborators that carry job lifecycle events out of the server (SPEC §12).

`LogEventSink` is the harmless default; the Kafka sink plugs in behind the same `EventSink`
protocol, chosen by the composition root. `topic_for` and `kafka_client_config` live here so
the Kafka sink and `jq-server --dry-run` agree on topic names and client settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jobq.domain.records import JobEvent
from jobq.domain.states import JobStatus
from jobq.observability.logging_setup import get_logger

__all__ = [
    "JOB_TOPICS",
    "WORKER_HEARTBEAT_TOPIC",
    "EventSink",
    "LogEventSink",
    "kafka_client_config",
    "topic_for",
]

log = get_logger("jobq.events")

JOB_TOPICS: dict[JobStatus, str] = {
    JobStatus.PENDING: "job.submitted",
    JobStatus.ASSIGNED: "job.submitted",
    JobStatus.RUNNING: "job.started",
    JobStatus.DONE: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.DEAD_LETTERED: "job.dead-lettered",
}
"""The topic (before the prefix) of a transition into each status, as SPEC §12 lists them.
ASSIGNED shares job.submitted with PENDING: both mean "waiting to run" to a consumer."""

WORKER_HEARTBEAT_TOPIC = "worker.heartbeat"
"""The topic (before the prefix) of worker heartbeats."""


def topic_for(to_status: JobStatus, prefix: str = "") -> str:
    """The topic an event moving a job into `to_status` is published to.

    `prefix` (`kafka.topic_prefix`) is put before the name as it is, so it carries its own
    separator: prefix "prod." gives "prod.job.completed".
    """
    return prefix + JOB_TOPICS[to_status]


def kafka_client_config(
    bootstrap_servers: str,
    sasl_username: str = "",
    sasl_password: str = "",
    *,
    security_protocol: str = "SASL_SSL",
    sasl_mechanism: str = "PLAIN",
) -> dict[str, str]:
    """librdkafka settings shared by every Kafka client of jobq (sink, dry run).

    Without a SASL user name the connection is plaintext. With one, it defaults to SASL_SSL
    with PLAIN, what hosted Kafka services expect; a password is never sent unencrypted
    unless a caller asks for SASL_PLAINTEXT explicitly.
    """
    config = {"bootstrap.servers": bootstrap_servers}
    if sasl_username:
        config |= {
            "security.protocol": security_protocol,
            "sasl.mechanism": sasl_mechanism,
            "sasl.username": sasl_username,
            "sasl.password": sasl_password,
        }
    return config


class EventSink(Protocol):
    """Somewhere lifecycle events are published after their state change is committed."""

    async def publish(self, events: Sequence[JobEvent]) -> None:
        """Publish `events` in order. Must not raise for a delivery failure: log and count it."""
        ...

    async def healthy(self) -> bool:
        """Whether the destination answers now (for GetSystemStatus)."""
        ...

    async def close(self) -> None:
        """Flush what can be flushed quickly and release resources. Idempotent."""
        ...


class LogEventSink:
    """The default sink: each event becomes one debug log line (action="job.event").

    Debug, because `server/lifecycle.py` already logs every transition at the level it
    deserves; this sink exists so the event path is exercised even without Kafka. Each line
    names the topic the event would have on Kafka, with `topic_prefix` before it.
    """

    def __init__(self, topic_prefix: str = "") -> None:
        self._topic_prefix = topic_prefix

    async def publish(self, events: Sequence[JobEvent]) -> None:
        for event in events:
            log.debug(
                "job event",
                action="job.event",
                event_id=event.id,
                job_id=str(event.job_id),
                queue=event.queue_name,
                from_status=None if event.from_status is None else event.from_status.value,
                to_status=event.to_status.value,
                reason=event.reason.value,
                worker_id=None if event.worker_id is None else str(event.worker_id),
                attempt=event.attempt,
                topic=topic_for(event.to_status, self._topic_prefix),
            )

    async def healthy(self) -> bool:
        return True

    async def close(self) -> None:
        return None
