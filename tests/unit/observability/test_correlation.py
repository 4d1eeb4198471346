"""Correlation ids and log context follow the current context, never another task's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
import structlog

from jobq.observability.correlation import (
    CORRELATION_ID_METADATA_KEY,
    add_correlation_id,
    correlation_scope,
    current_correlation_id,
    is_valid_correlation_id,
    log_context,
    new_correlation_id,
)


@pytest.fixture(autouse=True)
def _clean_context() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def test_metadata_key_is_lower_case() -> None:
    assert CORRELATION_ID_METADATA_KEY == "x-correlation-id"


def test_new_ids_are_unique_and_valid() -> None:
    ids = {new_correlation_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_valid_correlation_id(i) for i in ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_no_correlation_id_outside_scope() -> None:
    assert current_correlation_id() is None


def test_scope_sets_and_restores() -> None:
    with correlation_scope("outer-1") as outer:
        assert outer == "outer-1"
        assert current_correlation_id() == "outer-1"
        with correlation_scope("inner.2:x") as inner:
            assert inner == "inner.2:x"
            assert current_correlation_id() == "inner.2:x"
        assert current_correlation_id() == "outer-1"
    assert current_correlation_id() is None


def test_scope_restores_after_exception() -> None:
    with pytest.raises(RuntimeError), correlation_scope("abc"):
        raise RuntimeError("boom")
    assert current_correlation_id() is None


def test_scope_generates_when_none() -> None:
    with correlation_scope() as generated:
        assert is_valid_correlation_id(generated)
        assert current_correlation_id() == generated


@pytest.mark.parametrize(
    "untrusted",
    [
        "",
        "a" * 129,
        "has space",
        "line\nbreak",
        '{"json": 1}',
        "naïve",
        "semi;colon",
        "slash/path",
    ],
)
def test_invalid_metadata_value_is_replaced(untrusted: str) -> None:
    with correlation_scope(untrusted) as correlation_id:
        assert correlation_id != untrusted
        assert is_valid_correlation_id(correlation_id)
        assert current_correlation_id() == correlation_id


@pytest.mark.parametrize("trusted", ["a", "A" * 128, "0f8e-4c1a", "01HZX.span:7-a_b"])
def test_valid_metadata_value_is_kept(trusted: str) -> None:
    with correlation_scope(trusted) as correlation_id:
        assert correlation_id == trusted


def test_non_string_is_not_valid() -> None:
    assert not is_valid_correlation_id(None)
    assert not is_valid_correlation_id(b"abc")
    assert not is_valid_correlation_id(123)


async def test_tasks_see_only_their_own_correlation_id() -> None:
    both_inside = asyncio.Barrier(2)

    async def serve(value: str) -> tuple[str | None, str | None]:
        with correlation_scope(value):
            before = current_correlation_id()
            await both_inside.wait()
            await asyncio.sleep(0)
            return before, current_correlation_id()

    first, second = await asyncio.gather(serve("task-a"), serve("task-b"))
    assert first == ("task-a", "task-a")
    assert second == ("task-b", "task-b")
    assert current_correlation_id() is None


async def test_child_task_inherits_scope() -> None:
    async def child() -> str | None:
        return current_correlation_id()

    with correlation_scope("parent"):
        assert await asyncio.create_task(child()) == "parent"


def test_add_correlation_id_processor() -> None:
    assert add_correlation_id(None, "info", {"event": "x"}) == {"event": "x"}
    with correlation_scope("abc"):
        assert add_correlation_id(None, "info", {"event": "x"}) == {
            "event": "x",
            "correlation_id": "abc",
        }


def test_log_context_binds_and_restores() -> None:
    structlog.contextvars.bind_contextvars(queue="default")
    with log_context(job_id="j1", queue="emails"):
        assert structlog.contextvars.get_contextvars() == {"job_id": "j1", "queue": "emails"}
        with log_context(job_id="j2"):
            assert structlog.contextvars.get_contextvars()["job_id"] == "j2"
        assert structlog.contextvars.get_contextvars()["job_id"] == "j1"
    assert structlog.contextvars.get_contextvars() == {"queue": "default"}


def test_log_context_restores_after_exception() -> None:
    with pytest.raises(ValueError, match="boom"), log_context(worker_id="w1"):
        raise ValueError("boom")
    assert structlog.contextvars.get_contextvars() == {}


@pytest.mark.parametrize("key", ["correlation_id", "message", "service", "level", "timestamp"])
def test_log_context_rejects_reserved_keys(key: str) -> None:
    with pytest.raises(ValueError, match="reserved"), log_context(**{key: "x"}):
        pass
    assert structlog.contextvars.get_contextvars() == {}


async def test_log_context_is_isolated_between_tasks() -> None:
    both_inside = asyncio.Barrier(2)

    async def run(job_id: str) -> object:
        with log_context(job_id=job_id):
            await both_inside.wait()
            return structlog.contextvars.get_contextvars().get("job_id")

    assert list(await asyncio.gather(run("j1"), run("j2"))) == ["j1", "j2"]
    assert structlog.contextvars.get_contextvars() == {}
