"""The Python executor: trusted handlers only, real threads, JSON results."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support import sample_tasks

from jobq.domain.errors import ConfigError
from jobq.domain.payload import HandlerSpec
from jobq.task import registered_tasks
from jobq.worker.execution_result import ExecutionResult, refusal
from jobq.worker.executor import JobExecutor
from jobq.worker.job_user import AS_WORKER
from jobq.worker.python_executor import PythonExecutor

MODULE = "support.sample_tasks"


@pytest.fixture
def released() -> Iterator[None]:
    """Let blocked sample handlers return when the test ends, so no thread outlives it."""
    sample_tasks.RELEASE.clear()
    sample_tasks.STARTED.clear()
    yield
    sample_tasks.RELEASE.set()


def executor(imports: tuple[str, ...] = (MODULE,), max_result_bytes: int = 65536) -> PythonExecutor:
    return PythonExecutor(imports, max_result_bytes=max_result_bytes)


async def call(
    handler: str,
    *args: Any,
    timeout_s: float | None = 30.0,
    **kwargs: Any,
) -> ExecutionResult:
    spec = HandlerSpec(handler=handler, args=list(args), kwargs=kwargs)
    return await executor().run(spec, timeout_s)


def ok(value: Any) -> ExecutionResult:
    return ExecutionResult(success=True, result=json.dumps(value).encode())


def failed(message: str) -> ExecutionResult:
    """An ordinary failure: the server retries it."""
    return ExecutionResult(success=False, error_message=message)


async def test_a_sync_function_of_a_trusted_module_runs_on_a_daemon_thread() -> None:
    assert await call(f"{MODULE}:add", 2, 3) == ok(5)
    name = (await call(f"{MODULE}:thread_name")).result
    assert json.loads(name).startswith("jobq-handler:")
    assert name != json.dumps(threading.current_thread().name).encode()


async def test_an_async_function_is_awaited() -> None:
    assert await call(f"{MODULE}:async_add", 2, b=5) == ok(7)


async def test_kwargs_are_passed_by_name() -> None:
    assert await call(f"{MODULE}:echo_kwargs", to="a", n=[1]) == ok({"to": "a", "n": [1]})


async def test_task_functions_run_by_qualified_bare_and_custom_name() -> None:
    # No --import at all: the decorator alone makes them runnable.
    untrusting = executor(imports=())
    for name in (f"{MODULE}:greet", "greet"):
        result = await untrusting.run(HandlerSpec(handler=name, args=["ann"]), None)
        assert result == ok("hello ann")
    send = HandlerSpec(handler="send_email", kwargs={"to": "ann@example.com"})
    assert await untrusting.run(send, None) == ok({"sent_to": "ann@example.com"})
    assert "support.sample_tasks:send" not in registered_tasks()


@pytest.mark.parametrize(
    "handler",
    [
        "os:system",
        "subprocess:run",
        "builtins:eval",
        f"{MODULE}:system",  # imported into the trusted module, defined in os
        f"{MODULE}:not_a_function",
        f"{MODULE}:_private",
        f"{MODULE}:RELEASE",
        "support:sample_tasks",
        "support.sample_tasks.add:x",
    ],
)
async def test_anything_not_trusted_is_refused(handler: str) -> None:
    # A refusal: dead-lettered at once, since every attempt would be refused alike.
    assert await call(handler, "id") == refusal(f"handler not allowed: {handler}")


async def test_unknown_names_are_not_found() -> None:
    # Not a refusal: another worker (or this one after a deployment) may have the handler.
    missing = f"{MODULE}:no_such_function"
    assert await call(missing) == failed(f"handler not found: {missing}")
    result = await call("no_such_task")
    assert result.error_message.startswith("handler not found: no_such_task")


async def test_an_exception_is_a_failure_with_its_type_and_message() -> None:
    assert await call(f"{MODULE}:fail", "disk full") == failed("ValueError: disk full")
    assert await call(f"{MODULE}:async_fail", "k") == failed("KeyError: 'k'")
    assert await call(f"{MODULE}:add", 1) == failed(
        "TypeError: add() missing 1 required positional argument: 'b'"
    )


async def test_sys_exit_in_a_handler_fails_the_job_only() -> None:
    assert await call(f"{MODULE}:exit_worker") == failed("SystemExit: 3")


async def test_a_handlers_own_timeout_error_is_not_our_timeout() -> None:
    result = await call(f"{MODULE}:own_timeout", timeout_s=30.0)
    assert result == failed("TimeoutError: upstream API did not answer")


async def test_results_must_be_json() -> None:
    result = await call(f"{MODULE}:not_json")
    assert result.error_message.startswith("result is not JSON-serialisable: ")
    assert "set" in result.error_message
    assert (await call(f"{MODULE}:nan")).error_message.startswith(
        "result is not JSON-serialisable: Out of range float"
    )


async def test_results_beyond_the_output_limit_are_refused() -> None:
    small = executor(max_result_bytes=100)
    result = await small.run(HandlerSpec(handler=f"{MODULE}:big", args=[500]), None)
    assert result.error_message.startswith("result is too large: 502 bytes of JSON")


async def test_a_sync_handler_does_not_block_the_event_loop(released: None) -> None:
    job = asyncio.create_task(call(f"{MODULE}:block_until_released"))
    ticks = 0
    while not sample_tasks.STARTED.is_set() or ticks < 5:
        await asyncio.sleep(0.01)
        ticks += 1
    assert not job.done()
    sample_tasks.RELEASE.set()
    assert await job == ok("released")


async def test_a_sync_handler_times_out_and_its_thread_runs_on(released: None) -> None:
    started = time.monotonic()
    result = await call(f"{MODULE}:block_until_released", timeout_s=0.2)
    assert time.monotonic() - started < 5
    assert result == failed("timed out after 0.2s")
    abandoned = [t for t in threading.enumerate() if t.name.startswith("jobq-handler:")]
    assert abandoned
    assert all(t.daemon for t in abandoned)


async def test_an_async_handler_times_out() -> None:
    assert await call(f"{MODULE}:async_sleep", 30, timeout_s=0.1) == failed("timed out after 0.1s")


async def test_cancelling_a_sync_handler_returns_at_once(released: None) -> None:
    job = asyncio.create_task(call(f"{MODULE}:block_until_released", timeout_s=None))
    while not sample_tasks.STARTED.is_set():
        await asyncio.sleep(0.01)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(job, 5)


async def test_cancelling_an_async_handler_cancels_it() -> None:
    job = asyncio.create_task(call(f"{MODULE}:async_sleep", 30, timeout_s=None))
    await asyncio.sleep(0.05)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job


def test_an_unimportable_module_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot import worker module jobq_no_such_module: "):
        JobExecutor(
            imports=("jobq_no_such_module",),
            allowed_commands=(),
            max_output_bytes=10,
            job_user=AS_WORKER,
        )


async def test_the_job_executor_runs_handler_payloads() -> None:
    jobs = JobExecutor(
        imports=(MODULE,), allowed_commands=(), max_output_bytes=1024, job_user=AS_WORKER
    )
    payload = json.dumps({"handler": f"{MODULE}:add", "args": [1, 2]}).encode()
    assert await jobs.run(payload, None) == ok(3)
    slow = json.dumps({"handler": f"{MODULE}:async_sleep", "args": [30]}).encode()
    assert await jobs.run(slow, 0.1) == failed("timed out after 0.1s")
    system = json.dumps({"handler": "os:system", "args": ["touch /tmp/pwned"]}).encode()
    assert await jobs.run(system, None) == refusal("handler not allowed: os:system")


async def test_error_messages_are_safe_to_store() -> None:
    jobs = JobExecutor(
        imports=(MODULE,), allowed_commands=(), max_output_bytes=1024, job_user=AS_WORKER
    )
    payload = json.dumps({"handler": f"{MODULE}:fail", "args": ["bad \udc80 and \0"]}).encode()
    result = await jobs.run(payload, None)
    assert result.error_message == "ValueError: bad \\udc80 and \\x00"
    result.error_message.encode("utf-8")  # protobuf and PostgreSQL accept it
