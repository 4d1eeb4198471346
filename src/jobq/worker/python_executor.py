"""Run a handler payload: call a trusted Python function and JSON-encode what it returns.

A payload names code to run, so the name is resolved against an explicit list of what the
worker was told to trust, never with a free-form import (SPEC §7: `os:system` must be refused):

1. a name registered with `@jobq.task` (bare, qualified or custom);
2. "module:function" where `module` is exactly one of the worker's `--import` modules and
   `function` is a public plain function *defined* in it (`function.__module__ == module`), so
   names it merely imported (`from os import system`) and private helpers stay out of reach.

Anything else is "handler not allowed", a refusal: the job is dead-lettered at once, not
retried.

Sync functions run on long-lived daemon threads rather than the loop's default executor: the
event loop (and so the heartbeat) never waits for them, a stuck handler cannot exhaust a shared
pool, and a thread that is still running at shutdown never blocks the interpreter's exit.
Python cannot kill a thread, so on timeout or cancellation the worker stops waiting and reports
the job; the thread runs on until its function returns (its result is then discarded).

The handler's job (`jobq.current_job()`) is set in the context the handler runs in: the job
task's for an `async def` handler, a copy of it for a sync handler's thread. A cancel (issue
18) cancels an `async def` handler's task at once; a sync handler sees
`jobq.current_job().cancelled` turn true and has `cancel_grace_s` to return before the worker
stops waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import json
import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Final

from jobq.domain.errors import ConfigError
from jobq.domain.payload import HandlerSpec
from jobq.observability.logging_setup import get_logger
from jobq.running_job import CurrentJob, reset_current_job, set_current_job
from jobq.task import registered_tasks
from jobq.worker.execution_result import ExecutionResult, refusal, timed_out_message

__all__ = ["MAX_ERROR_MESSAGE_CHARS", "PythonExecutor", "handler_threads_busy"]

log = get_logger("jobq.worker.handler")

MAX_ERROR_MESSAGE_CHARS: Final = 4096
"""Exception text longer than this is cut: error_message is stored with every attempt."""

_Outcome = tuple[bool, Any]
"""(True, return value) or (False, the exception raised), as handed over by a handler thread."""


class PythonExecutor:
    """Runs `HandlerSpec`s. Job problems come back as failed `ExecutionResult`s, never raised."""

    def __init__(
        self, imports: Sequence[str], *, max_result_bytes: int, cancel_grace_s: float = 10.0
    ) -> None:
        """Import the trusted modules now, so a typo stops the worker before it takes jobs.

        Raises:
            ConfigError: a module cannot be imported (whatever the module raised).
        """
        self._modules: dict[str, ModuleType] = {}
        for name in imports:
            try:
                self._modules[name] = importlib.import_module(name)
            except Exception as exc:
                raise ConfigError(
                    f"cannot import worker module {name}: {type(exc).__name__}: {exc}"
                ) from exc
        self._max_result_bytes = max_result_bytes
        self._cancel_grace_s = cancel_grace_s

    async def run(
        self, spec: HandlerSpec, timeout_s: float | None, *, job: CurrentJob | None = None
    ) -> ExecutionResult:
        """Call the handler `spec` names; give up waiting after `timeout_s` (None: no limit).
        `job` becomes the handler's `jobq.current_job()`."""
        function = self._resolve(spec.handler)
        if isinstance(function, ExecutionResult):
            return function
        if job is None:
            return await self._run(function, spec, timeout_s)
        token = set_current_job(job)
        abandon: list[asyncio.TimerHandle] = []
        if not inspect.iscoroutinefunction(function):
            # A thread cannot be interrupted: the cancel sets the flag the handler may check,
            # and after the grace the worker stops waiting (cancels its own task).
            task = asyncio.current_task()
            loop = asyncio.get_running_loop()
            grace = self._cancel_grace_s

            def abandon_thread() -> None:
                job.stop_note = (
                    f"the handler did not return within {grace:g}s; its thread was abandoned"
                )
                if task is not None:
                    task.cancel()

            def stop_waiting() -> None:
                abandon.append(loop.call_later(grace, abandon_thread))

            job.set_cancel_hook(stop_waiting)
        try:
            return await self._run(function, spec, timeout_s)
        finally:
            job.set_cancel_hook(None)
            for handle in abandon:
                handle.cancel()
            reset_current_job(token)

    async def _run(
        self, function: Callable[..., Any], spec: HandlerSpec, timeout_s: float | None
    ) -> ExecutionResult:
        scope: asyncio.Timeout | None = None
        try:
            if timeout_s is None:  # no limit: spare the job a timeout scope
                returned, value = await _call(function, spec)
            else:
                async with asyncio.timeout(timeout_s) as scope:
                    returned, value = await _call(function, spec)
            if not returned:
                return self._raised(spec.handler, value)
        except TimeoutError as exc:
            if scope is None or not scope.expired():
                return self._raised(spec.handler, exc)
            log.warning(
                "handler timed out; a sync handler's thread runs on until it returns",
                action="job.handler_timed_out",
                handler=spec.handler,
            )
            return ExecutionResult(success=False, error_message=timed_out_message(timeout_s or 0))
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            return self._raised(spec.handler, exc)  # the handler raised it, nobody cancelled us
        except (Exception, SystemExit) as exc:  # sys.exit() in a handler fails the job only
            return self._raised(spec.handler, exc)
        return self._encode(value)

    def _resolve(self, handler: str) -> Callable[..., Any] | ExecutionResult:
        """The function `handler` names, or the failure saying why it may not run."""
        registered = registered_tasks().get(handler)
        if registered is not None:
            return registered
        module_name, colon, attribute = handler.partition(":")
        if not colon:
            return _failure(f"handler not found: {handler} (no @jobq.task has that name)")
        # "not allowed" is a refusal (dead-lettered at once): a payload naming code outside
        # the trusted modules is refused the same way at every attempt. "not found" stays a
        # failure that is retried: it may be a deployment in progress.
        module = self._modules.get(module_name)
        if module is None:
            return refusal(f"handler not allowed: {handler}")
        function = vars(module).get(attribute)
        if function is None:
            return _failure(f"handler not found: {handler}")
        if (
            attribute.startswith("_")
            or not inspect.isfunction(function)
            or function.__module__ != module_name
        ):
            return refusal(f"handler not allowed: {handler}")
        return function

    def _encode(self, value: Any) -> ExecutionResult:
        if value is None:  # most handlers return nothing
            return _RETURNED_NONE
        try:
            encoded = json.dumps(value, allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            return _failure(f"result is not JSON-serialisable: {_text(exc)}")
        if len(encoded) > self._max_result_bytes:
            return _failure(
                f"result is too large: {len(encoded)} bytes of JSON, "
                f"the limit (worker.max_output_bytes) is {self._max_result_bytes}"
            )
        return ExecutionResult(success=True, result=encoded)

    @staticmethod
    def _raised(handler: str, exc: BaseException) -> ExecutionResult:
        log.debug("handler raised", action="job.handler_raised", handler=handler, exc_info=exc)
        text = _text(exc)
        message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return _failure(message)


async def _call(function: Callable[..., Any], spec: HandlerSpec) -> _Outcome:
    """Call a coroutine function on the loop or a sync one on a handler thread. What the
    function raises comes back as (False, exception); a coroutine's exception is raised."""
    if inspect.iscoroutinefunction(function):
        return True, await function(*spec.args, **spec.kwargs)
    returned, value = await _call_in_daemon_thread(function, spec)
    if returned and inspect.isawaitable(value):  # a sync wrapper around a coroutine function
        value = await value
    return returned, value


async def _call_in_daemon_thread(function: Callable[..., Any], spec: HandlerSpec) -> _Outcome:
    """Run `function` on a new daemon thread and wait for its outcome without blocking the loop.

    The exception comes back as a value, not raised: whatever a handler raises (SystemExit,
    StopIteration, CancelledError) must not be mistaken for something that happened to us.
    Cancelling the waiter returns at once; the thread is abandoned, not stopped.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_Outcome] = loop.create_future()
    context = contextvars.copy_context()  # log context (job id, correlation id) follows the job
    outbox = _outbox(loop)

    def target() -> None:
        try:
            outcome: _Outcome = (True, context.run(function, *spec.args, **spec.kwargs))
        except BaseException as exc:  # SystemExit too: a handler must not end the worker
            outcome = (False, exc)
        outbox.put(future, outcome)

    _THREADS.submit(target)
    return await future


class _Outbox:
    """Hands outcomes from handler threads to the event loop, several per wake-up.

    `call_soon_threadsafe` per outcome costs a write to the loop's self-pipe and a wake-up each;
    under load, outcomes that arrive while a delivery is already scheduled ride along with it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Future[_Outcome], _Outcome]] = []
        self._scheduled = False

    def put(self, future: asyncio.Future[_Outcome], outcome: _Outcome) -> None:
        """Called from a handler thread."""
        with self._lock:
            self._items.append((future, outcome))
            if self._scheduled:
                return
            self._scheduled = True
        # RuntimeError: the loop has closed (worker shutting down); nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
        for future, outcome in items:
            if not future.done():  # the waiter may have timed out or been cancelled
                future.set_result(outcome)


_OUTBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = (
    weakref.WeakKeyDictionary()
)


def _outbox(loop: asyncio.AbstractEventLoop) -> _Outbox:
    outbox = _OUTBOXES.get(loop)
    if outbox is None:
        outbox = _OUTBOXES[loop] = _Outbox(loop)
    return outbox


class _DaemonThreads:
    """Long-lived daemon threads for sync handlers. Starting a thread per job costs more than a
    short job itself (Thread.start() blocks the event loop until the thread runs); daemon
    threads never hold up the worker's exit. A thread is added only when none is idle, so the
    pool grows to the worker's concurrency (plus any abandoned by timeouts) and no further."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._started = 0
        self._busy = 0
        self._lock = threading.Lock()

    @property
    def busy(self) -> int:
        """Handler calls submitted and not yet returned, abandoned ones included."""
        return self._busy

    def submit(self, work: Callable[[], None]) -> None:
        with self._lock:
            self._busy += 1
            grow = self._idle == 0
            if not grow:
                self._idle -= 1
        self._work.put(work)
        if grow:
            self._started += 1
            name = f"jobq-handler:{self._started}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._work.get()()
            with self._lock:
                self._busy -= 1
                self._idle += 1


_THREADS = _DaemonThreads()


def handler_threads_busy() -> int:
    """How many sync handlers are running on this process's threads right now, including
    those the worker stopped waiting for (timed out, cancelled): Python cannot stop them."""
    return _THREADS.busy


_RETURNED_NONE: Final = ExecutionResult(success=True, result=b"null")


def _failure(message: str) -> ExecutionResult:
    return ExecutionResult(success=False, error_message=message)


def _text(exc: BaseException) -> str:
    """str(exc), bounded, and never failing (a broken __str__ is a handler bug, not ours)."""
    try:
        text = str(exc)
    except Exception:
        text = f"<unprintable {type(exc).__name__}>"
    if len(text) > MAX_ERROR_MESSAGE_CHARS:
        text = text[:MAX_ERROR_MESSAGE_CHARS] + "…"
    return text
