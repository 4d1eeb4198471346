"""What running one job attempt produced, as the worker reports it to the server."""

from __future__ import annotations

from jobq.domain.records import record

__all__ = ["ExecutionResult", "timed_out_message"]


@record
class ExecutionResult:
    """The outcome of one job attempt, as the worker reports it to the server."""

    success: bool
    result: bytes = b""
    """Commands: captured stdout (also on failure); handlers: the JSON-encoded return value."""
    error_message: str = ""
    """Failures only: human text (exit status and stderr tail, or the exception)."""


def timed_out_message(seconds: float) -> str:
    """The error_message of a job stopped by its timeout, worded alike for both executors."""
    return f"timed out after {seconds:g}s"
