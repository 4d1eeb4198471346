"""The supervised loop every background service of jq-server runs in: the dispatcher, the
notifier, the heartbeat monitor and the reaper.

Each service is a `run_once` coroutine function run every `interval_s` seconds, or earlier when
woken (River's maintenance services, arq's `burst` mode): tests call `run_once()` directly and
never need the loop.

Supervision: a failing run is logged and retried after a backoff (doubling from `retry_s` up to
`max_retry_s`), so a database outage neither kills the service silently nor turns it into a
tight error loop (an outage is logged as one line, any other error with its traceback). A
task that ends by anything but `stop()` is logged and restarted after the same backoff. After
`DOWN_AFTER_FAILURES` failures in a row the loop reports itself down (`down_reason`), which
/readyz turns into a 503 naming it; the loop keeps retrying, and its next successful run makes
it ready again. Down rather than stopping the process: a database outage fails every loop at
once, and the loops must come back by themselves when it ends.

Restarting cannot help a bug: after `GIVE_UP_AFTER_BUGS` failures in a row that are not an
outage (PostgreSQL unreachable), with no success between them, the loop stops and calls
`on_give_up`, which stops jq-server with a clear error and exit status 1 (systemd or the
orchestrator restarts it, and the operator sees why), rather than leave a replica running
without, say, its dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from jobq.domain.errors import Unavailable
from jobq.observability.logging_setup import get_logger
from jobq.rpc.status_codes import is_database_outage

log = get_logger("jobq.service_loop")

RunOnce = Callable[[], Awaitable[object]]

DOWN_AFTER_FAILURES = 3
"""Failed runs (or crashes) in a row, with no success between them, after which the loop
reports itself down."""

GIVE_UP_AFTER_BUGS = 10
"""Failures in a row that are not a database outage after which the loop gives up (a bug)."""

OnGiveUp = Callable[[str, BaseException], None]


class ServiceLoop:
    """Runs `run_once` now, then every `interval_s` seconds or on `wake()`, until stopped."""

    def __init__(
        self,
        name: str,
        interval_s: float,
        run_once: RunOnce,
        *,
        retry_s: float | None = None,
        max_retry_s: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`retry_s` (default: the interval) is the wait after a first failure; it doubles
        with every further failure up to `max_retry_s` (default: `retry_s`, a fixed wait).
        `sleep` waits out the backoff (tests pass one that returns at once)."""
        if not name:
            raise ValueError("a service loop needs a name (it prefixes its log actions)")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.name = name
        self.interval_s = float(interval_s)
        self._retry_s = float(retry_s) if retry_s is not None else self.interval_s
        self._max_retry_s = float(max_retry_s) if max_retry_s is not None else self._retry_s
        if not 0 < self._retry_s <= self._max_retry_s:
            raise ValueError(f"need 0 < retry_s <= max_retry_s, got {retry_s}, {max_retry_s}")
        self._run_once = run_once
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._restart: asyncio.TimerHandle | None = None
        self._failures = 0
        self._bugs = 0
        self._last_failure = ""
        self._sleep = sleep
        self._on_give_up: OnGiveUp | None = None
        self.gave_up: BaseException | None = None

    def on_give_up(self, callback: OnGiveUp) -> None:
        """Call `callback(name, last failure)` when the loop stops for good (see the module
        docstring); without one, the loop never gives up."""
        self._on_give_up = callback

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def failures(self) -> int:
        """Failed runs and crashes since the last successful run."""
        return self._failures

    def down_reason(self) -> str | None:
        """Why readiness should count this loop as down, or None while it works (or is
        stopped: a loop nobody started is not a failing one)."""
        if self.gave_up is not None:
            return f"{self.name} stopped: gave up after {self._failures} failures in a row"
        if self._task is None or self._failures < DOWN_AFTER_FAILURES:
            return None
        return f"{self.name} down: {self._failures} failures in a row, last {self._last_failure}"

    def start(self) -> None:
        """Start the loop on the running event loop; does nothing if it is already running."""
        if self.running:
            return
        self._cancel_restart()
        self._wake.clear()
        self.gave_up = None
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)
        self._task.add_done_callback(self._on_exit)

    async def stop(self) -> None:
        """Cancel the loop (a run in progress included) and wait until it has ended. Safe to
        call when stopped, and more than once."""
        self._cancel_restart()
        task, self._task = self._task, None
        self._failures = self._bugs = 0
        if task is None:
            return
        task.cancel()
        # wait() rather than `await task`: it neither re-raises how the task ended (a crash is
        # logged by _on_exit) nor swallows a cancellation of the caller of stop().
        await asyncio.wait([task])

    def wake(self) -> None:
        """Run as soon as possible instead of at the end of the interval. A wake during a run
        makes the next run start right after it, so a run that found a full batch can call
        this to work off a backlog without waiting."""
        self._wake.set()

    async def run_once(self) -> object:
        """One run of the service, as the loop does it; errors propagate to the caller."""
        return await self._run_once()

    def _retry_after(self) -> float:
        """The backoff after the current streak of failures (at least one)."""
        return min(self._retry_s * 2.0 ** min(self._failures - 1, 30), self._max_retry_s)

    def _failed(self, problem: BaseException) -> bool:
        """Count a failure; True when the loop must give up."""
        self._failures += 1
        self._last_failure = type(problem).__name__
        outage = is_database_outage(problem) or isinstance(problem, Unavailable)
        self._bugs = 0 if outage else self._bugs + 1
        return self._on_give_up is not None and self._bugs >= GIVE_UP_AFTER_BUGS

    def _give_up(self, problem: BaseException) -> None:
        self.gave_up = problem
        log.error(
            f"{self.name} keeps failing: giving up",
            action=f"{self.name}.gave_up",
            service_loop=self.name,
            failures=self._failures,
            error=describe(problem),
        )
        assert self._on_give_up is not None
        self._on_give_up(self.name, problem)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._run_once()
            except Exception as exc:
                hopeless = self._failed(exc)
                self._log_failure(exc)
                if hopeless:
                    self._give_up(exc)
                    return
                # A plain sleep, deaf to wake(): frequent wakes must not turn a persistent
                # failure (database down) into a tight loop. Wakes meanwhile are kept.
                await self._sleep(self._retry_after())
                continue
            if self._failures:
                log.info(
                    f"{self.name} recovered",
                    action=f"{self.name}.recovered",
                    service_loop=self.name,
                )
                self._failures = self._bugs = 0
            # asyncio.timeout rather than wait_for: no extra task per wait, so a wake (a submit,
            # for the dispatcher) reaches the next run a few event-loop iterations sooner.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()

    def _log_failure(self, exc: Exception) -> None:
        message = f"{self.name} run failed; retrying in {self._retry_after():g}s"
        fields = {"action": f"{self.name}.error", "service_loop": self.name}
        if is_database_outage(exc) or isinstance(exc, Unavailable):
            # Expected while PostgreSQL is away, and every loop fails at once: one line each,
            # not a traceback per retry (formatting those can stall the event loop for long
            # enough to make RPCs miss their deadlines).
            log.warning(message, **fields, failures=self._failures, error=describe(exc))
        else:
            log.exception(message, **fields, failures=self._failures)

    def _on_exit(self, task: asyncio.Task[None]) -> None:
        """The loop only ends by stop(); anything else (a BaseException escaping the handler
        above, a CancelledError that did not come from stop()) is logged, and the loop is
        restarted after the backoff rather than left dead."""
        if task is not self._task:
            return  # stop() or a restart already replaced it
        if self.gave_up is not None:
            return  # it returned after giving up
        problem = asyncio.CancelledError() if task.cancelled() else task.exception()
        assert problem is not None  # _run returns only after giving up
        if self._failed(problem):
            self._give_up(problem)
            return
        retry_s = self._retry_after()
        log.error(
            f"{self.name} stopped unexpectedly; restarting in {retry_s:g}s",
            action=f"{self.name}.crashed",
            service_loop=self.name,
            failures=self._failures,
            error=repr(problem),
        )
        self._restart = asyncio.get_running_loop().call_later(retry_s, self._restart_now, task)

    def _restart_now(self, crashed: asyncio.Task[None]) -> None:
        self._restart = None
        if self._task is crashed:  # not stopped (nor restarted) meanwhile
            self._task = None
            self.start()  # the failure streak goes on until a run succeeds

    def _cancel_restart(self) -> None:
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None


def describe(problem: BaseException) -> str:
    """An error as one short line: its type, and its message when it has one."""
    text = str(problem)
    return (f"{type(problem).__name__}: {text}" if text else type(problem).__name__)[:200]
