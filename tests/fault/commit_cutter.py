"""A TCP proxy between jq-server and PostgreSQL that cuts one connection at the worst moment:
around the commit of the statement whose bytes carry a marker the test chose.

Armed with a marker (bytes that appear only in the parameters of the statement the test means,
such as a submit's idempotency key or a job's result), the proxy watches what jq-server sends.
The first time a chunk carries the marker:

- `after_commit=True`: the chunk goes to PostgreSQL, which runs the statement and commits it
  (asyncpg sends Bind, Execute and Sync together, and PostgreSQL writes its answer only after
  the commit at Sync); the answer is then thrown away and the connection closed on both sides.
  jq-server has lost its connection during COMMIT: the write happened, and it cannot know.
- `after_commit=False`: the connection is closed instead of forwarding the chunk: the
  statement never reaches PostgreSQL, and jq-server cannot know that either.

Every other connection, and this one up to that moment, is forwarded untouched. It runs its
own event loop in a daemon thread, like tcp_proxy.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from support.processes import free_port

CHUNK = 64 * 1024


class CommitCutter:
    """Listens on 127.0.0.1:`port`, forwards to 127.0.0.1:`upstream_port`; `arm` to cut."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cut = threading.Event()
        """Set once a connection was cut."""
        self._marker: bytes | None = None
        self._after_commit = True
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> CommitCutter:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def arm(self, marker: bytes, *, after_commit: bool) -> None:
        """Cut the next connection that sends `marker` (once; see the module docstring)."""
        self._loop.call_soon_threadsafe(self._set, marker, after_commit)

    def _set(self, marker: bytes, after_commit: bool) -> None:
        self.cut.clear()
        self._marker, self._after_commit = marker, after_commit

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        # Aborted connections end their pumps (reads see the end); cancelling the handlers
        # instead would make asyncio log each as an error.
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait(tasks, timeout=5) if tasks else None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        doomed = asyncio.Event()

        def cut() -> None:
            writer.transport.abort()
            up_writer.transport.abort()
            self.cut.set()

        async def upstream() -> None:
            tail = b""
            while chunk := await reader.read(CHUNK):
                marker = self._marker
                if marker is not None and marker in tail + chunk:
                    self._marker = None  # one cut per arming
                    if not self._after_commit:
                        cut()
                        return
                    doomed.set()
                up_writer.write(chunk)
                await up_writer.drain()
                tail = chunk[-256:]
            up_writer.close()  # jq-server closed: so does PostgreSQL's side

        async def downstream() -> None:
            while chunk := await up_reader.read(CHUNK):
                if doomed.is_set():  # PostgreSQL's answer to the marked statement: drop it
                    cut()
                    return
                writer.write(chunk)
                await writer.drain()
            # PostgreSQL closed (after a Terminate, say): jq-server must see it, or asyncpg's
            # close() waits for it forever.
            writer.close()

        try:
            await asyncio.gather(upstream(), downstream())
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for end in (writer, up_writer):
                end.transport.abort()
                self._writers.discard(end)
