"""Live updates for dashboard pages (Server-Sent Events), fed by the lifecycle stream."""

from __future__ import annotations

from collections.abc import Sequence

from jobq.domain.records import Transition
from jobq.server.lifecycle import Lifecycle

__all__ = ["LiveFeed"]


class LiveFeed:
    """Counts this replica's committed state changes for the pages' live streams."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.changes = 0
        lifecycle.subscribe(self._seen)

    def _seen(self, transitions: Sequence[Transition]) -> None:
        self.changes += len(transitions)

    async def close(self) -> None:
        """End every open stream (jq-server is stopping)."""
