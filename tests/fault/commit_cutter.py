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

Every other connection, and this one up to that moment, is forwarded untouched. It is
tcp_proxy.py's TcpProxy (its own event loop in a daemon thread) with a per-chunk hook that
watches for the marker.
"""

from __future__ import annotations

import threading
import weakref

from fault.tcp_proxy import Link, TcpProxy

TAIL = 256
"""Bytes of a connection's previous chunk searched with the next: a marker may be split
between two reads."""


class CommitCutter(TcpProxy):
    """Listens on 127.0.0.1:`port`, forwards to 127.0.0.1:`upstream_port`; `arm` to cut."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.cut = threading.Event()
        """Set once a connection was cut."""
        self._marker: bytes | None = None
        self._after_commit = True
        # Per connection, kept only while it lasts: the tail of what jq-server sent last, and
        # whether the marked statement went to PostgreSQL on it (its answer is to be dropped).
        self._tails: weakref.WeakKeyDictionary[Link, bytes] = weakref.WeakKeyDictionary()
        self._doomed: weakref.WeakSet[Link] = weakref.WeakSet()

    def start(self) -> CommitCutter:
        super().start()
        return self

    def arm(self, marker: bytes, *, after_commit: bool) -> None:
        """Cut the next connection that sends `marker` (once; see the module docstring)."""
        self._loop.call_soon_threadsafe(self._arm, marker, after_commit)

    def _arm(self, marker: bytes, after_commit: bool) -> None:
        self.cut.clear()
        self._marker, self._after_commit = marker, after_commit

    async def on_chunk(self, link: Link, upstream: bool, chunk: bytes) -> bool:
        if not upstream:
            if link in self._doomed:  # PostgreSQL's answer to the marked statement: drop it
                self._cut(link)
                return False
            return True
        marker = self._marker
        if marker is not None and marker in self._tails.get(link, b"") + chunk:
            self._marker = None  # one cut per arming
            if not self._after_commit:
                self._cut(link)
                return False
            self._doomed.add(link)
        self._tails[link] = chunk[-TAIL:]
        return True

    def _cut(self, link: Link) -> None:
        link.cut()
        self.cut.set()
