"""`@jobq.task`: mark a function as a handler the worker may run by name (SPEC §7).

A payload can only run Python code the worker was told to trust. Besides whole modules named
with `jq-worker --import`, a function is trusted by decorating it:

    @task                       # "handler": "billing.jobs:charge" or "handler": "charge"
    def charge(invoice_id: str) -> dict[str, str]: ...

    @task(name="send_email")    # "handler": "send_email" only
    async def send(to: str) -> None: ...

The decorator returns the function unchanged, so it stays an ordinary callable. Registration
happens at import time, which is why the worker's `--import` modules (or something they import)
must hold the decorated functions. Two functions claiming one name is a programming error,
raised at decoration time so that it surfaces when the worker starts, not when a job runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar, overload

from jobq.domain.payload import MAX_HANDLER_NAME_LENGTH

__all__ = ["MAX_TASK_NAME_LENGTH", "clear_registry", "registered_tasks", "task"]

F = TypeVar("F", bound=Callable[..., Any])

MAX_TASK_NAME_LENGTH: Final = MAX_HANDLER_NAME_LENGTH
"""Longest name a task may be registered under (a payload's `handler` has the same limit)."""

_registry: dict[str, Callable[..., Any]] = {}
_registry_view: Final = MappingProxyType(_registry)
# Imports can happen on several threads at once; registration must not interleave.
_lock: Final = threading.Lock()


@overload
def task(fn: F, /) -> F: ...


@overload
def task(*, name: str | None = None) -> Callable[[F], F]: ...


def task(fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
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

    def decorate(func: F) -> F:
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
        return func

    if fn is not None:
        return decorate(fn)
    return decorate


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
