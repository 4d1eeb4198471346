"""Per-job claim locks: the implementations of `jobq.coordination.locks.Locker` for the seed
design's `lock:job:{job_id}` keys (SPEC §6).

Correctness never depends on these locks. PostgreSQL's `FOR UPDATE SKIP LOCKED` claim is what
keeps two replicas from taking the same job; the Redis lock is an extra, advisory layer kept
for compatibility with the seed design and for operators who watch the keys. That is why
`RedisLocker` fails open: when Redis is slow, down or refuses us, every key is reported as
granted, the failure is logged and counted, and dispatch carries on at full speed. Failing
closed would turn a Redis outage into a job-processing outage for no gain in safety.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from jobq.coordination.locks import Locker, job_lock_key
from jobq.observability.logging_setup import get_logger
from jobq.observability.metrics import ServerMetrics

# Locker and job_lock_key are defined in jobq.coordination.locks (the protocol module services
# import); they are re-exported here for the callers that still import them from this module.
__all__ = ["Locker", "NoopLocker", "RedisLocker", "job_lock_key"]

log = get_logger("jobq.coordination")

DEFAULT_TIMEOUT_S = 1.0
"""Longest a Redis round trip may take before it counts as a failure (and is granted)."""

_MAX_BACKOFF_S = 30.0

# Delete the key only while it still holds our token: a lock that expired and was taken by
# another replica must not be released by us. GET and DEL must be atomic, hence a script.
_RELEASE_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class NoopLocker:
    """The default with Redis off: every key is granted, nothing is stored."""

    async def acquire_many(self, keys: Sequence[str], ttl_ms: int) -> set[str]:
        return set(keys)

    async def release_many(self, keys: Sequence[str]) -> None:
        return None

    async def healthy(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class RedisLocker:
    """Locks as `SET key <owner token> NX PX ttl`, one pipelined round trip per batch.

    The value is a token unique to this locker (one per server process), so release can
    compare-and-delete. Any Redis failure is logged (action="redis.error"), counted in
    `jq_redis_errors_total`, and answered fail-open (see the module docstring). After a failure
    the locker stops calling Redis for a backoff that doubles up to 30 s, so a Redis that hangs
    costs one timeout per backoff period rather than one per dispatch cycle; `healthy()` always
    asks Redis and ends the backoff when it answers.
    """

    def __init__(
        self,
        url: str,
        password: str | None = None,
        metrics: ServerMetrics | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        # redis is imported here, by the one locker that uses it: a server with Redis off
        # never loads it (5.6 MB resident, issue 17).
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        self._metrics = metrics
        self._owner = uuid.uuid4().hex
        self._timeout_s = timeout_s
        self._failures = (RedisError, OSError, TimeoutError)
        """What a Redis call may raise that counts as a failure (answered fail-open)."""
        # No client-side retries: a failed batch is granted anyway, retrying only adds delay.
        self._client: Redis = Redis.from_url(
            url,
            password=password or None,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._closed = False
        self._backoff_s = 0.0
        self._skip_until = 0.0

    @property
    def owner(self) -> str:
        """The token this locker writes as the value of the keys it holds."""
        return self._owner

    async def acquire_many(self, keys: Sequence[str], ttl_ms: int) -> set[str]:
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        if not keys:
            return set()
        if self._closed or self._in_backoff():
            return set(keys)
        started = time.perf_counter()
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key, self._owner, nx=True, px=ttl_ms)
                replies = await pipe.execute()
        except self._failures as exc:
            self._failed("acquire", exc, started)
            return set(keys)
        self._succeeded("acquire", started)
        return {key for key, reply in zip(keys, replies, strict=True) if reply}

    async def release_many(self, keys: Sequence[str]) -> None:
        if not keys or self._closed or self._in_backoff():
            return  # unreleased keys expire by their TTL
        started = time.perf_counter()
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.eval(_RELEASE_SCRIPT, 1, key, self._owner)
                await pipe.execute()
        except self._failures as exc:
            self._failed("release", exc, started)
            return
        self._succeeded("release", started)

    async def healthy(self) -> bool:
        if self._closed:
            return False
        started = time.perf_counter()
        try:
            await self._client.ping()
        except self._failures as exc:
            self._failed("ping", exc, started)
            return False
        self._succeeded("ping", started)
        return True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()

    # --- bookkeeping ---------------------------------------------------------------------

    def _in_backoff(self) -> bool:
        return time.monotonic() < self._skip_until

    def _observe(self, operation: str, started: float) -> None:
        if self._metrics is not None:
            self._metrics.redis_operation_duration_seconds.labels(operation=operation).observe(
                time.perf_counter() - started
            )

    def _succeeded(self, operation: str, started: float) -> None:
        self._observe(operation, started)
        if self._backoff_s:
            log.info("redis answers again", action="redis.recovered", operation=operation)
        self._backoff_s = 0.0
        self._skip_until = 0.0

    def _failed(self, operation: str, exc: BaseException, started: float) -> None:
        self._observe(operation, started)
        if self._metrics is not None:
            self._metrics.redis_errors.inc()
        self._backoff_s = min(max(self._backoff_s * 2, 1.0), _MAX_BACKOFF_S)
        self._skip_until = time.monotonic() + self._backoff_s
        log.warning(
            "redis operation failed; treating locks as granted",
            action="redis.error",
            operation=operation,
            error=f"{type(exc).__name__}: {exc}"[:200],
            retry_in_s=self._backoff_s,
        )
