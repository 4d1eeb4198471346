"""How a list of submits becomes SubmitJobs calls, and what each job's caller gets back.

SubmitJobs is all-or-nothing: one bad job (a malformed payload, an unknown queue) refuses the
whole batch, with an error that names its index ("job 3: queue 'x' not found"). The plan gives
that job its own error and sends the others again without it, so one caller's mistake never
fails another caller's job. A batch larger than the server allows ("a batch holds at most N
jobs") is split to the limit the error names and sent again. Any other error (the server is
unreachable after the retries, permission denied) is every job's of that batch.

Sans-IO: the plan only says what to send next and records the answers, so the sync and the
asyncio client drive the same logic, and unit tests drive it without a server:

    plan = BatchPlan(len(requests), max_batch)
    while (batch := plan.next_batch()) is not None:
        try:
            ids, existing = send([requests[i] for i in batch])
        except CallFailed as exc:
            plan.failed(batch, exc)
        else:
            plan.succeeded(batch, ids, existing)
    plan.outcomes  # per request: Submitted or the error

Every round either settles a job or shrinks the batch size, so the loop ends.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from jobq.client.errors import CallFailed, ClientError

__all__ = ["BatchPlan", "Submitted", "bad_job_index", "server_batch_limit"]

_BAD_JOB: Final = re.compile(r"job (\d+): (.*)", re.DOTALL)
_BATCH_LIMIT: Final = re.compile(r"a batch holds at most (\d+) jobs")
_PER_JOB_CODES: Final = frozenset({"INVALID_ARGUMENT", "NOT_FOUND"})


@dataclass(frozen=True)
class Submitted:
    """A committed job: its id, and whether its idempotency key already held it."""

    job_id: str
    existing: bool = False


def bad_job_index(error: CallFailed) -> tuple[int, str] | None:
    """(index, message) of the job a SubmitJobs error blames, or None when it blames none."""
    if error.code not in _PER_JOB_CODES:
        return None
    match = _BAD_JOB.fullmatch(error.details)
    if match is None:
        return None
    return int(match.group(1)), match.group(2)


def server_batch_limit(error: CallFailed) -> int | None:
    """The server's batch limit when the error says a batch was too large, else None."""
    if error.code != "INVALID_ARGUMENT":
        return None
    match = _BATCH_LIMIT.search(error.details)
    return int(match.group(1)) if match else None


class BatchPlan:
    """The state of submitting `count` jobs in batches of at most `max_batch`."""

    def __init__(self, count: int, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self.outcomes: list[Submitted | ClientError | None] = [None] * count
        self._waiting: deque[int] = deque(range(count))

    def next_batch(self) -> list[int] | None:
        """Indexes of the jobs to send next, in order; None when every job is settled."""
        if not self._waiting:
            return None
        size = min(self.max_batch, len(self._waiting))
        return [self._waiting.popleft() for _ in range(size)]

    def succeeded(
        self, batch: Sequence[int], job_ids: Sequence[str], existing: Sequence[bool]
    ) -> None:
        """The server committed `batch`; `existing` may be empty (a server before idempotency
        keys)."""
        if len(job_ids) != len(batch):
            error = CallFailed(
                "INTERNAL", f"the server answered {len(job_ids)} ids for {len(batch)} jobs"
            )
            for index in batch:
                self.outcomes[index] = error
            return
        flags = list(existing) if len(existing) == len(batch) else [False] * len(batch)
        for index, job_id, flag in zip(batch, job_ids, flags, strict=True):
            self.outcomes[index] = Submitted(job_id, flag)

    def failed(self, batch: Sequence[int], error: CallFailed) -> None:
        """The server refused `batch` (nothing of it was committed)."""
        blamed = bad_job_index(error) if len(batch) > 1 else None
        if blamed is not None and blamed[0] < len(batch):
            position, message = blamed
            self.outcomes[batch[position]] = CallFailed(error.code, message, error.method)
            self._send_again([i for k, i in enumerate(batch) if k != position])
            return
        limit = server_batch_limit(error)
        if limit is not None and 0 < limit < len(batch):
            self.max_batch = limit
            self._send_again(batch)
            return
        for index in batch:
            self.outcomes[index] = error

    def _send_again(self, batch: Sequence[int]) -> None:
        self._waiting.extendleft(reversed(batch))

    def results(self) -> list[Submitted | ClientError]:
        """Every job's outcome, once `next_batch()` returned None."""
        settled: list[Submitted | ClientError] = []
        for outcome in self.outcomes:
            if outcome is None:
                raise RuntimeError("the plan has jobs that were never sent")
            settled.append(outcome)
        return settled
