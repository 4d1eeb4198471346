"""ReportProgress's door: what a worker may report about a running job's progress (issue 18).

Checked before anything is written, so a bad batch changes nothing: a fraction must be a
number in 0..1, a message at most MAX_PROGRESS_MESSAGE characters (the database's CHECK says
the same), a batch at most MAX_PROGRESS_ITEMS items. The worker coalesces and rate-limits
(one report per job per second at most), so the server only bounds; a report for an attempt
that is not the job's current RUNNING one is answered accepted = false and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from uuid import UUID

from jobq.domain.errors import InvalidArgument
from jobq.domain.records import AttemptProgress, AttemptRef
from jobq.domain.validation import parse_uuid
from jobq.rpc._gen import worker_service_pb2 as pb

__all__ = ["MAX_PROGRESS_ITEMS", "MAX_PROGRESS_MESSAGE", "latest_per_job", "progress_reports"]

MAX_PROGRESS_MESSAGE = 200
"""The longest progress message, in characters."""
MAX_PROGRESS_ITEMS = 10_000


def progress_reports(request: pb.ReportProgressRequest, worker_id: UUID) -> list[AttemptProgress]:
    """The request's items as fenced progress reports of `worker_id`, in request order.

    Raises:
        InvalidArgument: too many items, or an item with a bad id, fraction or message.
    """
    if len(request.items) > MAX_PROGRESS_ITEMS:
        raise InvalidArgument(f"at most {MAX_PROGRESS_ITEMS} progress reports per call")
    reports = []
    for index, item in enumerate(request.items):
        if not (math.isfinite(item.fraction) and 0.0 <= item.fraction <= 1.0):
            raise InvalidArgument(
                f"progress {index}: fraction must be between 0 and 1, got {item.fraction}"
            )
        if len(item.message) > MAX_PROGRESS_MESSAGE:
            raise InvalidArgument(
                f"progress {index}: message must be at most {MAX_PROGRESS_MESSAGE} characters,"
                f" got {len(item.message)}"
            )
        if "\0" in item.message:
            raise InvalidArgument(f"progress {index}: message must not contain NUL")
        claim_id = parse_uuid(item.claim_id, "claim id") if item.claim_id else None
        ref = AttemptRef(parse_uuid(item.job_id, "job id"), item.attempt, worker_id, claim_id)
        reports.append(AttemptProgress(ref, item.fraction, item.message))
    return reports


def latest_per_job(reports: Sequence[AttemptProgress]) -> list[AttemptProgress]:
    """One report per job, the last of the batch: one statement must not update a row
    twice."""
    latest: dict[UUID, AttemptProgress] = {}
    for report in reports:
        latest[report.ref.job_id] = report
    return list(latest.values())
