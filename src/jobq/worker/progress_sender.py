"""Sends handlers' and commands' progress to jq-server: the latest value per job, coalesced and
rate-limited (issue 18).

A job's progress (`CurrentJob.progress`, from any thread) only stores the value and marks the
job here; the loop sends every marked job's latest value at most once per `interval_s` (one
ReportProgress call for all of them), so a handler calling `progress` in a tight loop costs the
server one row update per second at most. When a job ends, the runner sends its last unsent
value at once (`flush`), before the result, so the final progress is kept. Progress is best
effort: a batch that cannot be delivered is tried again with the next one (unless a newer value
replaced it), and reports the server does not accept (the attempt is no longer running) are
dropped. A job that never reports progress costs nothing here. A jq-server from before
progress reports answers UNIMPLEMENTED: the sender logs it once and sends nothing more (workers
are upgraded before servers).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

from jobq.observability.logging_setup import get_logger
from jobq.rpc._gen import worker_service_pb2 as pb
from jobq.running_job import CurrentJob
from jobq.worker.clock import Sleep
from jobq.worker.reporter import ProgressUnsupported, Reporter

__all__ = ["PROGRESS_INTERVAL_S", "ProgressSender"]

log = get_logger("jobq.worker.progress")

PROGRESS_INTERVAL_S = 1.0
"""The shortest time between two progress reports of one job."""
FLUSH_TIMEOUT_S = 2.0
"""How long a finished job's last progress may hold up its result."""


class ProgressSender:
    """The marked jobs, and the loop that reports their progress."""

    def __init__(
        self,
        reporter: Reporter,
        *,
        interval_s: float = PROGRESS_INTERVAL_S,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._reporter = reporter
        self._interval_s = interval_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self._marked: dict[tuple[str, int], CurrentJob] = {}
        self._unsupported = False
        """The server predates ReportProgress: progress is kept by the jobs, never sent."""

    def mark(self, job: CurrentJob) -> None:
        """The job has a new progress value (called from handler threads too)."""
        if self._unsupported:
            return
        with self._lock:
            self._marked[(job.job_id, job.attempt)] = job

    async def run(self) -> None:
        """Send what was marked, every interval, until cancelled."""
        while True:
            await self._sleep(self._interval_s)
            if self._marked and self._reporter.is_connected:
                await self.send_marked()

    async def send_marked(self) -> None:
        """One ReportProgress call for every marked job's latest unsent value."""
        with self._lock:
            jobs, self._marked = list(self._marked.values()), {}
        await self._send(jobs)

    async def flush(self, job: CurrentJob) -> None:
        """Send `job`'s last unsent value now (its attempt is ending), within a short limit."""
        if self._unsupported:
            return
        with self._lock:
            self._marked.pop((job.job_id, job.attempt), None)
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_S):
                await self._send([job])
        except TimeoutError:
            log.info("last progress not sent", action="job.progress_unsent", job_id=job.job_id)

    async def _send(self, jobs: Iterable[CurrentJob]) -> None:
        taken = []
        for job in jobs:
            latest = job.take_progress()
            if latest is not None:
                taken.append((job, latest))
        if not taken:
            return
        items = [
            pb.JobProgress(
                job_id=job.job_id,
                attempt=job.attempt,
                claim_id=job.claim_id,
                fraction=fraction,
                message=message,
            )
            for job, (fraction, message) in taken
        ]
        try:
            reply = await self._reporter.send_progress(items)
        except ProgressUnsupported:
            if not self._unsupported:
                log.warning(
                    "the server does not take progress reports (older jq-server); not sending them",
                    action="worker.progress_unsupported",
                )
            self._unsupported = True
            return
        if reply is None:  # not delivered: try again with the next batch
            for job, latest in taken:
                job.unsend_progress(latest)
                self.mark(job)
