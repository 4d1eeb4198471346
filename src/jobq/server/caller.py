"""Who is calling: the identity the authentication step found, for the RPC being served.

Set once per call by the guard around every method (`server/guard.py`) and read where an
identity is recorded: the audit trail and the log lines of refused calls. A context variable,
because each RPC runs in a task of its own.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from jobq.domain.scopes import Scope

__all__ = ["ANONYMOUS", "Caller", "current_caller", "set_caller"]

CallerKind = Literal["token", "certificate", "anonymous"]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated identity: a token's configured name or a certificate's subject."""

    name: str
    kind: CallerKind
    scopes: frozenset[Scope]

    @property
    def label(self) -> str:
        """How the audit trail and logs name the caller: `token:ci`, `cert:CN=worker-1`."""
        if self.kind == "token":
            return f"token:{self.name}"
        if self.kind == "certificate":
            return f"cert:{self.name}"
        return "anonymous"


ANONYMOUS = Caller("anonymous", "anonymous", frozenset(Scope))
"""The caller when no authentication is configured (loopback only): may do everything."""

_current: ContextVar[Caller] = ContextVar("jobq_caller", default=ANONYMOUS)


def current_caller() -> Caller:
    return _current.get()


def set_caller(caller: Caller) -> None:
    """Record the caller of the RPC running in this task (the guard calls it first thing)."""
    _current.set(caller)
