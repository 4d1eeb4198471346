"""TaskSupervisor: a failing loop is logged and restarted; one that keeps failing is given up
on, loudly; a stray CancelledError is a failure, a cancellation of the task is not; a loop
waiting for its restart or given up on is reported down."""

from __future__ import annotations

import asyncio

import structlog
from support.fake_clock import FakeClock

from jobq.worker.task_supervisor import RestartBudget, RestartPolicy, TaskSupervisor

FAST = RestartPolicy(max_restarts=2, window_s=60.0, delay_s=0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_allows_max_restarts_per_window_and_refills() -> None:
    clock = Clock()
    budget = RestartBudget(RestartPolicy(max_restarts=2, window_s=10.0), clock)
    assert budget.spend()
    clock.now += 1
    assert budget.spend()
    assert not budget.spend()
    clock.now += 9.5  # the first restart has left the window, the second not yet
    assert budget.spend()
    assert not budget.spend()


class Loop:
    """A loop whose first `failures` runs raise `problem`; later runs wait forever."""

    def __init__(self, failures: int, problem: BaseException) -> None:
        self.runs = 0
        self.failures = failures
        self.problem = problem
        self.settled = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise self.problem
        self.settled.set()
        await asyncio.Event().wait()


async def test_a_loop_that_fails_is_logged_and_restarted() -> None:
    given_up: list[str] = []
    supervisor = TaskSupervisor(FAST)
    supervisor.on_give_up(lambda name, exc: given_up.append(name))
    loop = Loop(failures=1, problem=RuntimeError("boom"))
    with structlog.testing.capture_logs() as logs:
        supervisor.start("reporter", loop)
        await asyncio.wait_for(loop.settled.wait(), 5)
    assert loop.runs == 2
    assert supervisor.running("reporter")
    assert given_up == []
    [restarted] = [e for e in logs if e.get("action") == "worker.task_restarted"]
    assert restarted["log_level"] == "error"
    assert restarted["task"] == "reporter"
    assert restarted["error"] == "RuntimeError: boom"
    await supervisor.stop()
    assert not supervisor.running("reporter")


async def test_a_stray_cancellation_is_a_failure_not_a_stop() -> None:
    # grpc.aio raises CancelledError in the caller when the call's channel is closed; the
    # reporter died of exactly that, silently.
    supervisor = TaskSupervisor(FAST)
    loop = Loop(failures=1, problem=asyncio.CancelledError())
    supervisor.start("reporter", loop)
    await asyncio.wait_for(loop.settled.wait(), 5)
    assert loop.runs == 2
    await supervisor.stop()


async def test_a_loop_that_keeps_failing_is_given_up_on() -> None:
    given_up: list[tuple[str, str]] = []
    supervisor = TaskSupervisor(FAST)
    supervisor.on_give_up(lambda name, exc: given_up.append((name, str(exc))))
    loop = Loop(failures=100, problem=ValueError("always"))
    with structlog.testing.capture_logs() as logs:
        supervisor.start("watchdog", loop)
        async with asyncio.timeout(5):
            while supervisor.running("watchdog"):
                await asyncio.sleep(0.01)
    assert loop.runs == 3  # the first run and two restarts
    assert given_up == [("watchdog", "always")]
    assert [e["action"] for e in logs] == [
        "worker.task_restarted",
        "worker.task_restarted",
        "worker.task_failed",
    ]
    await supervisor.stop()


async def test_a_loop_that_returns_is_restarted_too() -> None:
    runs = 0
    settled = asyncio.Event()

    async def returns_once() -> None:
        nonlocal runs
        runs += 1
        if runs > 1:
            settled.set()
            await asyncio.Event().wait()

    supervisor = TaskSupervisor(FAST)
    supervisor.start("watchdog", returns_once)
    await asyncio.wait_for(settled.wait(), 5)
    await supervisor.stop()


async def test_stop_cancels_without_giving_up() -> None:
    given_up: list[str] = []
    supervisor = TaskSupervisor(FAST)
    supervisor.on_give_up(lambda name, exc: given_up.append(name))
    loop = Loop(failures=0, problem=RuntimeError())
    supervisor.start("reporter", loop)
    await asyncio.wait_for(loop.settled.wait(), 5)
    await supervisor.stop()
    assert given_up == []
    assert loop.runs == 1


async def test_a_loop_is_down_while_it_waits_for_its_restart_and_once_given_up_on() -> None:
    clock = FakeClock()
    policy = RestartPolicy(max_restarts=1, window_s=60.0, delay_s=1.0)
    supervisor = TaskSupervisor(policy, clock=clock, sleep=clock.sleep)
    loop = Loop(failures=1, problem=RuntimeError("boom"))
    supervisor.start("reporter", loop)
    await clock.sleeping()  # failed once: waiting out the restart delay
    assert supervisor.down() == {"reporter": "restarting after RuntimeError: boom"}
    clock.advance(1.0)
    await asyncio.wait_for(loop.settled.wait(), 5)
    assert supervisor.down() == {}
    await supervisor.stop()

    always = Loop(failures=100, problem=ValueError("always"))
    supervisor.start("watchdog", always)
    await clock.sleeping()
    clock.advance(1.0)
    async with asyncio.timeout(5):
        while supervisor.running("watchdog"):
            await asyncio.sleep(0)
    assert supervisor.down() == {"watchdog": "gave up: ValueError: always"}
    assert clock.slept == [1.0, 1.0]
    await supervisor.stop()


async def test_cancel_stops_one_loop_for_good_and_leaves_the_others() -> None:
    given_up: list[str] = []
    supervisor = TaskSupervisor(FAST)
    supervisor.on_give_up(lambda name, exc: given_up.append(name))
    first, second = Loop(0, RuntimeError()), Loop(0, RuntimeError())
    ended: list[str] = []

    async def heartbeats() -> None:
        try:
            await first()
        finally:
            ended.append("heartbeats")

    supervisor.start("heartbeats", heartbeats)
    supervisor.start("reporter", second)
    await asyncio.wait_for(asyncio.gather(first.settled.wait(), second.settled.wait()), 5)
    await supervisor.cancel("heartbeats")
    assert ended == ["heartbeats"]  # ended by the time `cancel` returns
    await supervisor.cancel("heartbeats")  # idempotent
    assert not supervisor.running("heartbeats")
    assert supervisor.running("reporter")
    assert (first.runs, given_up, supervisor.down()) == (1, [], {})
    supervisor.start("heartbeats", first)  # the name is free again
    await supervisor.stop()
