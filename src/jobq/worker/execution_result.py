"""What running one job attempt produced, as the worker reports it to the server."""

from __future__ import annotations

from jobq.domain.records import record

__all__ = ["ExecutionResult", "refusal", "timed_out_message"]


@record
class ExecutionResult:
    """The outcome of one job attempt, as the worker reports it to the server."""

    success: bool
    result: bytes = b""
    """Commands: captured stdout (also on failure); handlers: the JSON-encoded return value."""
    error_message: str = ""
    """Failures only: human text (exit status and stderr tail, or the exception)."""
    refused: bool = False
    """Failures only: the worker will never run this job (not allowed here, or a payload it
    cannot run), so a retry would be refused the same way. Reported as a refusal: the server
    dead-letters the job at once (REFUSED) instead of retrying it. Failures that another worker
    or a later attempt might not have ("handler not found", "command not found") are not
    refusals."""


def timed_out_message(seconds: float) -> str:
    """The error_message of a job stopped by its timeout, worded alike for both executors."""
    return f"timed out after {seconds:g}s"


def refusal(message: str) -> ExecutionResult:
    """A failed result for a job this worker will never run (see `ExecutionResult.refused`)."""
    return ExecutionResult(success=False, error_message=message, refused=True)
