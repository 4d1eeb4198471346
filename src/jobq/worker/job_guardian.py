"""The worker's end of its job guardian: so that a job's processes die with their worker.

`guardian_process.py` says what the guardian does and why; this module starts it, tells it
about each command job's process group, and keeps it running:

- `start()` runs it once per worker, before any gRPC channel exists, as `python -I -S` on its
  file (no site, no environment, no jobq imports: a few milliseconds and a few megabytes), in a
  session of its own, with an empty environment (it needs none, and must not hold the worker's
  secrets), tells it this worker's marker, and waits until it says it runs, so a worker that
  cannot be guarded does not start.
- `job_environment` is what every command job's environment carries, `JQ_JOB_GUARD=<marker>`:
  the marker is random per worker process (not a secret: it only names what to kill), and it
  goes through the pipe rather than the command line, which every user can read in /proc.
- `register(pgid)` / `unregister(pgid)` are what a command job costs: one write of a few bytes
  each to the pipe (the asyncio transport writes at once; it buffers, never blocks, if the
  guardian is slow to read). The worker keeps the set too, to hand it to a new guardian.
- `keep_running()` is a background loop for the worker's supervisor: it raises when the
  guardian exits (killed by someone), and the supervisor logs that and calls it again, which
  starts a new guardian and registers every running job with it. A guardian that cannot be kept
  running stops the worker, through the supervisor's budget.
- `stop()` says `end` and closes the pipe when the worker ends in order: the guardian then
  kills whatever is still registered (after a drain, nothing), but looks for no marked process
  (a detached daemon of a finished job may live on), and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Protocol

from jobq.domain.errors import JobqError
from jobq.observability.logging_setup import get_logger
from jobq.worker import guardian_process

__all__ = ["NO_GUARD", "GuardianError", "JobGuardian", "JobProcessGuard"]

log = get_logger("jobq.worker.guardian")

START_TIMEOUT_S: Final = 10.0
STOP_TIMEOUT_S: Final = 5.0


class JobProcessGuard(Protocol):
    """What the command executor tells about each job's process group, and what it puts in
    each job's environment."""

    @property
    def job_environment(self) -> Mapping[str, str]:
        """Variables every command job's environment must hold, so that its processes are
        found when the worker dies, even those no registration names."""

    def register(self, pgid: int) -> None:
        """The job's process group `pgid` started: kill it if the worker dies."""

    def unregister(self, pgid: int) -> None:
        """The job's process group `pgid` has been killed: forget it."""


class _NoGuard:
    @property
    def job_environment(self) -> Mapping[str, str]:
        return _NOTHING

    def register(self, pgid: int) -> None:
        pass

    def unregister(self, pgid: int) -> None:
        pass


_NOTHING: Final[Mapping[str, str]] = MappingProxyType({})
NO_GUARD: Final[JobProcessGuard] = _NoGuard()
"""The default where no guardian runs (in-process tests, workers without command jobs)."""


class GuardianError(JobqError):
    """The job guardian cannot be started."""


class GuardianExited(Exception):
    """The guardian process ended while the worker runs."""


class JobGuardian:
    """Starts and feeds the worker's guardian process. One per worker."""

    def __init__(self, python: str = sys.executable) -> None:
        """`python` is the interpreter to run the guardian with (this one by default)."""
        self._python = python
        self._process: asyncio.subprocess.Process | None = None
        self._groups: set[int] = set()
        # One per worker process: a guardian started again after one exited gets the same.
        self._marker = secrets.token_hex(16)
        self._job_environment: Mapping[str, str] = MappingProxyType(
            {guardian_process.MARKER_VARIABLE: self._marker}
        )

    @property
    def pid(self) -> int | None:
        """The running guardian's process id."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def job_environment(self) -> Mapping[str, str]:
        return self._job_environment

    async def start(self) -> None:
        """Start a guardian and register every job known so far with it.

        Raises:
            GuardianError: it cannot be run, or did not say it runs within START_TIMEOUT_S.
        """
        try:
            process = await asyncio.create_subprocess_exec(
                self._python,
                "-I",
                "-S",
                guardian_process.__file__,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={},
                cwd="/",
                start_new_session=True,
            )
        except OSError as exc:
            raise GuardianError(f"cannot start the job guardian: {exc}") from exc
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(self._marker.encode() + b"\n")  # its first line: no job without it
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                line = await process.stdout.readline()
        except TimeoutError:
            line = b""
        if line != guardian_process.READY:
            await _end(process)
            raise GuardianError(
                f"the job guardian did not start (exit status {process.returncode}); see its "
                "error above"
            )
        self._process = process
        if self._groups:  # a new guardian after one exited: hand it every running job
            self._write(b"".join(b"+%d\n" % pgid for pgid in self._groups))
        log.debug("job guardian started", action="worker.guardian_started", pid=process.pid)

    def register(self, pgid: int) -> None:
        self._groups.add(pgid)
        self._write(b"+%d\n" % pgid)

    def unregister(self, pgid: int) -> None:
        self._groups.discard(pgid)
        self._write(b"-%d\n" % pgid)

    async def keep_running(self) -> None:
        """Start a guardian if none runs, then wait for it to exit, and raise: for the
        supervisor, which logs it and calls this again."""
        process = self._process
        if process is None or process.returncode is not None:
            await self.start()
            process = self._process
            assert process is not None
        status = await process.wait()
        if process.stdin is not None:
            process.stdin.close()
        raise GuardianExited(f"the job guardian (pid {process.pid}) exited with status {status}")

    async def stop(self) -> None:
        """Say `end` and close the pipe; the guardian kills whatever is still registered and
        exits."""
        self._write(guardian_process.IN_ORDER + b"\n")
        process, self._process = self._process, None
        if process is not None:
            await _end(process)

    def _write(self, data: bytes) -> None:
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return  # none runs now: `start` hands the next one the whole set
        process.stdin.write(data)


async def _end(process: asyncio.subprocess.Process) -> None:
    """Close the guardian's pipe and wait for it to exit (kill it if it does not)."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
