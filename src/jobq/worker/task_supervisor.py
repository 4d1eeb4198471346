"""Keeps the worker's background loops running, or stops the worker loudly when it cannot.

The reporter, the server-contact watchdog and the job guardian's watch are loops meant to run
until the worker stops. If one ends early, through an unexpected exception or a stray
cancellation (grpc.aio cancels the calls of a channel being closed), nothing else notices: the
worker would go on taking and running jobs whose starts and results nobody sends. That is what
happened when a server replica paused (the reporter died on a cancelled call), so every such
loop runs under a `TaskSupervisor`, as STYLE.md asks ("one crash is never silent"):

- a loop that fails is logged at ERROR with its traceback (`worker.task_restarted`) and started
  again after `RestartPolicy.delay_s`: the loops keep their state in their objects (the
  reporter's queues), not in the task, so a restart loses nothing;
- a loop that fails more than `max_restarts` times within `window_s` is a bug a restart will not
  fix: it is logged (`worker.task_failed`) and the subscriber of `on_give_up` is called (the
  worker's `Shutdown`, which stops the worker with a non-zero exit rather than leave it
  half-alive). Without a subscriber the loop is still given up on, logged and named by `down()`.

`RestartBudget` is the pure counting part (clock injected), shared with the session loop of
`session.py`, which restarts a session that crashed by reconnecting.

A loop that failed and waits for its restart, or was given up on, is *down*: `down()` names
them, for the worker's readiness (`WorkerRuntime.ready`), so /readyz says which loop is not
running rather than "ready" while, say, no result is being sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

from jobq.domain.records import record
from jobq.observability.logging_setup import get_logger
from jobq.worker.clock import Clock, Sleep

__all__ = ["DEFAULT_POLICY", "LoopEnded", "RestartBudget", "RestartPolicy", "TaskSupervisor"]

log = get_logger("jobq.worker.supervisor")


@record
class RestartPolicy:
    """How often a failing loop is started again before the worker gives up on it."""

    max_restarts: int = 5
    window_s: float = 60.0
    delay_s: float = 1.0
    """The pause before a restart: a loop that fails at once does not spin."""


DEFAULT_POLICY: Final = RestartPolicy()

OnGiveUp = Callable[[str, BaseException], None]
"""Called with the loop's name and its last failure when it will not be restarted again."""


class LoopEnded(Exception):
    """A loop that should run until cancelled returned."""


class RestartBudget:
    """At most `max_restarts` restarts within any `window_s` seconds."""

    def __init__(self, policy: RestartPolicy, clock: Clock = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._restarts: deque[float] = deque()

    def spend(self) -> bool:
        """Take one restart; False when the budget is used up (give up instead)."""
        now = self._clock()
        while self._restarts and self._restarts[0] <= now - self._policy.window_s:
            self._restarts.popleft()
        if len(self._restarts) >= self._policy.max_restarts:
            return False
        self._restarts.append(now)
        return True


def cancelled_from_outside() -> bool:
    """True when the current task itself is being cancelled (worker shutdown), as opposed to
    a `CancelledError` that came out of an awaited call, as grpc.aio raises for the calls of a
    channel that is being closed."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def describe(problem: BaseException) -> str:
    text = str(problem)
    return f"{type(problem).__name__}: {text}" if text else type(problem).__name__


class TaskSupervisor:
    """Runs named loops as tasks; restarts one that fails, within a budget."""

    def __init__(
        self,
        policy: RestartPolicy = DEFAULT_POLICY,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """`clock` counts the restarts against the policy's window; `sleep` waits out its
        delay (both injected so tests need not wait)."""
        self._on_give_up: OnGiveUp | None = None
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._down: dict[str, str] = {}
        """Loops not running their loop now, with why: failed and waiting, or given up."""

    def on_give_up(self, callback: OnGiveUp) -> None:
        """Call `callback(name, last failure)` when a loop will not be restarted again."""
        self._on_give_up = callback

    def start(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop()` as the task `name` (a name not already running)."""
        if self.running(name):
            raise ValueError(f"a loop named {name!r} is already running")
        self._tasks[name] = asyncio.create_task(self._keep(name, loop), name=name)

    def running(self, name: str) -> bool:
        """False once the loop was given up on (or never started)."""
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def down(self) -> dict[str, str]:
        """The loops that are not running now, by name, with why: failed and waiting for
        their restart, or given up on. Empty while every loop runs."""
        return dict(self._down)

    async def cancel(self, name: str) -> None:
        """Stop one loop (if it runs) and wait for it to end; it is not restarted."""
        task = self._tasks.pop(name, None)
        self._down.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every loop and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._down.clear()

    async def _keep(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        budget = RestartBudget(self._policy, self._clock)
        while True:
            problem: BaseException
            try:
                self._down.pop(name, None)
                await loop()
                problem = LoopEnded(f"the {name} loop returned")
            except asyncio.CancelledError as exc:
                if cancelled_from_outside():
                    raise
                problem = exc
            except Exception as exc:
                problem = exc
            if not budget.spend():
                self._down[name] = f"gave up: {describe(problem)}"
                log.error(
                    "background task keeps failing; giving up on it",
                    action="worker.task_failed",
                    task=name,
                    error=describe(problem),
                    exc_info=problem,
                )
                if self._on_give_up is not None:
                    self._on_give_up(name, problem)
                return
            self._down[name] = f"restarting after {describe(problem)}"
            log.error(
                "background task failed; restarting it",
                action="worker.task_restarted",
                task=name,
                error=describe(problem),
                restart_in_s=self._policy.delay_s,
                exc_info=problem,
            )
            await self._sleep(self._policy.delay_s)
