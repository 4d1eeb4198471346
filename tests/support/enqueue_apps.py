"""An application's own database connection, asyncpg or psycopg 3, as the transactional
enqueue tests drive it: its own transaction, its own tables, and jobq.enqueue(_sync) inside."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import asyncpg
import psycopg

import jobq
from jobq.client import Submitted


class App(Protocol):
    """An application's connection: its own transaction and its own tables."""

    async def begin(self) -> None: ...
    async def execute(self, sql: str) -> None: ...
    async def fetchval(self, sql: str) -> Any: ...
    async def enqueue(self, *args: Any, **kwargs: Any) -> Submitted: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...
    async def close(self) -> None: ...


class AsyncpgApp:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._tx: Any = None

    async def begin(self) -> None:
        self._tx = self.conn.transaction()
        await self._tx.start()

    async def execute(self, sql: str) -> None:
        await self.conn.execute(sql)

    async def fetchval(self, sql: str) -> Any:
        return await self.conn.fetchval(sql)

    async def enqueue(self, *args: Any, **kwargs: Any) -> Submitted:
        return await jobq.enqueue(self.conn, *args, **kwargs)

    async def commit(self) -> None:
        await self._tx.commit()

    async def rollback(self) -> None:
        await self._tx.rollback()

    async def close(self) -> None:
        await self.conn.close()


class PsycopgApp:
    """psycopg is blocking: every call runs in a thread, so the server in this event loop
    keeps serving meanwhile."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    async def begin(self) -> None:
        await asyncio.to_thread(self.conn.execute, "BEGIN")

    async def execute(self, sql: str) -> None:
        await asyncio.to_thread(self.conn.execute, sql)

    async def fetchval(self, sql: str) -> Any:
        def run() -> Any:
            row = self.conn.execute(sql).fetchone()
            return None if row is None else row[0]

        return await asyncio.to_thread(run)

    async def enqueue(self, *args: Any, **kwargs: Any) -> Submitted:
        return await asyncio.to_thread(jobq.enqueue_sync, self.conn, *args, **kwargs)

    async def commit(self) -> None:
        await asyncio.to_thread(self.conn.commit)

    async def rollback(self) -> None:
        await asyncio.to_thread(self.conn.rollback)

    async def close(self) -> None:
        await asyncio.to_thread(self.conn.close)


class PsycopgAsyncApp:
    """psycopg's AsyncConnection, with `await jobq.enqueue()` as with asyncpg."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def begin(self) -> None:
        await self.conn.execute("BEGIN")

    async def execute(self, sql: str) -> None:
        await self.conn.execute(sql.encode())

    async def fetchval(self, sql: str) -> Any:
        row = await (await self.conn.execute(sql.encode())).fetchone()
        return None if row is None else row[0]

    async def enqueue(self, *args: Any, **kwargs: Any) -> Submitted:
        return await jobq.enqueue(self.conn, *args, **kwargs)

    async def commit(self) -> None:
        await self.conn.commit()

    async def rollback(self) -> None:
        await self.conn.rollback()

    async def close(self) -> None:
        await self.conn.close()
