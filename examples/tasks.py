"""Tasks the examples submit. A worker runs them when it imports this module:

PYTHONPATH=examples jq-worker --import tasks
"""

from __future__ import annotations

import jobq


@jobq.task
def add(a: int, b: int) -> int:
    """Registered as "tasks:add" and "add"."""
    return a + b


@jobq.task(name="word_count")
def word_count(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    return counts


@jobq.task
def send_receipt(order_id: int, email: str) -> str:
    """What examples/web_orders.py enqueues with each order, in the order's transaction. A real
    one would send mail; this one says what it would send."""
    return f"receipt for order {order_id} sent to {email}"
