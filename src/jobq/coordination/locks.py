"""Per-job claim locks as the server's services see them: the `Locker` protocol and the
seed design's key names (SPEC §6).

The dispatcher and the readiness checks depend on this module only; the implementations
(`NoopLocker`, the Redis-backed `RedisLocker` in `jobq.coordination.locker`) are chosen by the
composition root. Keeping the protocol apart keeps Redis out of the services' imports, which
the import-linter contracts in pyproject.toml check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

__all__ = ["Locker", "job_lock_key"]


def job_lock_key(job_id: UUID | str) -> str:
    """The Redis key of a job's claim lock, as the seed design names it."""
    return f"lock:job:{job_id}"


class Locker(Protocol):
    """Short-lived, advisory locks on a batch of keys."""

    async def acquire_many(self, keys: Sequence[str], ttl_ms: int) -> set[str]:
        """Try to lock each key for `ttl_ms`; return the keys this call now holds."""
        ...

    async def release_many(self, keys: Sequence[str]) -> None:
        """Release the keys this locker holds; keys held by others are left alone."""
        ...

    async def healthy(self) -> bool:
        """Whether the lock service answers now (for readiness and GetSystemStatus)."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...
