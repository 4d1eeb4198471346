"""Time-ordered job ids (UUIDv7, RFC 9562) generated in the server.

Ids that grow with time keep the primary-key index's inserts on its right edge instead of
scattered across it, and give jobs created in the same transaction a stable FIFO tie-breaker.
Generated here rather than by PostgreSQL's uuidv7() so that older servers (15+) work too.
"""

from __future__ import annotations

import os
import threading
import time
from uuid import UUID

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> UUID:
    """A UUIDv7, monotonic within this process: a 12-bit counter orders ids of one millisecond."""
    return UUID(int=_uuid7_int())


def uuid7_text() -> str:
    """uuid7() in its text form, as str(uuid7()) spells it, without making the UUID object
    (the SDK's job ids: a third of the cost)."""
    text = f"{_uuid7_int():032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _uuid7_int() -> int:
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave headroom to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # more than ~3,000 ids in one millisecond: borrow the next one
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
