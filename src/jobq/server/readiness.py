"""Is this replica ready, and how are its dependencies: /readyz and GetSystemStatus.

Ready means PostgreSQL answers within `READY_CHECK_TIMEOUT_S` and no background loop is down
(`ServiceLoop.down_reason`: failing again and again). The per-dependency checks of the admin
API say the same of PostgreSQL and add Redis; Kafka is not wired yet and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from jobq.coordination.locks import Locker
from jobq.observability.http_endpoints import READY_CHECK_TIMEOUT_S
from jobq.server.admin_service import HealthCheck
from jobq.server.service_loop import ServiceLoop

Probe = Callable[[], Awaitable[object]]
"""A round trip to PostgreSQL (the composition root's `ping` of the pool)."""


async def ready(probe: Probe, loops: Sequence[ServiceLoop] = ()) -> tuple[bool, str]:
    """(ready, why): PostgreSQL reachable and every loop in `loops` up."""
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            await probe()
    except Exception as exc:
        return False, f"postgres unavailable: {type(exc).__name__}"
    down = [reason for loop in loops if (reason := loop.down_reason()) is not None]
    if down:
        return False, "; ".join(down)
    return True, "ready"


def dependency_checks(
    probe: Probe, locker: Locker, *, redis_enabled: bool
) -> dict[str, HealthCheck]:
    """The checks GetSystemStatus reports, by dependency: (healthy, detail), None = off."""

    async def postgres() -> tuple[bool | None, str]:
        ok, detail = await ready(probe)
        return ok, detail

    async def redis() -> tuple[bool | None, str]:
        if not redis_enabled:
            return None, "disabled"
        return (True, "ok") if await locker.healthy() else (False, "unreachable")

    async def kafka() -> tuple[bool | None, str]:
        return None, "disabled"

    return {"postgres": postgres, "redis": redis, "kafka": kafka}
