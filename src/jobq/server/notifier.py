"""Wake-ups across replicas: LISTEN on `jobq_jobs`, which every submit NOTIFYs at commit.

A dedicated connection (not from the pool) holds the LISTEN. When it breaks — PostgreSQL
restarted — it reconnects with a backoff; meanwhile the dispatcher's interval is the fallback.

The channel is per schema (`db.schema`): notifications are database-wide, so jobq installations
in two schemas of one database would otherwise wake each other's dispatchers for nothing.
`public`, the default, keeps the channel's old name `jobq_jobs`, so replicas of an older jobq
still wake these during a rolling upgrade; another schema's is `jobq_jobs_<schema>`. The submit
(`jobs_insert` in storage/sql/jobs.sql) names the channel from its session's `current_schema()`
by the same rule as `notify_channel`. The connection only listens: it needs no session settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from jobq.observability.logging_setup import get_logger
from jobq.storage.pool import DEFAULT_SCHEMA

CHANNEL = "jobq_jobs"
log = get_logger("jobq.notifier")


def notify_channel(schema: str) -> str:
    """The channel submits in `schema` notify (see the module docstring). db.schema is limited
    to 53 characters, so `jobq_jobs_<schema>` fits PostgreSQL's 63-byte names."""
    return CHANNEL if schema == DEFAULT_SCHEMA else f"{CHANNEL}_{schema}"


class Notifier:
    def __init__(
        self, dsn: str, on_notify: Callable[[], None], *, schema: str = DEFAULT_SCHEMA
    ) -> None:
        self._dsn = dsn
        self._on_notify = on_notify
        self.channel = notify_channel(schema)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="notifier")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _listener(self, *_: object) -> None:
        self._on_notify()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                lost = asyncio.Event()
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(self.channel, self._listener)
                backoff = 0.5
                self._on_notify()  # anything submitted while we were not listening
                await lost.wait()
                log.warning("notification connection lost", action="notifier.lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "cannot listen for notifications", action="notifier.error", error=str(exc)
                )
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    """A termination listener that sets `event` (bound now, not when the loop moves on)."""
    return lambda _: event.set()
