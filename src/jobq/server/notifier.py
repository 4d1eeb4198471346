"""Wake-ups across replicas: LISTEN on `jobq_jobs`, which every submit NOTIFYs at commit.

A transactional enqueue's notification says 'enqueued': it also wakes the EnqueueAnnouncer
(`on_enqueued`), which publishes those jobs' SUBMITTED; jq-server's own submits say nothing
more, so they cost the announcer nothing.

A cancel of a RUNNING job notifies the same channel with `cancel:<worker>:<job>:<attempt>`
(job_cancel in sql/cancels.sql): it goes to `on_cancel` (server/cancels.py) and wakes no
dispatcher, so the replica holding the worker's stream, whichever it is, can tell the worker.

A dedicated connection (not from the pool) holds the LISTEN. When it breaks — PostgreSQL
restarted — it reconnects at once, then with a backoff; meanwhile the dispatcher's interval is
the fallback.

The channel is per schema (`db.schema`), named by `jobq.storage.pool.notify_channel`, which the
composition root passes in. The connection only listens: it needs no session settings.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from jobq.observability.logging_setup import get_logger
from jobq.server.service_loop import ServiceLoop

CHECK_INTERVAL_S = 5.0
ENQUEUED = "enqueued"
"""The payload of a transactional enqueue's notification (jobs_insert with $9)."""
QUEUES = "queues"
"""The payload of a change to a queue's flow settings (queue_set_flow): pause, resume, limits."""
CANCEL_PREFIX = "cancel:"
"""The payload prefix of a cancel request's notification (job_cancel)."""
log = get_logger("jobq.notifier")


class Notifier:
    """Holds a LISTEN on the submit channel and calls `on_notify` for each notification.

    Runs as a ServiceLoop whose run makes sure the LISTEN is held: a lost connection wakes
    the loop at once, a failed reconnect is retried with the loop's backoff (0.5 s doubling up
    to 5 s), and the interval is only a fallback check of the connection.
    """

    def __init__(
        self,
        dsn: str,
        on_notify: Callable[[], None],
        *,
        channel: str,
        on_enqueued: Callable[[], None] | None = None,
        on_queues: Callable[[], None] | None = None,
        on_cancel: Callable[[str], None] | None = None,
    ) -> None:
        self._dsn = dsn
        self._on_notify = on_notify
        self._on_enqueued = on_enqueued
        self._on_queues = on_queues
        self._on_cancel = on_cancel
        self.channel = channel
        self._conn: asyncpg.Connection | None = None
        self.loop = ServiceLoop(
            "notifier", CHECK_INTERVAL_S, self.run_once, retry_s=0.5, max_retry_s=5.0
        )

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def start(self) -> None:
        self.loop.start()

    async def stop(self) -> None:
        await self.loop.stop()
        self._close()

    async def run_once(self) -> None:
        """Listen, unless already listening: connect, LISTEN, then wake the dispatcher (and
        the announcer) for anything submitted while nobody here was listening."""
        if self.listening:
            return
        self._close()
        conn = await asyncpg.connect(self._dsn, timeout=5)
        try:
            conn.add_termination_listener(self._lost)
            await conn.add_listener(self.channel, self._listener)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._on_notify()
        if self._on_enqueued is not None:
            self._on_enqueued()
        if self._on_queues is not None:  # a change may have been missed while not listening
            self._on_queues()

    def _listener(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if isinstance(payload, str) and payload.startswith(CANCEL_PREFIX):
            if self._on_cancel is not None:
                self._on_cancel(payload)
            return
        self._on_notify()
        if payload == ENQUEUED and self._on_enqueued is not None:
            self._on_enqueued()
        elif payload == QUEUES and self._on_queues is not None:
            self._on_queues()

    def _lost(self, conn: object) -> None:
        if conn is self._conn:  # not one this notifier closed itself
            log.warning("notification connection lost", action="notifier.lost")
            self.loop.wake()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
