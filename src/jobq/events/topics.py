"""Kafka topic names of lifecycle events (SPEC §12), shared by the publisher and `jq-ctl`."""

from __future__ import annotations

from jobq.domain.states import JobStatus

__all__ = ["JOB_TOPICS", "WORKER_HEARTBEAT_TOPIC", "job_topics", "topic_for"]

JOB_TOPICS: dict[JobStatus, str] = {
    JobStatus.PENDING: "job.submitted",
    JobStatus.ASSIGNED: "job.submitted",
    JobStatus.RUNNING: "job.started",
    JobStatus.DONE: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.DEAD_LETTERED: "job.dead-lettered",
    JobStatus.WAITING: "job.submitted",
}
"""The topic (before the prefix) of a transition into each status, as SPEC §12 lists them.
ASSIGNED and WAITING (a job with prerequisites, issue 18) share job.submitted with PENDING:
all mean "waiting to run" to a consumer; the event's to_status tells them apart."""

WORKER_HEARTBEAT_TOPIC = "worker.heartbeat"
"""The topic (before the prefix) of worker heartbeats."""


def topic_for(to_status: JobStatus, prefix: str = "") -> str:
    """The topic an event moving a job into `to_status` is published to.

    `prefix` (`kafka.topic_prefix`) is put before the name as it is, so it carries its own
    separator: prefix "prod." gives "prod.job.completed".
    """
    return prefix + JOB_TOPICS[to_status]


def job_topics(prefix: str = "") -> list[str]:
    """Every job topic once, in SPEC §12's order."""
    return list(dict.fromkeys(prefix + name for name in JOB_TOPICS.values()))
