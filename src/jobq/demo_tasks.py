"""Example handlers that `make run`'s worker trusts (`--import jobq.demo_tasks`), so a newcomer
can submit a Python-callable job at once:

    jq-ctl job submit --payload '{"handler": "jobq.demo_tasks:add", "args": [2, 3]}'
    jq-ctl job submit --payload '{"handler": "greet", "kwargs": {"name": "Ada"}}'
"""

from __future__ import annotations

import asyncio

from jobq.task import task


def add(a: float, b: float) -> float:
    """Trusted because its module was named with --import."""
    return a + b


@task(name="greet")
async def greet(name: str = "world") -> str:
    """Registered with @jobq.task under the name "greet"; an async handler, awaited."""
    await asyncio.sleep(0)
    return f"hello, {name}"
