"""Is this replica ready, and how are its dependencies: /readyz and GetSystemStatus.

Ready means PostgreSQL answers within `READY_CHECK_TIMEOUT_S` and no background loop is down
(`ServiceLoop.down_reason`: failing again and again). The per-dependency checks of the admin
API say the same of PostgreSQL and add Redis; Kafka is not wired yet and says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import asyncpg

from jobq.coordination.locker import Locker
from jobq.observability.http_endpoints import READY_CHECK_TIMEOUT_S
from jobq.server.admin_service import HealthCheck
from jobq.server.service_loop import ServiceLoop
from jobq.storage.pool import ping


async def ready(pool: asyncpg.Pool, loops: Sequence[ServiceLoop] = ()) -> tuple[bool, str]:
    """(ready, why): PostgreSQL reachable and every loop in `loops` up."""
    try:
        async with asyncio.timeout(READY_CHECK_TIMEOUT_S):
            await ping(pool)
    except Exception as exc:
        return False, f"postgres unavailable: {type(exc).__name__}"
    down = [reason for loop in loops if (reason := loop.down_reason()) is not None]
    if down:
        return False, "; ".join(down)
    return True, "ready"


def dependency_checks(
    pool: asyncpg.Pool, locker: Locker, *, redis_enabled: bool
) -> dict[str, HealthCheck]:
    """The checks GetSystemStatus reports, by dependency: (healthy, detail), None = off."""

    async def postgres() -> tuple[bool | None, str]:
        ok, detail = await ready(pool)
        return ok, detail

    async def redis() -> tuple[bool | None, str]:
        if not redis_enabled:
            return None, "disabled"
        return (True, "ok") if await locker.healthy() else (False, "unreachable")

    async def kafka() -> tuple[bool | None, str]:
        return None, "disabled"

    return {"postgres": postgres, "redis": redis, "kafka": kafka}
