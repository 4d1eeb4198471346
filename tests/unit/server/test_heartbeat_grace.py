"""The heartbeat monitor's loop declares no worker lost until it has had a heartbeat timeout
of unbroken database contact: after start-up and after an outage, workers could not beat."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jobq.server.heartbeat_monitor import HeartbeatMonitor


class _Maintenance:
    def __init__(self) -> None:
        self.runs = 0

    async def workers_mark_lost(self, *args: Any) -> list[Any]:
        self.runs += 1
        return []

    async def jobs_held_by_offline_workers(self, *args: Any) -> list[Any]:
        return []


class _Probe:
    def __init__(self) -> None:
        self.fail = False

    async def __call__(self) -> None:
        if self.fail:
            raise ConnectionRefusedError("database down")


async def test_no_run_before_a_timeout_of_contact_and_again_after_an_outage() -> None:
    maintenance, probe = _Maintenance(), _Probe()
    monitor = HeartbeatMonitor(
        maintenance,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        timeout_s=0.2,
        interval_s=60,
        probe=probe,
    )
    await monitor._tick()
    assert maintenance.runs == 0  # just started: workers may not have reached us yet
    await asyncio.sleep(0.25)
    await monitor._tick()
    assert maintenance.runs == 1
    probe.fail = True
    with pytest.raises(ConnectionRefusedError):
        await monitor._tick()
    probe.fail = False
    await monitor._tick()
    assert maintenance.runs == 1  # back from an outage: a new grace period
    await asyncio.sleep(0.25)
    await monitor._tick()
    assert maintenance.runs == 2


async def test_a_tick_long_overdue_starts_a_new_grace_period() -> None:
    """A server paused (SIGSTOP) longer than the heartbeat timeout heard no heartbeat
    meanwhile: on waking it must not declare every worker lost at once."""
    maintenance, probe = _Maintenance(), _Probe()
    monitor = HeartbeatMonitor(
        maintenance,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        timeout_s=0.2,
        interval_s=0.05,
        probe=probe,
    )
    await monitor._tick()
    await asyncio.sleep(0.25)
    await monitor._tick()
    assert maintenance.runs == 1
    await asyncio.sleep(1.2)  # no tick for far longer than the interval: a pause
    await monitor._tick()
    assert maintenance.runs == 1
    await asyncio.sleep(0.25)
    await monitor._tick()
    assert maintenance.runs == 2
