"""What a handler knows about the job it runs: `jobq.current_job()` and `jobq.progress()`.

    @jobq.task
    def resize(paths: list[str]) -> None:
        for done, path in enumerate(paths, 1):
            if jobq.current_job().cancelled:  # someone ran `jq-ctl job cancel`
                return                        # stop early: the job ends CANCELLED
            shrink(path)
            jobq.progress(done / len(paths), f"resized {done} of {len(paths)}")

The worker's Python executor sets the job for the handler's context (a context variable, so
`async def` handlers and sync handlers on their threads each see their own job). Cancelling
(README "Cancelling running jobs"): an `async def` handler's task is cancelled
(`asyncio.CancelledError` is raised at its current `await`); a sync handler cannot be
interrupted, so `cancelled` turns true and it has the worker's `cancel_grace_s` to notice and
return before the worker stops waiting for it (its thread is abandoned). Progress
(README "Progress"): the latest value is kept and the worker sends it at most once a second per
job, and once more when the job ends; calling `progress` often costs a lock and two stores.

Outside a job (a handler called directly, in a unit test), `current_job()` raises
`RuntimeError` and `progress()` does nothing, so handlers stay callable as plain functions.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Final

__all__ = ["MAX_PROGRESS_MESSAGE", "CurrentJob", "current_job", "progress"]

MAX_PROGRESS_MESSAGE: Final = 200
"""The longest progress message, in characters (the server refuses longer ones)."""


class CurrentJob:
    """One attempt of a job as its handler sees it (and the worker's handle on it)."""

    __slots__ = (
        "_cancel_hook",
        "_cancelled",
        "_lock",
        "_on_progress",
        "_progress",
        "_sent",
        "attempt",
        "claim_id",
        "job_id",
        "stop_note",
    )

    def __init__(
        self,
        job_id: str,
        attempt: int,
        claim_id: str = "",
        on_progress: Callable[[CurrentJob], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.claim_id = claim_id
        self._cancelled = False
        self._cancel_hook: Callable[[], None] | None = None
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._progress: tuple[float, str] | None = None
        self._sent: tuple[float, str] | None = None
        self.stop_note = ""
        """How the worker stopped the cancelled job, when its executor says (for the report)."""

    @property
    def cancelled(self) -> bool:
        """True once the worker was told to cancel this job (CancelJob while it ran)."""
        return self._cancelled

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job is: `fraction` in 0..1, `message` at most 200 characters.

        Raises:
            ValueError: the fraction is not a number in 0..1, or the message is too long.
        """
        fraction = float(fraction)
        if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise ValueError(f"progress must be between 0 and 1, got {fraction}")
        if len(message) > MAX_PROGRESS_MESSAGE:
            raise ValueError(
                f"a progress message is at most {MAX_PROGRESS_MESSAGE} characters,"
                f" got {len(message)}"
            )
        with self._lock:
            self._progress = (fraction, message.replace("\0", ""))
        if self._on_progress is not None:
            self._on_progress(self)

    # --- the worker's side -----------------------------------------------------------------

    def request_cancel(self) -> bool:
        """Mark the job cancelled and run the executor's hook, if one was set (on the
        worker's event loop); False when it was cancelled before, or no hook said how to stop
        the job (the caller then cancels the job's task)."""
        if self._cancelled:
            return True
        self._cancelled = True
        hook = self._cancel_hook
        if hook is None:
            return False
        hook()
        return True

    def set_cancel_hook(self, hook: Callable[[], None] | None) -> None:
        """How the executor running the job stops it (None: by cancelling its task)."""
        self._cancel_hook = hook

    def take_progress(self) -> tuple[float, str] | None:
        """The latest progress not sent yet, marked as sent; None when there is none."""
        with self._lock:
            latest = self._progress
            if latest is None or latest == self._sent:
                return None
            self._sent = latest
            return latest

    def unsend_progress(self, sent: tuple[float, str]) -> None:
        """A send of `sent` failed: send it again, unless a newer value came meanwhile."""
        with self._lock:
            if self._sent == sent:
                self._sent = None

    @property
    def progress_unsent(self) -> bool:
        with self._lock:
            return self._progress is not None and self._progress != self._sent


_CURRENT: ContextVar[CurrentJob | None] = ContextVar("jobq_current_job", default=None)


def current_job() -> CurrentJob:
    """The job the calling handler runs.

    Raises:
        RuntimeError: not called from a handler run by jq-worker.
    """
    job = _CURRENT.get()
    if job is None:
        raise RuntimeError("jobq.current_job() is only available inside a job run by jq-worker")
    return job


def progress(fraction: float, message: str = "") -> None:
    """Report the calling handler's progress (see `CurrentJob.progress`); does nothing outside
    a job."""
    job = _CURRENT.get()
    if job is not None:
        job.progress(fraction, message)


def set_current_job(job: CurrentJob | None) -> object:
    """For the worker's Python executor: make `job` the current one in this context; returns
    the token `reset_current_job` takes."""
    return _CURRENT.set(job)


def reset_current_job(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]
