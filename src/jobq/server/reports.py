"""Worker reports — start acknowledgements and results — written with group commit.

Reports of many workers that arrive together become one statement per kind. One batch is
written at a time, in arrival order, so a worker's acknowledgement is always applied before its
result for the same attempt. A caller hears back only after its batch committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from uuid import UUID

from jobq.domain.records import (
    AttemptRef,
    AttemptResult,
    Failure,
    ReportOutcome,
    Success,
    record,
)
from jobq.domain.retry import RetryPolicy
from jobq.domain.states import Reason
from jobq.server.group_commit import GroupCommitter
from jobq.server.lifecycle import Lifecycle
from jobq.storage.stores import JobStore


class ReportKind(Enum):
    ACK = "ack"
    SUCCESS = "success"
    FAILURE = "failure"
    REFUSAL = "refusal"  # a job the worker can never run: dead-lettered at once, no retries
    SHUTDOWN = "shutdown"  # interrupted by an orderly worker shutdown: back to PENDING
    CANCELLED = "cancelled"  # stopped because CancelJob asked: DEAD_LETTERED (CANCELLED)


@record
class ReportItem:
    kind: ReportKind
    ref: AttemptRef
    result: bytes = b""
    error_message: str = ""


OnFinished = Callable[[dict[UUID, list[tuple[UUID, int]]]], None]
"""Told which attempts (by worker) their workers reported finished, accepted or not: their
slots are free (WorkerCapacity.reported)."""


class ReportWriter:
    def __init__(
        self,
        jobs: JobStore,
        policy: RetryPolicy,
        lifecycle: Lifecycle,
        *,
        max_batch: int,
        on_finished: OnFinished,
    ) -> None:
        self._jobs = jobs
        self._policy = policy
        self._lifecycle = lifecycle
        self._on_finished = on_finished
        self._committer: GroupCommitter[ReportItem, AttemptResult] = GroupCommitter(
            self._flush, max_batch=max_batch, max_in_flight=1
        )

    async def report(self, items: Sequence[ReportItem]) -> list[AttemptResult]:
        return await self._committer.submit_many(items)

    async def drain(self) -> None:
        await self._committer.drain()

    async def _flush(self, items: list[ReportItem]) -> list[AttemptResult]:
        by_kind: dict[ReportKind, list[int]] = {kind: [] for kind in ReportKind}
        for index, item in enumerate(items):
            by_kind[item.kind].append(index)
        results: list[AttemptResult | None] = [None] * len(items)
        with self._lifecycle.write() as changes:
            for kind in ReportKind:  # acknowledgements first: they precede results of the attempt
                indexes = by_kind[kind]
                if not indexes:
                    continue
                outcome = await self._write(kind, [items[i] for i in indexes])
                changes.applied(outcome.transitions)
                for index, result in zip(indexes, outcome.results, strict=True):
                    results[index] = result
        finished: dict[UUID, list[tuple[UUID, int]]] = {}
        for item in items:
            if item.kind is not ReportKind.ACK:
                finished.setdefault(item.ref.worker_id, []).append(
                    (item.ref.job_id, item.ref.attempt)
                )
        if finished:
            self._on_finished(finished)
        return [r for r in results if r is not None]

    async def _write(self, kind: ReportKind, items: list[ReportItem]) -> ReportOutcome:
        if kind is ReportKind.ACK:
            return await self._jobs.jobs_start([i.ref for i in items])
        if kind is ReportKind.SUCCESS:
            return await self._jobs.jobs_complete(
                [
                    Success(
                        i.ref.job_id,
                        i.ref.attempt,
                        i.ref.worker_id,
                        i.result,
                        claim_id=i.ref.claim_id,
                    )
                    for i in items
                ]
            )
        if kind is ReportKind.FAILURE or kind is ReportKind.REFUSAL:
            refused = kind is ReportKind.REFUSAL
            failures = [
                Failure(
                    i.ref.job_id,
                    i.ref.attempt,
                    i.ref.worker_id,
                    i.error_message,
                    refused=refused,
                    claim_id=i.ref.claim_id,
                )
                for i in items
            ]
            return await self._jobs.jobs_fail(failures, self._policy)
        if kind is ReportKind.CANCELLED:
            return await self._jobs.jobs_finish_cancelled(
                [i.ref for i in items], [i.error_message for i in items]
            )
        return await self._jobs.jobs_release([i.ref for i in items], Reason.WORKER_SHUTDOWN)
