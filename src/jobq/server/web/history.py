"""The overview's last hour: jobs started, finished and failed per interval, and queue depth."""

from __future__ import annotations

from jobq.server.service_loop import ServiceLoop

__all__ = ["History"]

INTERVAL_S = 5.0


class History:
    """Samples activity from PostgreSQL every `interval_s` (every replica's, not only ours)."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.loop = ServiceLoop("dashboard_history", interval_s, self._sample)

    async def _sample(self) -> None:
        return None
