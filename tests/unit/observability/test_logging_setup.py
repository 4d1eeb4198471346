"""configure_logging renders SPEC §10 JSON lines for our loggers and the stdlib alike."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog

from jobq.observability.correlation import correlation_scope, log_context
from jobq.observability.logging_setup import (
    configure_logging,
    get_logger,
    reset_logging,
)

ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """Leave structlog, the stdlib root logger and bound context as each test found them."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    structlog.contextvars.clear_contextvars()
    yield
    reset_logging()
    structlog.contextvars.clear_contextvars()
    root.setLevel(level)
    assert root.handlers == handlers


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Parse every emitted line as one JSON object (fails if any line is not JSON)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_spec_fields(stream: io.StringIO) -> None:
    configure_logging("jq-server", stream=stream)

    get_logger("jobq.test").info("job claimed", action="job.claimed", job_id="j1")

    [line] = lines(stream)
    assert ISO_UTC.fullmatch(line["timestamp"])
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert line["level"] == "info"
    assert line["service"] == "jq-server"
    assert line["logger"] == "jobq.test"
    assert line["message"] == "job claimed"
    assert line["action"] == "job.claimed"
    assert line["job_id"] == "j1"
    assert "event" not in line
    assert "correlation_id" not in line


def test_default_logger_name(stream: io.StringIO) -> None:
    configure_logging("jq-ctl", stream=stream)

    get_logger().warning("careful", action="ctl.warned")

    [line] = lines(stream)
    assert line["logger"] == "jobq"
    assert line["level"] == "warning"


def test_correlation_id_present_only_inside_scope(stream: io.StringIO) -> None:
    configure_logging("jq-server", stream=stream)
    log = get_logger(__name__)

    with correlation_scope("req-42"):
        log.info("inside", action="test.inside")
    log.info("outside", action="test.outside")

    inside, outside = lines(stream)
    assert inside["correlation_id"] == "req-42"
    assert "correlation_id" not in outside


async def test_concurrent_tasks_keep_their_own_correlation_id(stream: io.StringIO) -> None:
    configure_logging("jq-server", stream=stream)
    log = get_logger(__name__)
    both_started = asyncio.Barrier(2)

    async def serve(correlation_id: str) -> None:
        with correlation_scope(correlation_id), log_context(queue=f"q-{correlation_id}"):
            log.info("start", action="rpc.started", who=correlation_id)
            await both_started.wait()  # both scopes are open at the same time here
            log.info("end", action="rpc.finished", who=correlation_id)

    await asyncio.gather(serve("aaa"), serve("bbb"))

    emitted = lines(stream)
    assert len(emitted) == 4
    for line in emitted:
        assert line["correlation_id"] == line["who"]
        assert line["queue"] == f"q-{line['who']}"


def test_log_context_fields_added_and_removed(stream: io.StringIO) -> None:
    configure_logging("jq-worker", stream=stream)
    log = get_logger(__name__)

    with log_context(job_id="j1", worker_id="w1"):
        log.info("running", action="job.started")
        with log_context(job_id="j2"):
            log.info("nested", action="job.started")
        log.info("back", action="job.started")
    log.info("after", action="worker.idle")

    running, nested, back, after = lines(stream)
    assert (running["job_id"], running["worker_id"]) == ("j1", "w1")
    assert (nested["job_id"], nested["worker_id"]) == ("j2", "w1")
    assert (back["job_id"], back["worker_id"]) == ("j1", "w1")
    assert "job_id" not in after
    assert "worker_id" not in after


def test_level_filtering_drops_lower_levels(stream: io.StringIO) -> None:
    configure_logging("jq-server", level="info", stream=stream)
    log = get_logger(__name__)

    log.debug("noise", action="test.debug")
    logging.getLogger("asyncpg").debug("stdlib noise")
    log.info("kept", action="test.info")

    assert [line["message"] for line in lines(stream)] == ["kept"]


def test_debug_level_keeps_debug(stream: io.StringIO) -> None:
    configure_logging("jq-server", level="DEBUG", stream=stream)

    get_logger(__name__).debug("detail", action="test.debug")

    [line] = lines(stream)
    assert line["level"] == "debug"
    assert logging.getLogger().level == logging.DEBUG


def test_stdlib_logging_renders_as_json_with_same_keys(stream: io.StringIO) -> None:
    configure_logging("jq-server", stream=stream)

    with correlation_scope("abc"), log_context(queue="default"):
        logging.getLogger("asyncpg.pool").warning("connection %s lost", "c1")

    [line] = lines(stream)
    assert ISO_UTC.fullmatch(line["timestamp"])
    assert line["level"] == "warning"
    assert line["service"] == "jq-server"
    assert line["logger"] == "asyncpg.pool"
    assert line["message"] == "connection c1 lost"
    assert line["correlation_id"] == "abc"
    assert line["queue"] == "default"


def test_exception_renders_as_one_line_with_exception_field(stream: io.StringIO) -> None:
    configure_logging("jq-server", stream=stream)

    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        get_logger(__name__).exception("handler crashed", action="rpc.internal_error")
        logging.getLogger("grpc").exception("stdlib crash")

    text = stream.getvalue()
    assert text.count("\n") == 2
    ours, theirs = lines(stream)
    for line in (ours, theirs):
        assert line["level"] == "error"
        assert "Traceback" in line["exception"]
        assert "RuntimeError: kaput" in line["exception"]
        assert "exc_info" not in line
    assert ours["action"] == "rpc.internal_error"


def test_console_format_is_human_text(stream: io.StringIO) -> None:
    configure_logging("jq-worker", fmt="console", stream=stream)

    get_logger(__name__).info("worker ready", action="worker.ready")

    text = stream.getvalue()
    assert "worker ready" in text
    assert "action=worker.ready" in text
    assert "\x1b[" not in text  # a StringIO is not a tty: no colour codes
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_reconfiguration_last_call_wins(stream: io.StringIO) -> None:
    second = io.StringIO()
    log = get_logger(__name__)  # created before any configuration, like a module-level logger
    configure_logging("jq-server", level="info", stream=stream)
    log.info("first", action="test.first")

    configure_logging("jq-worker", level="error", stream=second)
    log.warning("filtered", action="test.filtered")
    log.error("second", action="test.second")

    assert [line["message"] for line in lines(stream)] == ["first"]
    [line] = lines(second)
    assert (line["service"], line["message"]) == ("jq-worker", "second")
    formatters = [handler.formatter for handler in logging.getLogger().handlers]
    assert sum(isinstance(f, structlog.stdlib.ProcessorFormatter) for f in formatters) == 1


@pytest.mark.parametrize("level", ["verbose", "", "warn ", "10"])
def test_invalid_level_raises(level: str) -> None:
    with pytest.raises(ValueError, match="invalid log level"):
        configure_logging("jq-server", level=level)


def test_invalid_format_raises() -> None:
    with pytest.raises(ValueError, match="invalid log format"):
        configure_logging("jq-server", fmt="xml")


def test_empty_service_raises() -> None:
    with pytest.raises(ValueError, match="service"):
        configure_logging("")
