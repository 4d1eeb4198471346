"""`@jobq.task`: mark a function as a handler the worker may run by name (SPEC §7).

A payload can only run Python code the worker was told to trust. Besides whole modules named
with `jq-worker --import`, a function is trusted by decorating it:

    @task                       # "handler": "billing.jobs:charge" or "handler": "charge"
    def charge(invoice_id: str) -> dict[str, str]: ...

    @task(name="send_email")    # "handler": "send_email" only
    async def send(to: str) -> None: ...

The decorator returns the function itself, so it stays an ordinary callable, with a few
attributes added to submit it as a job through the default client (`jobq.configure()`, or the
JQ_CTL_* environment, on first use; see `jobq.client`):

    charge.delay("inv-1")                          # a Job; .result() waits for the return value
    charge.submit("inv-1", queue="billing", delay=60)
    charge.options(queue="billing").delay("inv-1") # options, and arguments checked by mypy
    client.submit_many(charge.job(i) for i in ids) # JobSpecs for a client's submit_many

`.delay()`, `.job()` and `.options(...).delay()` are typed with the function's own parameters
(ParamSpec), so mypy checks their arguments. `.submit()` cannot be: PEP 612 allows no keyword
(`queue=`) beside a ParamSpec's `**kwargs`, so its job arguments are unchecked; and a function
with a parameter named like an option (`queue`, `delay` ...) must use `.options(...).delay()`.

Registration happens at import time, which is why the worker's `--import` modules (or something
they import) must hold the decorated functions. Two functions claiming one name is a programming
error, raised at decoration time so that it surfaces when the worker starts, not when a job runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Generic, ParamSpec, Protocol, TypeVar, overload

from jobq.domain.payload import MAX_HANDLER_NAME_LENGTH

if TYPE_CHECKING:
    from jobq.client.job_spec import JobSpec, SubmitOptions
    from jobq.client.sync_client import Job

__all__ = [
    "MAX_TASK_NAME_LENGTH",
    "Task",
    "TaskCall",
    "clear_registry",
    "registered_tasks",
    "task",
]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

MAX_TASK_NAME_LENGTH: Final = MAX_HANDLER_NAME_LENGTH
"""Longest name a task may be registered under (a payload's `handler` has the same limit)."""

_registry: dict[str, Callable[..., Any]] = {}
_registry_view: Final = MappingProxyType(_registry)
# Imports can happen on several threads at once; registration must not interleave.
_lock: Final = threading.Lock()


class TaskCall(Generic[P]):
    """A task with submit options chosen (`fn.options(queue=...)`), to submit with arguments
    that mypy checks against the function."""

    def __init__(self, name: str, options: SubmitOptions) -> None:
        self.task_name = name
        self.submit_options = options

    def job(self, *args: P.args, **kwargs: P.kwargs) -> JobSpec:
        """The job, to pass to a client's `submit_many` or `submit_job`."""
        from jobq.client.job_spec import handler_job

        return handler_job(self.task_name, args, kwargs, self.submit_options)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Submit through the default client; returns once the job is committed."""
        from jobq.client.default_client import default_client

        return default_client().submit_job(self.job(*args, **kwargs))


class Task(Protocol[P, R_co]):
    """What `@task` returns: the function, plus ways to submit it as a job."""

    task_name: str
    """The name payloads give it: the custom name, else "module:qualname" (the bare name for
    a function of `__main__`, which no worker can import)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Submit a job calling the function with these arguments (default client, default
        options); returns once the job is committed."""
        ...

    def job(self, *args: P.args, **kwargs: P.kwargs) -> JobSpec:
        """The job calling the function with these arguments, unsent (for `submit_many`)."""
        ...

    def options(
        self,
        *,
        queue: str = ...,
        priority: int = ...,
        delay: float | timedelta | None = ...,
        not_before: datetime | None = ...,
        max_retries: int | None = ...,
        idempotency_key: str | None = ...,
    ) -> TaskCall[P]:
        """The task with these submit options; `.delay(...)` / `.job(...)` on the result."""
        ...

    def submit(
        self,
        *args: Any,
        queue: str = ...,
        priority: int = ...,
        delay: float | timedelta | None = ...,
        not_before: datetime | None = ...,
        max_retries: int | None = ...,
        idempotency_key: str | None = ...,
        **kwargs: Any,
    ) -> Job:
        """`.delay()` with submit options (job arguments not type-checked: see the module)."""
        ...


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(*, name: str | None = None) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Register `fn` as a trusted handler; usable as `@task` and `@task(name="...")`.

    Without `name` the function is registered under "module:qualname" and under its bare
    `__name__`; with `name`, under that name only.

    Raises:
        ValueError: a name is already registered for a different function, or `name` is
            empty or longer than `MAX_TASK_NAME_LENGTH`.
        TypeError: the decorated object is not callable.
    """
    if name is not None:
        _check_name(name)

    def decorate(func: Callable[P, R]) -> Task[P, R]:
        if not callable(func):
            raise TypeError(f"@task needs a function, got {type(func).__name__}")
        names = [name] if name is not None else _default_names(func)
        with _lock:
            for candidate in names:
                existing = _registry.get(candidate)
                if existing is not None and existing is not func:
                    raise ValueError(
                        f"task name {candidate!r} is already registered for "
                        f"{_describe(existing)}; give one of them @task(name=...)"
                    )
            for candidate in names:
                _registry[candidate] = func
        return _add_submitters(func, _payload_name(func, names))

    if fn is not None:
        return decorate(fn)
    return decorate


def _payload_name(func: Callable[..., Any], names: list[str]) -> str:
    existing = getattr(func, "task_name", None)
    if isinstance(existing, str) and existing:
        return existing  # registered before: keep the name its jobs already use
    if len(names) > 1 and getattr(func, "__module__", None) == "__main__":
        return names[1]  # a worker cannot import __main__, but may know the bare name
    return names[0]


def _add_submitters(func: Callable[P, R], name: str) -> Task[P, R]:
    """Give `func` the Task attributes; the submitting code is imported on first use, so
    importing a module of tasks (a worker does) never loads the client."""

    def options(**chosen: Any) -> TaskCall[P]:
        from jobq.client.job_spec import SubmitOptions

        return TaskCall(name, SubmitOptions(**chosen))

    def job(*args: Any, **kwargs: Any) -> JobSpec:
        from jobq.client.job_spec import SubmitOptions

        return TaskCall[P](name, SubmitOptions()).job(*args, **kwargs)

    def delay(*args: Any, **kwargs: Any) -> Job:
        from jobq.client.default_client import default_client

        return default_client().submit_job(job(*args, **kwargs))

    def submit(*args: Any, **kwargs: Any) -> Job:
        from jobq.client.default_client import default_client
        from jobq.client.job_spec import SubmitOptions, handler_job

        chosen = {key: kwargs.pop(key) for key in _OPTION_NAMES if key in kwargs}
        spec = handler_job(name, args, kwargs, SubmitOptions(**chosen))
        return default_client().submit_job(spec)

    attributes = {
        "task_name": name,
        "delay": delay,
        "job": job,
        "options": options,
        "submit": submit,
    }
    try:
        for attribute, value in attributes.items():
            setattr(func, attribute, value)
    except (AttributeError, TypeError):
        raise TypeError(
            f"@task needs a function it can add attributes to, got {type(func).__name__}"
        ) from None
    return func  # type: ignore[return-value]  # it now has every attribute of Task


_OPTION_NAMES: Final = (
    "queue",
    "priority",
    "delay",
    "not_before",
    "max_retries",
    "idempotency_key",
)


def registered_tasks() -> Mapping[str, Callable[..., Any]]:
    """A read-only, live view of the registry: task name → function."""
    return _registry_view


def clear_registry() -> None:
    """Forget every registered task. For tests; a running worker never needs it."""
    with _lock:
        _registry.clear()


def _default_names(func: Callable[..., Any]) -> list[str]:
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    bare = getattr(func, "__name__", None)
    if not (isinstance(module, str) and isinstance(qualname, str) and isinstance(bare, str)):
        raise TypeError("@task without name= needs an object with __module__ and __qualname__")
    names = [f"{module}:{qualname}"]
    if bare not in names:
        names.append(bare)
    for candidate in names:
        _check_name(candidate)
    return names


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError("task name must be a non-empty string")
    if len(name) > MAX_TASK_NAME_LENGTH:
        raise ValueError(f"task name is longer than {MAX_TASK_NAME_LENGTH} characters")


def _describe(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", "?")
    qualname = getattr(func, "__qualname__", repr(func))
    return f"{module}:{qualname}"
