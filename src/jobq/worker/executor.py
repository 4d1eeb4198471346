"""The worker's one entry point for running a job: parse the payload, pick the executor, run it.

The runtime hands over the payload bytes and gets an `ExecutionResult` back. Every problem a
job can have (malformed or unsupported payload, a refused handler or command, a non-zero exit,
a timeout, an exception in the handler) is a failed result, so one bad job can never take the
worker down; only cancellation (the runtime's shutdown deadline) propagates, after the job's
processes have been killed (see `CommandExecutor` and `PythonExecutor` for what that means for
each kind of job).

A payload the worker cannot run (not JSON, neither command nor handler, an `env` variable from
the deny list of `jobq.domain.payload`) is a refusal, like a handler or command that is not
allowed: the same payload fails the same way at every attempt, so it is dead-lettered at once.
The server checks payloads at submit too; this check is for payloads that got past an older
server, and it is the one that guards the child.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from jobq.domain.payload import CommandSpec, PayloadError, parse_payload
from jobq.observability.logging_setup import get_logger
from jobq.running_job import CurrentJob
from jobq.worker.command_executor import CommandExecutor
from jobq.worker.execution_result import ExecutionResult
from jobq.worker.job_guardian import NO_GUARD, JobProcessGuard
from jobq.worker.job_user import JobUser
from jobq.worker.python_executor import (
    MAX_ERROR_MESSAGE_CHARS,
    PythonExecutor,
    handler_threads_busy,
)

__all__ = ["ExecutionResult", "JobExecutor"]

log = get_logger("jobq.worker.executor")


class JobExecutor:
    """Chooses the executor by payload and runs it."""

    def __init__(
        self,
        *,
        imports: Sequence[str],
        allowed_commands: Sequence[str],
        max_output_bytes: int,
        job_user: JobUser,
        guard: JobProcessGuard = NO_GUARD,
        cancel_grace_s: float = 10.0,
    ) -> None:
        """`imports` are the trusted modules (`worker.imports`), imported now;
        `allowed_commands` restricts the command executor (empty: no command jobs; `"*"`: any
        executable); `job_user` is who command jobs run as (`resolve_job_user`);
        `max_output_bytes` bounds a command's kept stdout and a handler's encoded result;
        `guard` is told each command job's process group (the worker's `JobGuardian`);
        `cancel_grace_s` is how long a cancelled job gets to stop (`worker.cancel_grace_s`).

        Raises:
            ConfigError: a trusted module cannot be imported.
        """
        self._python = PythonExecutor(
            imports, max_result_bytes=max_output_bytes, cancel_grace_s=cancel_grace_s
        )
        self._commands = CommandExecutor(
            allowed_commands=allowed_commands,
            max_output_bytes=max_output_bytes,
            job_user=job_user,
            guard=guard,
            cancel_grace_s=cancel_grace_s,
        )

    @staticmethod
    def unstoppable_running() -> int:
        """How many sync handlers still run on threads, including those of jobs that were
        cancelled or timed out: Python cannot stop a thread, only the process's exit does."""
        return handler_threads_busy()

    async def run(
        self, payload: bytes, default_timeout_s: float | None, *, job: CurrentJob | None = None
    ) -> ExecutionResult:
        """Run one job. `default_timeout_s` (the queue's TTL; None or <= 0: no limit) applies
        when the payload sets no `timeout_s`. `job` is the attempt as the handler sees it
        (`jobq.current_job()`): the executor hooks its way of stopping the job into it (for
        cancels) and feeds it a command's progress lines.

        Never raises for job problems; raises `CancelledError` when cancelled.
        """
        try:
            spec = parse_payload(payload)
        except PayloadError as exc:
            return _failed(exc.message, refused=True)
        timeout_s = spec.timeout_s
        if timeout_s is None and default_timeout_s is not None and default_timeout_s > 0:
            timeout_s = default_timeout_s
        try:
            if isinstance(spec, CommandSpec):
                result = await self._commands.run(spec, timeout_s, job=job)
            else:
                result = await self._python.run(spec, timeout_s, job=job)
        except Exception as exc:
            # A bug of ours, not the job's: fail this job loudly and keep the worker running.
            log.exception("executor failed", action="job.executor_error")
            return _failed(f"internal worker error: {type(exc).__name__}: {exc}")
        message = _printable(result.error_message)
        return result if message == result.error_message else replace(result, error_message=message)


def _failed(message: str, *, refused: bool = False) -> ExecutionResult:
    return ExecutionResult(success=False, error_message=_printable(message), refused=refused)


def _printable(message: str) -> str:
    """Bounded text that protobuf and PostgreSQL accept: lone surrogates (from exception text
    or an argv0 echoed back) are escaped, NULs (PostgreSQL text refuses them) replaced."""
    text = message.encode("utf-8", "backslashreplace").decode("utf-8").replace("\0", "\\x00")
    limit = MAX_ERROR_MESSAGE_CHARS + 256  # room for a prefix around a cut exception text
    return text if len(text) <= limit else text[:limit] + "…"
