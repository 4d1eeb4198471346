"""The jobs this worker runs: start an assignment, run it in a slot, report it, stop it.

`JobRunner` is the one owner of the running jobs (the heartbeats list them, the contact watch
and the shutdown stop them, all through it). Each job runs in a task of its own, independent
of the connection it came on: a reconnect does not touch it, and its result waits in the
`Reporter` until delivered. A job waits for a slot (`concurrency`), is acknowledged when it
gets one, and reports its outcome when it ends, however it ends: cancelled by the worker, it
is reported as interrupted (SHUTDOWN: back to PENDING without using a retry), with why.

Two things the runner never does: start an assignment after the contact deadline, whether read
after it or still waiting to begin when it passed (it may already run elsewhere: it is handed
back unstarted), and report a job the server took back
(`rejected`: a refused start or a superseded process), whose report it would refuse anyway.
The runner hears of a refused start from the reporter it is built on: it subscribes itself
(`Reporter.on_ack_rejected`) when it is built.

Cancels (issue 18): `cancel` is called for an attempt the server says was cancelled (the
stream's JobAssignmentBatch.cancels, or a heartbeat's answer). The job's `CurrentJob` is
marked cancelled and its executor stops it its own way (a command: SIGTERM, then SIGKILL after
the grace; a sync handler: abandoned after the grace); without an executor's hook (an
`async def` handler, a job still waiting for a slot) its task is cancelled at once. A job
whose cancel was received before it ended is reported CANCELLED, however it then ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from jobq.observability import tracing
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import WorkerMetrics
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.running_job import CurrentJob
from jobq.worker.clock import Clock
from jobq.worker.executor import ExecutionResult, JobExecutor
from jobq.worker.progress_sender import ProgressSender
from jobq.worker.registration import Registration
from jobq.worker.reporter import PendingResult, Reporter
from jobq.worker.server_contact import ServerContact

__all__ = ["JobKey", "JobRunner", "RunningJob"]

LOGGER_NAME = "jobq.worker"
log = get_logger(LOGGER_NAME)

JobKey = tuple[str, int]
"""(job id, attempt): what identifies one run of a job."""

_OUTCOME_LABELS = {
    pb.JOB_OUTCOME_SUCCEEDED: "success",
    pb.JOB_OUTCOME_FAILED: "failure",
    pb.JOB_OUTCOME_REFUSED: "refused",
    pb.JOB_OUTCOME_SHUTDOWN: "shutdown",
    pb.JOB_OUTCOME_CANCELLED: "cancelled",
}


@dataclass(eq=False)
class RunningJob:
    assignment: pb.JobAssignment
    control: CurrentJob
    """What the handler sees as `jobq.current_job()`; carries the cancel and the progress."""
    task: asyncio.Task[None] | None = None
    rejected: bool = False
    """The server took the job back: report nothing."""
    stop_reason: str = ""
    """Why the worker itself stopped the job (reported with the interruption)."""


class JobRunner:
    """Runs assigned jobs in tasks, at most `concurrency` at a time, and reports them."""

    def __init__(
        self,
        executor: JobExecutor,
        reporter: Reporter,
        metrics: WorkerMetrics,
        contact: ServerContact,
        registration: Registration,
        concurrency: int,
        clock: Clock = time.monotonic,
        progress: ProgressSender | None = None,
    ) -> None:
        """`progress` sends the jobs' progress (None: progress is kept but not sent)."""
        self._executor = executor
        self._progress = progress
        self._on_progress = None if progress is None else progress.mark
        self._reporter = reporter
        reporter.on_ack_rejected(self.ack_rejected)
        self._metrics = metrics
        self._contact = contact
        self._registration = registration
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[JobKey, RunningJob] = {}
        # Per-job bookkeeping is on the hot path: resolve the metric children and the log level
        # once, not for every job.
        self._finished = {
            outcome: metrics.worker_jobs.labels(result=label)
            for outcome, label in _OUTCOME_LABELS.items()
        }
        self._debug = logging.getLogger(LOGGER_NAME).isEnabledFor(logging.DEBUG)
        # Read when scraped rather than updated twice per job under the gauge's lock.
        self._active = 0
        metrics.worker_active_jobs.set_function(lambda: self._active)
        metrics.worker_slots.set(concurrency)

    @property
    def running(self) -> Mapping[JobKey, RunningJob]:
        """The jobs this worker holds: running, or waiting for a slot."""
        return self._running

    def held(self) -> set[JobKey]:
        """Every attempt this process holds: running, waiting for a slot, or finished with a
        result the server has not answered yet (what the heartbeats list)."""
        return {*self._running, *self._reporter.unsettled()}

    def start(self, assignment: pb.JobAssignment) -> None:
        """Run an assignment read from the job stream (once: a re-sent one is ignored)."""
        key = (assignment.job_id, assignment.attempt)
        if key in self._running:
            return  # a re-sent assignment we already run
        if self._contact.lost():
            # Read after contact was lost (buffered while this process was paused): the
            # server may have run it elsewhere already. Hand it back, unstarted.
            a = assignment
            self._reporter.result(
                PendingResult(
                    a.job_id,
                    a.attempt,
                    pb.JOB_OUTCOME_SHUTDOWN,
                    b"",
                    f"not started: {self._contact.describe()}",
                    claim_id=a.claim_id,
                )
            )
            return
        a = assignment
        job = RunningJob(a, CurrentJob(a.job_id, a.attempt, a.claim_id, self._on_progress))
        self._running[key] = job
        job.task = asyncio.create_task(self._run(job), name=f"job-{assignment.job_id}")

    def ack_rejected(self, outcome: pb.AttemptOutcome) -> None:
        """The server refused our start: the job was cancelled or re-assigned. Stop it."""
        job = self._running.get((outcome.job_id, outcome.attempt))
        log.warning(
            "start not accepted; abandoning the job",
            action="job.start_rejected",
            job_id=outcome.job_id,
            attempt=outcome.attempt,
            reason=outcome.message,
        )
        if job is not None and job.task is not None:
            job.rejected = True
            job.task.cancel()

    def cancel(self, job_id: str, attempt: int) -> bool:
        """The server asked for this attempt to be cancelled: stop it (see the module's
        docstring); True when it runs here and was not being cancelled already."""
        job = self._running.get((job_id, attempt))
        if job is None or job.control.cancelled:
            return False
        log.info("cancelling job", action="job.cancelling", job_id=job_id, attempt=attempt)
        if not job.control.request_cancel() and job.task is not None:
            job.control.stop_note = "its task was cancelled"
            job.task.cancel()
        return True

    async def stop_all(self, reason: str, wait_s: float) -> None:
        """Interrupt every running job, each reported with `reason`; wait up to `wait_s`
        for them to end."""
        tasks = []
        for job in list(self._running.values()):
            if job.task is not None and not job.task.done():
                job.stop_reason = reason
                job.task.cancel()
                tasks.append(job.task)
        if tasks:
            await asyncio.wait(tasks, timeout=wait_s)

    def abandon_all(self) -> None:
        """Cancel every job without reporting it: the server no longer listens to us."""
        for job in list(self._running.values()):
            if job.task is not None:
                job.rejected = True  # its result would be refused: report nothing
                job.task.cancel()

    async def wait_all(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for every job to end (after `abandon_all`)."""
        tasks = self._tasks()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    async def finish(self, grace_s: float) -> None:
        """Let running jobs finish within `grace_s`, then interrupt the rest (reported as
        SHUTDOWN) and give them a moment to end."""
        tasks = self._tasks()
        if not tasks:
            return
        log.info(
            "waiting for running jobs",
            action="worker.draining_jobs",
            jobs=len(tasks),
            grace_s=grace_s,
        )
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)

    def _tasks(self) -> list[asyncio.Task[None]]:
        return [job.task for job in self._running.values() if job.task is not None]

    async def _run(self, job: RunningJob) -> None:
        a = job.assignment
        key = (a.job_id, a.attempt)
        outcome, result = pb.JOB_OUTCOME_SHUTDOWN, ExecutionResult(False, b"", "worker shut down")
        trace = self._trace(a) if a.traceparent else None
        try:
            async with self._slots:
                if self._contact.lost():
                    # Contact was lost while this job waited to begin (for a slot, or for the
                    # loop: a process paused right after reading it). It may run elsewhere by
                    # now: hand it back unstarted, as start() does.
                    result = ExecutionResult(False, b"", f"not started: {self._contact.describe()}")
                    raise _NotStarted
                self._reporter.ack(a.job_id, a.attempt, a.claim_id)
                self._active += 1
                started = self._clock()
                if trace is not None:
                    trace.begin()
                try:
                    result = await self._executor.run(
                        a.payload, float(a.timeout_s) or None, job=job.control
                    )
                    outcome = _outcome(result)
                    if job.control.cancelled:  # it ended after the cancel reached it
                        outcome = pb.JOB_OUTCOME_CANCELLED
                        result = _cancelled(result.error_message or "ended after the cancel")
                finally:
                    if trace is not None:
                        trace.ran()
                    self._active -= 1
                    self._metrics.worker_job_duration_seconds.observe(self._clock() - started)
        except _NotStarted:
            pass  # outcome SHUTDOWN, with the result set above
        except asyncio.CancelledError:
            if job.control.cancelled:
                how = job.control.stop_note or "the job was stopped"
                outcome, result = pb.JOB_OUTCOME_CANCELLED, _cancelled(how)
            else:
                outcome = pb.JOB_OUTCOME_SHUTDOWN
                result = ExecutionResult(
                    False, b"", job.stop_reason or "interrupted by worker shutdown"
                )
        finally:
            self._running.pop(key, None)
        if trace is not None:
            trace.executed(_OUTCOME_LABELS[outcome], result.error_message)
        if job.rejected:
            return
        if (
            self._progress is not None
            and outcome in _RAN_TO_ITS_END
            and job.control.progress_unsent
        ):
            # The last value goes before the result, while the attempt is still RUNNING (a
            # stopped job's last value does not matter enough to hold up its report).
            await self._progress.flush(job.control)
        delivered = self._report(a, outcome, result)
        if trace is not None:
            trace.reporting(delivered, _OUTCOME_LABELS[outcome])

    def _trace(self, a: pb.JobAssignment) -> tracing.JobTrace | None:
        """The attempt's spans, when this worker traces and the server sent a context."""
        return tracing.job_trace(
            a.traceparent,
            a.tracestate,
            {
                "messaging.destination.name": a.queue_name,
                "messaging.message.id": a.job_id,
                "jobq.attempt": a.attempt,
                "jobq.worker_id": self._registration.worker_id,
            },
        )

    def _report(
        self, a: pb.JobAssignment, outcome: pb.JobOutcome, result: ExecutionResult
    ) -> asyncio.Future[None]:
        self._finished[outcome].inc()
        worker_id = self._registration.worker_id
        if outcome == pb.JOB_OUTCOME_REFUSED:  # rare, and the operator of this worker may care
            log.warning(
                "job refused",
                action="job.refused",
                job_id=a.job_id,
                attempt=a.attempt,
                queue=a.queue_name,
                worker_id=worker_id,
                reason=result.error_message,
            )
        if self._debug:
            log.debug(
                "job finished",
                action=f"job.{_OUTCOME_LABELS[outcome]}",
                job_id=a.job_id,
                attempt=a.attempt,
                worker_id=worker_id,
            )
        return self._reporter.result(
            PendingResult(
                a.job_id,
                a.attempt,
                outcome,
                result.result,
                result.error_message,
                claim_id=a.claim_id,
            )
        )


_RAN_TO_ITS_END = frozenset({pb.JOB_OUTCOME_SUCCEEDED, pb.JOB_OUTCOME_FAILED})


def _cancelled(how: str) -> ExecutionResult:
    """The result of a job stopped because the server asked to cancel it."""
    return ExecutionResult(False, b"", f"cancelled: {how}")


class _NotStarted(Exception):
    """A job whose start came after the contact deadline (see JobRunner._run)."""


def _outcome(result: ExecutionResult) -> pb.JobOutcome:
    if result.success:
        return pb.JOB_OUTCOME_SUCCEEDED
    # A refusal is dead-lettered at once by the server; any other failure is retried.
    return pb.JOB_OUTCOME_REFUSED if result.refused else pb.JOB_OUTCOME_FAILED
