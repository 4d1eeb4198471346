"""A TCP proxy between one jq-worker and its jq-server that the test can freeze: a network
partition in which neither process is paused and no connection is closed.

While frozen, the proxy forwards nothing in either direction but keeps every connection open
(and accepts new ones, which then carry nothing either): the bytes each side sends wait in
the proxy and in the kernel's socket buffers, exactly as on a link that silently drops
everything, until `thaw()`. It runs its own event loop in a daemon thread, so the test's own
loop (and any blocking call the test makes) cannot slow it down.

What happens to each chunk is `on_chunk`'s to say: a subclass overrides it to watch, hold or
cut a connection at a moment of its choosing (commit_cutter.py cuts one around a commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass

from support.processes import free_port

CHUNK = 64 * 1024


@dataclass(eq=False)  # one per connection, told apart (and weakly referenced) by identity
class Link:
    """One proxied connection: the writers towards its client and towards the upstream."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter

    def cut(self) -> None:
        """Close both sides at once, dropping whatever either still buffers: to each end, the
        connection is lost, as a link that fails is."""
        self.client.transport.abort()
        self.upstream.transport.abort()


class TcpProxy:
    """Listens on 127.0.0.1:`port` and forwards every connection to 127.0.0.1:`upstream_port`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._flowing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()

    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def freeze(self) -> float:
        """Stop forwarding (both directions, all connections, also new ones); returns when
        it is frozen (wall clock)."""
        asyncio.run_coroutine_threadsafe(self._set(False), self._loop).result(timeout=10)
        return time.time()

    def thaw(self) -> float:
        """Forward again, what waited first; returns when it does (wall clock)."""
        asyncio.run_coroutine_threadsafe(self._set(True), self._loop).result(timeout=10)
        return time.time()

    async def _set(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        # Aborted connections end their pumps (reads see the end; a frozen pump wakes to find
        # its sink gone); cancelling the handlers instead would make asyncio log each as an
        # error. Whatever is still running after that is cancelled.
        self._flowing.set()
        for writer in list(self._streams):
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def on_chunk(self, link: Link, upstream: bool, chunk: bytes) -> bool:
        """Called with each chunk read from one end before it goes to the other (`upstream`:
        from the client); forwards it when this returns True. False stops this direction of
        `link`, which the override has cut (`link.cut()`). By default: hold the chunk while
        the proxy is frozen, then forward it."""
        await self._flowing.wait()  # frozen: hold the bytes, keep the connection
        return True

    async def _accept(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_out.close()
            return
        self._streams |= {client_out, server_out}
        link = Link(client_out, server_out)
        try:
            await asyncio.gather(
                self._pump(link, True, client_in, server_out),
                self._pump(link, False, server_in, client_out),
            )
        finally:
            for writer in (client_out, server_out):
                self._streams.discard(writer)
                writer.close()

    async def _pump(
        self,
        link: Link,
        upstream: bool,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
    ) -> None:
        try:
            while data := await source.read(CHUNK):
                if not await self.on_chunk(link, upstream, data):
                    return
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if sink.can_write_eof():
                    sink.write_eof()
