"""Publishes each job's transitions in the order their transactions committed.

Writes run concurrently on this replica, and a write's caller learns of its commit only when the
event loop gets round to it: after the commit of a submit, say, the pool's connection reset
still has to come back, and by then the dispatcher, woken by the NOTIFY that commit sent, may
have claimed the job and announced ASSIGNED before anyone announced PENDING. So every write
that changes jobs holds a ticket from before it starts until it has returned (`open`,
`close`), and what it changed waits here until every write that started before it returned
has returned too. Why that suffices: if a change A of a job committed before a change B of the
same job, A's write started before B's commit, so before B's write returned; B's transitions
therefore wait for A's write to return, and then both are here, ordered by the time each
statement took (`occurred_at`, PostgreSQL's statement_timestamp(): B's statement began after
A's commit
for all of jobq's writes, which either see A's row in their snapshot or update it after
waiting for A's lock).

Batches are released in the order their writes returned; a later batch holding an earlier
change of a released job is robbed of it first, so one job's changes never cross. With no
other write in flight (the common case when idle, and every single-caller test) a batch goes
out at once, unsorted. A write that hangs holds back the batches behind it only until its
statement times out (`db.command_timeout_s`).

Subscribers run in the context (contextvars: the correlation id of the RPC that made the
change) of the write that made the transitions, also when another write's return releases them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from contextvars import Context
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from jobq.domain.records import Transition

Emit = Callable[[list[Transition]], None]


@dataclass
class _Batch:
    watermark: int
    """The last ticket handed out when its write returned: it waits for every ticket up to
    this one."""
    transitions: list[Transition]
    context: Context


class PublicationOrder:
    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._issued = 0
        self._open: dict[int, None] = {}  # insertion order is ticket order: the first is lowest
        self._waiting: deque[_Batch] = deque()

    def open(self) -> int:
        """A write is about to start: its ticket."""
        self._issued += 1
        self._open[self._issued] = None
        return self._issued

    def close(self, ticket: int, transitions: Sequence[Transition], context: Context) -> None:
        """The write of `ticket` returned, having applied `transitions` (none when it failed or
        changed nothing) in `context`: publish what may go now."""
        del self._open[ticket]
        if transitions:
            self._waiting.append(_Batch(self._issued, list(transitions), context))
        if self._waiting:
            self._release()

    def _release(self) -> None:
        lowest_open = next(iter(self._open), self._issued + 1)
        ready: list[_Batch] = []
        while self._waiting and self._waiting[0].watermark < lowest_open:
            ready.append(self._waiting.popleft())
        if not ready:
            return
        if len(ready) == 1 and not self._waiting:  # the common case: nothing to merge
            ready[0].context.run(self._emit, ready[0].transitions)
            return
        released = [(t, b.context) for b in ready for t in b.transitions]
        if self._waiting:
            self._pull_earlier(released)
        # Stable: the changes of one statement for one job (FAILED then PENDING) share their
        # time and keep their order.
        released.sort(key=lambda item: item[0].occurred_at)
        start = 0
        for end in range(1, len(released) + 1):
            if end == len(released) or released[end][1] is not released[start][1]:
                released[start][1].run(self._emit, [t for t, _ in released[start:end]])
                start = end

    def _pull_earlier(self, released: list[tuple[Transition, Context]]) -> None:
        """Move into `released` the held transitions of its jobs that happened before its last
        one of the same job."""
        latest: dict[UUID, datetime] = {}
        for t, _ in released:
            seen = latest.get(t.job_id)
            if seen is None or t.occurred_at > seen:
                latest[t.job_id] = t.occurred_at
        for batch in self._waiting:
            keep: list[Transition] = []
            for t in batch.transitions:
                last = latest.get(t.job_id)
                if last is not None and t.occurred_at <= last:
                    released.append((t, batch.context))
                else:
                    keep.append(t)
            batch.transitions = keep
