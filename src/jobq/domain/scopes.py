"""What a credential may do: the scopes of tokens and client certificates.

Each RPC needs exactly one scope (the table is `jobq.rpc.method_scopes`). Scopes do not imply
one another: an operator who should read, submit and act holds all three.
"""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    SUBMIT = "submit"
    """Submit jobs (SubmitJob, SubmitJobs)."""

    READ = "read"
    """See jobs, their history, queues, workers and the system's status; server reflection."""

    ADMIN = "admin"
    """Act on what exists: cancel and retry jobs, create and delete queues, drain and shut down
    workers, read the audit log."""

    WORKER = "worker"
    """Be a worker: register, heartbeat, receive jobs and report their results."""


SCOPE_NAMES: tuple[str, ...] = tuple(scope.value for scope in Scope)
