"""The heartbeat monitor's loop declares no worker lost until it has had a heartbeat timeout
of unbroken database contact: after start-up, after an outage, and after a pause of this
process (workers could not beat, or were not heard). Time moves through the monitor's injected
monotonic clock: nothing here sleeps."""

from __future__ import annotations

from typing import Any

import pytest

from jobq.server.heartbeat_monitor import HeartbeatMonitor
from jobq.server.lifecycle import Lifecycle


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


class _Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _monitor(
    maintenance: _Maintenance, probe: _Probe, clock: _Clock, *, interval_s: float
) -> HeartbeatMonitor:
    return HeartbeatMonitor(
        maintenance,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        timeout_s=30,
        interval_s=interval_s,
        lifecycle=Lifecycle(),
        probe=probe,
        monotonic=clock,
    )


async def test_no_run_before_a_timeout_of_contact_and_again_after_an_outage() -> None:
    maintenance, probe, clock = _Maintenance(), _Probe(), _Clock()
    monitor = _monitor(maintenance, probe, clock, interval_s=3600)
    await monitor._tick()
    assert maintenance.runs == 0  # just started: workers may not have reached us yet
    clock.advance(29.9)
    await monitor._tick()
    assert maintenance.runs == 0  # still short of a heartbeat timeout
    clock.advance(0.1)
    await monitor._tick()
    assert maintenance.runs == 1
    probe.fail = True
    with pytest.raises(ConnectionRefusedError):
        await monitor._tick()
    probe.fail = False
    await monitor._tick()
    assert maintenance.runs == 1  # back from an outage: a new grace period
    clock.advance(30)
    await monitor._tick()
    assert maintenance.runs == 2


async def test_a_failed_run_starts_a_new_grace_period() -> None:
    """The probe passed but the run itself failed (the database went away in between)."""
    maintenance, probe, clock = _Maintenance(), _Probe(), _Clock()
    monitor = _monitor(maintenance, probe, clock, interval_s=3600)
    await monitor._tick()
    clock.advance(30)

    async def fails(*args: Any) -> list[Any]:
        raise ConnectionResetError("database gone")

    maintenance.workers_mark_lost = fails  # type: ignore[method-assign]
    with pytest.raises(ConnectionResetError):
        await monitor._tick()
    del maintenance.workers_mark_lost
    await monitor._tick()
    assert maintenance.runs == 0
    clock.advance(30)
    await monitor._tick()
    assert maintenance.runs == 1


async def test_a_tick_long_overdue_starts_a_new_grace_period() -> None:
    """A server paused (SIGSTOP) longer than the heartbeat timeout heard no heartbeat
    meanwhile: on waking it must not declare every worker lost at once."""
    maintenance, probe, clock = _Maintenance(), _Probe(), _Clock()
    monitor = _monitor(maintenance, probe, clock, interval_s=5)
    for _ in range(6):  # ticks on time: the grace period runs out after 30 s
        await monitor._tick()
        clock.advance(5)
    await monitor._tick()
    assert maintenance.runs == 1
    clock.advance(60)  # no tick for far longer than the interval: a pause
    await monitor._tick()
    assert maintenance.runs == 1
    for _ in range(6):
        clock.advance(5)
        await monitor._tick()
    assert maintenance.runs == 2


async def test_a_tick_a_little_late_is_no_pause() -> None:
    """Overdue means later than twice the interval (at least 1 s late): a slow run or a busy
    event loop must not reset the grace period, or a busy server would never judge anyone."""
    maintenance, probe, clock = _Maintenance(), _Probe(), _Clock()
    monitor = _monitor(maintenance, probe, clock, interval_s=5)
    await monitor._tick()
    for _ in range(3):
        clock.advance(10)  # exactly the limit: interval + max(interval, 1 s)
        await monitor._tick()
    assert maintenance.runs == 1
