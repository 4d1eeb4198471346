"""Is this replica ready, and how are its dependencies: /readyz and GetSystemStatus.

Ready means PostgreSQL answers within `READY_CHECK_TIMEOUT_S` and no background loop is down
(`ServiceLoop.down_reason`: failing again and again). The per-dependency checks of the admin
API say the same of PostgreSQL and add Redis and Kafka.

Kafka is never a reason to be unready: its events wait in PostgreSQL (the event outbox) while
the broker is away, and jobs run as usual. So a broker that does not answer, or a publisher
whose last batch was not acknowledged, makes Kafka "degraded" (GetSystemStatus's
COMPONENT_STATE_DEGRADED, and a note in /readyz's 200 answer), never down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from jobq.coordination.locks import Locker
from jobq.domain.records import OutboxLag
from jobq.observability.http_endpoints import READY_CHECK_TIMEOUT_S
from jobq.server.admin_service import DEGRADED, Health, HealthCheck
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


class KafkaState(Protocol):
    """What the Kafka check asks: is a broker reachable, did the last batch get through, and
    how much waits in the outbox."""

    async def reachable(self) -> tuple[bool, str]: ...

    def publish_problem(self) -> str | None: ...

    async def outbox_lag(self) -> OutboxLag: ...


async def kafka_health(state: KafkaState) -> tuple[Health, str]:
    """(True, detail) when a broker answers and events get through; (DEGRADED, why) when
    not; the detail names the backlog either way."""
    reachable, detail = await state.reachable()
    lag = await state.outbox_lag()
    waiting = f"{lag.events} event(s) waiting"
    if lag.oldest_s is not None:
        waiting += f", oldest {lag.oldest_s:.1f} s"
    problem = None if reachable else f"broker unreachable: {detail}"
    problem = problem or state.publish_problem()
    if problem is not None:
        return DEGRADED, f"{problem}; {waiting} in PostgreSQL"
    return True, f"{detail}; {waiting}"


async def readiness_note(state: KafkaState | None) -> str | None:
    """The note /readyz adds to "ready" while Kafka is degraded, else None."""
    if state is None:
        return None
    try:
        # Cheap first (a cached probe, a flag): the outbox is counted only when degraded.
        if (await state.reachable())[0] and state.publish_problem() is None:
            return None
        health, detail = await kafka_health(state)
    except Exception as exc:  # PostgreSQL's own check reports the database
        return f"kafka unknown: {type(exc).__name__}"
    return f"kafka degraded: {detail}" if health == DEGRADED else None


def dependency_checks(
    probe: Probe, locker: Locker, *, redis_enabled: bool, kafka: KafkaState | None = None
) -> dict[str, HealthCheck]:
    """The checks GetSystemStatus reports, by dependency: (healthy, detail), None = off."""

    async def postgres() -> tuple[Health, str]:
        ok, detail = await ready(probe)
        return ok, detail

    async def redis() -> tuple[Health, str]:
        if not redis_enabled:
            return None, "disabled"
        return (True, "ok") if await locker.healthy() else (False, "unreachable")

    async def kafka_check() -> tuple[Health, str]:
        if kafka is None:
            return None, "disabled"
        return await kafka_health(kafka)

    return {"postgres": postgres, "redis": redis, "kafka": kafka_check}
