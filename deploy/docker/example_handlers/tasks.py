"""Handlers the example worker image trusts (`JQ_WORKER_IMPORTS=example_handlers.tasks` in
deploy/docker/worker.Dockerfile). Submit one with:

    jq-ctl job submit --payload '{"handler": "example_handlers.tasks:slugify", "args": ["Hi!"]}'
    jq-ctl job submit --payload '{"handler": "example_handlers.word_count", "args": ["a b a"]}'
"""

from __future__ import annotations

import re

from jobq.task import task


def slugify(text: str) -> str:
    """A plain function: trusted because its module is one of the worker's imports."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@task(name="example_handlers.word_count")
def word_count(text: str) -> dict[str, int]:
    """Registered with @task under its own name, so a payload may say just that name."""
    counts: dict[str, int] = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    return counts
