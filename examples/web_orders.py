"""Transactional enqueue from a web request handler: an order and its receipt job commit
together, or neither exists.

    pip install starlette uvicorn
    JQ_DB_DSN=postgresql://shop:secret@localhost/shop jq-server   # jobq's tables in your database
    PYTHONPATH=examples jq-worker --import tasks                   # runs send_receipt
    JQ_EXAMPLE_DB_DSN=postgresql://shop:secret@localhost/shop \\
        uvicorn --app-dir examples web_orders:app                  # serves 127.0.0.1:8000

    curl --json '{"email": "ada@example.com", "amount_cents": 1250}' localhost:8000/orders
    # 201 {"order_id": 1, "job_id": "<uuid>"}: the worker then runs send_receipt(1, ...)
    curl --json '{"email": "ada@example.com", "amount_cents": 0}' localhost:8000/orders
    # 400 {"error": "amount_cents must be positive"}: no order row, no job

JQ_EXAMPLE_DB_DSN names jq-server's own database (its db.dsn): `jobq.enqueue` writes the job
into jobq's tables with the application's connection, so the application and jq-server share
one PostgreSQL database. The application's `orders` table is created there at start-up.

POST /orders inserts the order and enqueues `send_receipt` in one transaction. An order for a
non-positive amount is refused only after both writes, to show the rollback: the exception
leaves `conn.transaction()` and takes the order and its job with it, so the worker never sees
a receipt for an order that does not exist.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tasks import send_receipt  # examples/tasks.py: uvicorn's --app-dir puts it on sys.path

import jobq

CREATE_ORDERS = """
CREATE TABLE IF NOT EXISTS orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    amount_cents integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


class State(TypedDict):
    """What the lifespan hands every request."""

    pool: asyncpg.Pool


class InvalidOrder(ValueError):
    """An order the shop refuses: the handler answers 400."""


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[State]:
    """One connection pool for the application's life, and its table."""
    async with asyncpg.create_pool(os.environ["JQ_EXAMPLE_DB_DSN"]) as pool:
        await pool.execute(CREATE_ORDERS)
        yield {"pool": pool}


async def read_order(request: Request[State]) -> tuple[str, int]:
    """The body's email and amount, or InvalidOrder."""
    try:
        body = await request.json()
    except ValueError:  # not JSON, or not UTF-8
        raise InvalidOrder("the body must be JSON") from None
    match body:
        case {"email": str(email), "amount_cents": int(amount_cents)}:
            return email, amount_cents
    raise InvalidOrder('expected {"email": str, "amount_cents": int}')


async def create_order(request: Request[State]) -> JSONResponse:
    """Insert an order and enqueue its receipt, both or neither."""
    try:
        email, amount_cents = await read_order(request)
        async with request.state["pool"].acquire() as conn, conn.transaction():
            order_id = await conn.fetchval(
                "INSERT INTO orders (email, amount_cents) VALUES ($1, $2) RETURNING id",
                email,
                amount_cents,
            )
            job = await jobq.enqueue(conn, send_receipt, order_id, email)
            # Checked after the writes on purpose, to show the rollback (an application would
            # check it first, or with a CHECK constraint): raising here undoes both writes.
            if amount_cents <= 0:
                raise InvalidOrder("amount_cents must be positive")
    except InvalidOrder as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse({"order_id": order_id, "job_id": job.job_id}, status_code=201)


app = Starlette(routes=[Route("/orders", create_order, methods=["POST"])], lifespan=lifespan)
