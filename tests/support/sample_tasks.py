"""Handler functions for the Python executor's tests; trusted with `--import support.sample_tasks`.

Importing this module registers its `@task` functions, as a worker's `--import` modules do.
"""

from __future__ import annotations

import asyncio
import threading
from os import system  # noqa: F401  (an imported name: must not become a handler)
from typing import Any

from jobq.task import task

RELEASE = threading.Event()
"""Set by a test to let `block_until_released` return."""
STARTED = threading.Event()
"""Set by `block_until_released` once it runs."""


def add(a: int, b: int) -> int:
    return a + b


async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


def echo_kwargs(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def thread_name() -> str:
    return threading.current_thread().name


def fail(message: str) -> None:
    raise ValueError(message)


async def async_fail(message: str) -> None:
    raise KeyError(message)


def exit_worker() -> None:
    raise SystemExit(3)


def own_timeout() -> None:
    raise TimeoutError("upstream API did not answer")


def not_json() -> object:
    return {1, 2}


def nan() -> float:
    return float("nan")


def big(size: int) -> str:
    return "x" * size


def block_until_released(limit_s: float = 30.0) -> str:
    STARTED.set()
    RELEASE.wait(limit_s)
    return "released"


async def async_sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


def _private() -> str:
    return "private"


not_a_function = print


@task
def greet(name: str) -> str:
    return f"hello {name}"


@task(name="send_email")
async def send(to: str) -> dict[str, str]:
    await asyncio.sleep(0)
    return {"sent_to": to}
