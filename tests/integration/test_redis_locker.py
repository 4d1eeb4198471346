"""Claim locks against a real redis-server (including its death)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from support.redis_server import RedisServer, running_redis_server, start_redis_server

from jobq.coordination.locker import NoopLocker, RedisLocker, job_lock_key
from jobq.observability.metrics import ServerMetrics

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent

DEADLINE_S = 10.0
TTL_MS = 30_000


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis_server(tmp_path / "redis") as server:
        yield server


@pytest.fixture
async def inspector(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client to look at what the locker wrote."""
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def metrics() -> ServerMetrics:
    return ServerMetrics(process_collectors=False)


@pytest.fixture
async def locker(redis_server: RedisServer, metrics: ServerMetrics) -> AsyncIterator[RedisLocker]:
    created = RedisLocker(redis_server.url, None, metrics)
    yield created
    await created.close()


def keys(count: int) -> list[str]:
    return [job_lock_key(uuid.uuid4()) for _ in range(count)]


def sample(metrics: ServerMetrics, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (0 when absent)."""
    body = metrics.render()[0].decode()
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


# --- keys and the no-op default -----------------------------------------------------------


def test_job_lock_key_has_the_seed_format() -> None:
    job_id = uuid.UUID("12345678-1234-5678-1234-567812345678")

    assert job_lock_key(job_id) == "lock:job:12345678-1234-5678-1234-567812345678"
    assert job_lock_key(str(job_id)) == job_lock_key(job_id)


async def test_noop_locker_grants_everything_and_is_always_healthy() -> None:
    locker = NoopLocker()
    wanted = keys(3)

    assert await locker.acquire_many(wanted, TTL_MS) == set(wanted)
    assert await locker.acquire_many(wanted, TTL_MS) == set(wanted)
    await locker.release_many(wanted)
    assert await locker.healthy()
    await locker.close()


# --- RedisLocker against a real server ------------------------------------------------------


async def test_acquire_many_locks_every_key_with_owner_and_ttl(
    locker: RedisLocker, inspector: Redis, metrics: ServerMetrics
) -> None:
    wanted = keys(50)

    assert await locker.acquire_many(wanted, TTL_MS) == set(wanted)

    assert await inspector.mget(wanted) == [locker.owner] * len(wanted)
    ttls = [await inspector.pttl(key) for key in wanted]
    assert all(0 < ttl <= TTL_MS for ttl in ttls)
    count = "jq_redis_operation_duration_seconds_count"
    assert sample(metrics, count, operation="acquire") == 1


async def test_keys_already_held_are_not_granted_again(
    locker: RedisLocker, redis_server: RedisServer
) -> None:
    held, fresh = keys(3), keys(2)
    assert await locker.acquire_many(held, TTL_MS) == set(held)

    assert await locker.acquire_many(held, TTL_MS) == set()
    other = RedisLocker(redis_server.url)
    try:
        assert await other.acquire_many(held + fresh, TTL_MS) == set(fresh)
    finally:
        await other.close()


async def test_release_frees_only_the_keys_this_locker_holds(
    locker: RedisLocker, redis_server: RedisServer, inspector: Redis, metrics: ServerMetrics
) -> None:
    mine = keys(4)
    other = RedisLocker(redis_server.url)
    theirs = keys(1)
    try:
        assert await other.acquire_many(theirs, TTL_MS) == set(theirs)
        assert await locker.acquire_many(mine, TTL_MS) == set(mine)

        await locker.release_many(mine + theirs)

        assert await inspector.exists(*mine) == 0
        assert await inspector.get(theirs[0]) == other.owner  # compare-and-delete spared it
        assert await locker.acquire_many(mine, TTL_MS) == set(mine)
    finally:
        await other.close()
    count = "jq_redis_operation_duration_seconds_count"
    assert sample(metrics, count, operation="release") == 1


async def test_a_lock_expires_after_its_ttl(locker: RedisLocker, inspector: Redis) -> None:
    [key] = keys(1)
    assert await locker.acquire_many([key], 50) == {key}

    async with asyncio.timeout(DEADLINE_S):
        while await inspector.exists(key):
            await asyncio.sleep(0.01)

    assert await locker.acquire_many([key], TTL_MS) == {key}


async def test_empty_batches_and_bad_ttls(locker: RedisLocker) -> None:
    assert await locker.acquire_many([], TTL_MS) == set()
    await locker.release_many([])
    with pytest.raises(ValueError, match="ttl_ms"):
        await locker.acquire_many(keys(1), 0)


async def test_password_is_used(tmp_path: Path) -> None:
    with running_redis_server(tmp_path / "redis", password="s3cret-pw") as server:
        wanted = keys(2)
        good = RedisLocker(server.url, "s3cret-pw")
        bad_metrics = ServerMetrics(process_collectors=False)
        bad = RedisLocker(server.url, None, bad_metrics)
        try:
            assert await good.healthy()
            assert await good.acquire_many(wanted, TTL_MS) == set(wanted)
            assert await good.acquire_many(wanted, TTL_MS) == set()  # really stored

            assert not await bad.healthy()
            assert sample(bad_metrics, "jq_redis_errors_total") == 1
        finally:
            await good.close()
            await bad.close()


async def test_a_dead_redis_fails_open_counts_and_logs(
    locker: RedisLocker, redis_server: RedisServer, metrics: ServerMetrics
) -> None:
    held = keys(2)
    assert await locker.acquire_many(held, TTL_MS) == set(held)
    assert await locker.healthy()
    redis_server.kill()

    with structlog.testing.capture_logs() as logs:
        granted = await locker.acquire_many(held, TTL_MS)  # would be refused if Redis answered

    assert granted == set(held)
    assert sample(metrics, "jq_redis_errors_total") == 1
    assert [entry["operation"] for entry in logs if entry.get("action") == "redis.error"] == [
        "acquire"
    ]
    count = "jq_redis_operation_duration_seconds_count"
    assert sample(metrics, count, operation="acquire") == 2  # failures are timed too

    # Backing off: the next batches are granted without another attempt.
    assert await locker.acquire_many(held, TTL_MS) == set(held)
    await locker.release_many(held)
    assert sample(metrics, "jq_redis_errors_total") == 1

    assert not await locker.healthy()  # the health check always asks
    assert sample(metrics, "jq_redis_errors_total") == 2


async def test_the_locker_recovers_when_redis_comes_back(
    locker: RedisLocker, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis_server.kill()
    wanted = keys(2)
    assert await locker.acquire_many(wanted, TTL_MS) == set(wanted)  # failed open

    revived = start_redis_server(tmp_path / "redis2", port=redis_server.port)
    try:
        with structlog.testing.capture_logs() as logs:
            assert await locker.healthy()  # ends the backoff
        assert any(entry.get("action") == "redis.recovered" for entry in logs)
        assert await locker.acquire_many(wanted, TTL_MS) == set(wanted)
        assert await locker.acquire_many(wanted, TTL_MS) == set()  # real locks again
    finally:
        revived.stop()


async def test_close_is_idempotent_and_a_closed_locker_reports_unhealthy(
    redis_server: RedisServer,
) -> None:
    locker = RedisLocker(redis_server.url)
    assert await locker.healthy()
    await locker.close()
    await locker.close()
    assert not await locker.healthy()


# --- event sink -----------------------------------------------------------------------------
