"""Stops running jobs before the server can declare this worker lost and run them elsewhere.

`server_contact.py` says *when* (the contact deadline); this loop acts on it. Every
`CONTACT_CHECK_S` it compares the time with the deadline, and once past it with jobs running,
it interrupts them all. They are reported once the server is back: those the server still
holds go back to PENDING at once, the others' reports are refused as stale.

Python cannot stop a sync handler's thread. If one still runs once the others are stopped, the
worker exits (EXIT_CONTACT_LOST): only that ends it before its job runs twice, and a supervisor
restarts the worker. The check (`run_once`) reads no time of its own, only the contact's clock,
and the loop sleeps through the injected `sleep`, so tests drive both with a fake clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable

from jobq.observability.logging_setup import get_logger
from jobq.worker.clock import Sleep
from jobq.worker.job_runner import JobRunner
from jobq.worker.registration import Registration
from jobq.worker.server_contact import ServerContact

__all__ = ["CONTACT_CHECK_S", "EXIT_CONTACT_LOST", "STOP_WAIT_S", "ContactWatch", "exit_now"]

log = get_logger("jobq.worker")

EXIT_CONTACT_LOST = 5
"""The exit code of a process that lost the server while sync handlers it cannot stop were
running on its threads: its jobs are about to run again elsewhere, and only its exit ends
them. A supervisor should restart it (unlike EXIT_SUPERSEDED)."""
CONTACT_CHECK_S = 0.1
"""How often the watch compares the time with the contact deadline."""
STOP_WAIT_S = 2.0
"""How long stopped jobs get to end (a command job's group is SIGKILLed at once)."""


def exit_now(code: int) -> None:
    """Exit at once, from wherever: threads that cannot be stopped must not hold it up."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


class ContactWatch:
    """The loop that stops the jobs of a worker out of contact with its server."""

    def __init__(
        self,
        contact: ServerContact,
        jobs: JobRunner,
        unstoppable_running: Callable[[], int],
        registration: Registration,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`unstoppable_running()` counts the sync handlers still running on threads."""
        self._contact = contact
        self._jobs = jobs
        self._unstoppable_running = unstoppable_running
        self._registration = registration
        self._sleep = sleep
        self.exit_process: Callable[[int], object] = exit_now
        """How the worker exits when it must (replaced in tests)."""

    async def run(self) -> None:
        """Check every CONTACT_CHECK_S until cancelled (a loop for the task supervisor)."""
        while True:
            await self._sleep(CONTACT_CHECK_S)
            await self.run_once()

    async def run_once(self) -> None:
        """One check: past the contact deadline with jobs running, stop them."""
        if self._jobs.running and self._contact.lost():
            await self.stop_jobs_out_of_contact()

    async def stop_jobs_out_of_contact(self) -> None:
        """Interrupt every running job (reported once the server is back: PENDING again if it
        still holds them, refused as stale if it ran them elsewhere); exit if a sync handler's
        thread runs on, since nothing else stops it."""
        reason = f"stopped: {self._contact.describe()}"
        log.error(
            "lost contact with the server; stopping jobs before they run again elsewhere",
            action="worker.lost",
            worker_id=self._registration.worker_id,
            reason=reason,
            jobs=len(self._jobs.running),
        )
        await self._jobs.stop_all(reason, wait_s=STOP_WAIT_S)
        unstoppable = self._unstoppable_running()
        if unstoppable:
            log.error(
                "sync handlers still run on threads Python cannot stop; exiting so that they "
                "end before their jobs run again elsewhere",
                action="worker.exiting",
                worker_id=self._registration.worker_id,
                handlers=unstoppable,
                exit_code=EXIT_CONTACT_LOST,
            )
            self.exit_process(EXIT_CONTACT_LOST)
