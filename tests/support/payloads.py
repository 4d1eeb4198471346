"""Job payloads for tests that care about the job, not about what runs: the server parses every
payload at submit, so they must be well-formed; a handler no worker knows is fine for that."""

from __future__ import annotations

import json

NOOP_HANDLER = "tests.noop"


def job_payload(tag: bytes | str | int | None = None) -> bytes:
    """A valid handler payload carrying `tag` (as its one argument) to tell jobs apart."""
    if isinstance(tag, bytes):
        tag = tag.decode()
    args = [] if tag is None else [tag]
    return json.dumps({"handler": NOOP_HANDLER, "args": args}).encode()


def payload_of_size(size: int) -> bytes:
    """A valid payload of exactly `size` bytes (at least 40)."""
    empty = job_payload("")
    if size < len(empty):
        raise ValueError(f"a payload is at least {len(empty)} bytes")
    body = job_payload("x" * (size - len(empty)))
    assert len(body) == size
    return body
