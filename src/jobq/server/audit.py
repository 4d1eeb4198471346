"""The audit trail: who did which admin action to what, and how it ended.

Each admin action (queue create/delete, worker drain/shutdown, job cancel/retry) runs inside
`AuditTrail.recording(action, target)`, which writes one record when the action ends: the caller
(`current_caller().label`: `token:NAME`, `cert:CN` or `anonymous`), the action's stable name,
its target (queue name, worker id or job id, as sent), and the outcome: `ok`, or the refusal as
the caller got it (`FAILED_PRECONDITION: queue 'x' holds 5 job(s) ...`). Refusals are worth as
much as successes: they show who tried what. Each record is also one structured log line on the
`jobq.audit` logger whose `action` field is the record's action.

The record is written after the action, in a transaction of its own. When that INSERT fails
after the action succeeded, the RPC still succeeds (the action happened, and failing the call
would make the caller retry something already done); the whole record goes to the log at ERROR
(`stored: false`), so it is not lost. The write is shielded: a caller that hangs up or runs out
of time while it runs does not cancel it, and an action cancelled midway (whose effect is then
unknown) is recorded as CANCELLED in the background.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from jobq.domain.errors import InvalidArgument
from jobq.domain.records import AuditEvent, NewAuditEvent
from jobq.observability.logging_setup import get_logger
from jobq.rpc.status_codes import status_for
from jobq.server.caller import current_caller
from jobq.storage.stores import AuditStore

__all__ = [
    "MAX_ACTION_CHARS",
    "MAX_ACTOR_CHARS",
    "OK",
    "AuditNote",
    "AuditTrail",
    "audit_filters",
]

log = get_logger("jobq.audit")

OK: Final = "ok"
CANCELLED: Final = (
    "CANCELLED: the call ended before the action did; it may or may not have taken effect"
)

MAX_ACTION_CHARS: Final = 64
MAX_ACTOR_CHARS: Final = 256
"""The longest `action` and `actor` filters ListAuditEvents accepts."""

MAX_TARGET_CHARS: Final = 256
MAX_TEXT_CHARS: Final = 1000
"""Stored targets, outcomes and details are cut to these lengths: a target is what the caller
sent, and a malformed one may be megabytes long."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class AuditNote:
    """What an action adds to its record while it runs (e.g. `force=true, deleted 3 job(s)`)."""

    detail: str | None = None


class AuditTrail:
    """Records admin actions through an AuditStore and the log; `store` also answers reads."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store
        self._writes: set[asyncio.Task[AuditEvent | None]] = set()

    @asynccontextmanager
    async def recording(self, action: str, target: str) -> AsyncIterator[AuditNote]:
        """Run the `async with` body as the action `action` on `target` and record how it
        ended; exceptions pass through unchanged, after the record is written.

        Put all the action does in the body, in-memory effects and lifecycle events included:
        the record is written when the body ends, and a call cancelled during that write must
        not leave them undone."""
        note = AuditNote()
        actor = current_caller().label
        try:
            yield note
        except asyncio.CancelledError:
            self._start_write(self._event(actor, action, target, CANCELLED, note))
            raise
        except Exception as exc:
            code, message = status_for(exc)
            await self._write(self._event(actor, action, target, f"{code.name}: {message}", note))
            raise
        await self._write(self._event(actor, action, target, OK, note))

    async def wait_written(self) -> None:
        """Wait for the records still being written (those of cancelled calls)."""
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    @staticmethod
    def _event(
        actor: str, action: str, target: str, outcome: str, note: AuditNote
    ) -> NewAuditEvent:
        return NewAuditEvent(
            actor=actor,
            action=action,
            target=_clip(target, MAX_TARGET_CHARS),
            outcome=_clip(outcome, MAX_TEXT_CHARS),
            detail=None if note.detail is None else _clip(note.detail, MAX_TEXT_CHARS),
        )

    def _start_write(self, event: NewAuditEvent) -> asyncio.Task[AuditEvent | None]:
        task = asyncio.create_task(self._store_and_log(event), name=f"audit {event.action}")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def _write(self, event: NewAuditEvent) -> None:
        # Shielded: if the call is cancelled now, the record is still written (and logged).
        await asyncio.shield(self._start_write(event))

    async def _store_and_log(self, event: NewAuditEvent) -> AuditEvent | None:
        fields = {
            "action": event.action,
            "actor": event.actor,
            "target": event.target,
            "outcome": event.outcome,
            "detail": event.detail,
        }
        try:
            stored = await self.store.audit_event_insert(event)
        except Exception as exc:  # the action stands; the log keeps the record
            log.error(
                f"audit record not stored: {event.actor} {event.action} {event.target}",
                stored=False,
                error=str(exc)[:200] or type(exc).__name__,
                **fields,
            )
            return None
        log.info(
            f"audit: {event.actor} {event.action} {event.target}: {event.outcome}",
            stored=True,
            audit_id=stored.id,
            **fields,
        )
        return stored


def audit_filters(action: str, actor: str) -> tuple[str | None, str | None]:
    """ListAuditEvents' filters (None: no filter); InvalidArgument naming an over-long one."""
    for field, value, limit in (
        ("action", action, MAX_ACTION_CHARS),
        ("actor", actor, MAX_ACTOR_CHARS),
    ):
        if len(value) > limit:
            raise InvalidArgument(f"{field} filter is at most {limit} characters, got {len(value)}")
        if "\x00" in value:  # PostgreSQL's text cannot hold it: refused here, not a 500 there
            raise InvalidArgument(f"{field} filter contains a NUL character")
    return action or None, actor or None
