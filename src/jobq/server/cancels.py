"""Cancels of RUNNING jobs, from the notification to the worker's stream (issue 18).

CancelJob on a RUNNING job records the request (job_cancel in sql/cancels.sql) and notifies
`cancel:<worker>:<job>:<attempt>` on the channel every replica listens to. Whichever replica
holds that worker's stream queues the cancel on it (`WorkerCapacity.cancel`); the others,
including the one that took the call when it is not that replica, do nothing. A notification
lost (no replica listening at that moment, the stream reconnecting) is made good by the
heartbeats' answers, which repeat every held attempt with a cancel requested
(HeartbeatResponse.cancels): the request is in the database, not in the notification.
"""

from __future__ import annotations

from uuid import UUID

from jobq.observability.logging_setup import get_logger
from jobq.server.notifier import CANCEL_PREFIX
from jobq.server.worker_capacity import WorkerCapacity

__all__ = ["CancelRelay", "parse_cancel"]

log = get_logger("jobq.workers")


def parse_cancel(payload: str) -> tuple[UUID, UUID, int] | None:
    """(worker id, job id, attempt) of a cancel notification; None when malformed."""
    if not payload.startswith(CANCEL_PREFIX):
        return None
    parts = payload[len(CANCEL_PREFIX) :].split(":")
    if len(parts) != 3:
        return None
    try:
        return UUID(parts[0]), UUID(parts[1]), int(parts[2])
    except ValueError:
        return None


class CancelRelay:
    """Hears cancel notifications (the Notifier's `on_cancel`) and passes them to the stream
    of the worker, when that stream is open on this replica."""

    def __init__(self, capacity: WorkerCapacity) -> None:
        self._capacity = capacity

    def on_notification(self, payload: str) -> None:
        parsed = parse_cancel(payload)
        if parsed is None:
            log.warning("malformed cancel notification", action="job.cancel_malformed")
            return
        worker_id, job_id, attempt = parsed
        if self._capacity.cancel(worker_id, job_id, attempt):
            log.info(
                "cancel queued for the worker's stream",
                action="job.cancel_relayed",
                job_id=str(job_id),
                attempt=attempt,
                worker_id=str(worker_id),
            )
