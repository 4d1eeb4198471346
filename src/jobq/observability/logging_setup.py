"""Process-wide logging configuration for jq-server, jq-worker and jq-ctl (SPEC §10).

Every line, whether written through structlog by our code or through the standard library by
asyncpg, grpc and friends, goes through one root `logging` handler and one rendering chain, so
all lines share the same keys: `timestamp` (ISO 8601 UTC), `level`, `service`, `logger`,
`message`, `correlation_id` (inside a correlation scope), the fields bound with `log_context`
and the keyword fields of the call (by convention a stable `action`, e.g. `job.claimed`).

Our loggers come from `make_filtering_bound_logger`, so a call below the configured level
returns before any processor runs. Loggers are not cached on first use: a later
`configure_logging` call (tests, or a program re-configuring after parsing its flags) takes
effect for module-level loggers created earlier, too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO, cast

import structlog
from structlog.typing import ExceptionRenderer, ExcInfo, FilteringBoundLogger, Processor

from jobq.observability.correlation import add_correlation_id

__all__ = [
    "DEFAULT_LOGGER_NAME",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "configure_logging",
    "get_logger",
    "reset_logging",
]

LOG_LEVELS: Final[tuple[str, ...]] = ("debug", "info", "warning", "error", "critical")
"""Accepted `--log-level` values (case-insensitive)."""

LOG_FORMATS: Final[tuple[str, ...]] = ("json", "console")
"""Accepted log formats: JSON lines for production, `console` for humans in development."""

DEFAULT_LOGGER_NAME: Final = "jobq"
"""Logger name used when `get_logger` is called without one."""

_LEADING_KEYS: Final = ("timestamp", "level", "service", "logger", "message", "correlation_id")


class _JobqHandler(logging.StreamHandler[TextIO]):
    """The root handler installed by `configure_logging`; its own class so it can be found
    and replaced on re-configuration without touching handlers installed by others (pytest)."""


def _parse_level(level: str) -> int:
    """Map a `LOG_LEVELS` name (any case) to its stdlib number, rejecting anything else."""
    name = level.lower()
    if name not in LOG_LEVELS:
        raise ValueError(f"invalid log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    return logging.getLevelNamesMapping()[name.upper()]


def _add_service(service: str) -> Processor:
    """Return a processor stamping `service` on every event (ours and third-party alike)."""

    def add_service(
        logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict["service"] = service
        return event_dict

    return add_service


def _order_keys(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Put the SPEC §10 keys first so JSON lines read consistently; other keys keep their order."""
    ordered = {key: event_dict[key] for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _shared_processors(service: str, fmt: str) -> list[Processor]:
    """Processors run for every event: at call time for structlog, in the formatter for stdlib."""
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_correlation_id,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_service(service),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        # Traceback becomes one `exception` string, escaped by JSON into a single line.
        # The console renderer formats `exc_info` itself and warns if this ran first.
        processors.append(structlog.processors.format_exc_info)
    return processors


def _render_processors(fmt: str, stream: TextIO) -> list[Processor]:
    """Processors that turn a finished event dict into the text of one line."""
    if fmt == "json":
        return [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.EventRenamer("message"),
            _order_keys,
            structlog.processors.JSONRenderer(),
        ]
    colors = stream.isatty()
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.dev.ConsoleRenderer(
            colors=colors,
            exception_formatter=_rich_traceback() if colors else structlog.dev.plain_traceback,
        ),
    ]


def _rich_traceback() -> ExceptionRenderer:
    """rich's coloured tracebacks for the console on a terminal, as structlog renders them
    (`structlog.dev.RichTracebackFormatter`'s defaults). rich is imported here, not with
    structlog (see jobq.observability): only a developer's terminal needs it. Without rich,
    structlog's own default."""
    try:
        from rich.console import Console
        from rich.traceback import Traceback
    except ImportError:
        return structlog.dev.default_exception_formatter

    def render(sio: TextIO, exc_info: ExcInfo) -> None:
        sio.write("\n")
        traceback = Traceback.from_exception(
            *exc_info,
            width=None,
            word_wrap=True,
            show_locals=True,
            locals_max_length=10,
            locals_max_string=80,
        )
        Console(file=sio, color_system="truecolor").print(traceback)

    return render


def _remove_jobq_handlers(root: logging.Logger) -> None:
    for handler in list(root.handlers):
        if isinstance(handler, _JobqHandler):
            root.removeHandler(handler)
            handler.close()


def configure_logging(
    service: str, level: str = "info", fmt: str = "json", stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library root logger for this process.

    `service` is stamped on every line (`jq-server`, `jq-worker`, `jq-ctl`); `level` is one of
    `LOG_LEVELS` and applies to our loggers and the stdlib root alike; `fmt` is `json` (one
    object per line) or `console` (human-readable, coloured only on a tty); `stream` defaults
    to `sys.stdout` and exists for tests. May be called again: the last call wins.

    Raises:
        ValueError: on an unknown level or format, or an empty service name.
    """
    numeric_level = _parse_level(level)
    if fmt not in LOG_FORMATS:
        raise ValueError(f"invalid log format {fmt!r}: expected one of {', '.join(LOG_FORMATS)}")
    if not service:
        raise ValueError("service name must not be empty")
    target = sys.stdout if stream is None else stream

    shared = _shared_processors(service, fmt)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        context_class=dict,
        cache_logger_on_first_use=False,
    )

    handler = _JobqHandler(target)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=_render_processors(fmt, target),
        )
    )
    root = logging.getLogger()
    _remove_jobq_handlers(root)
    root.addHandler(handler)
    root.setLevel(numeric_level)


def reset_logging() -> None:
    """Undo `configure_logging`: remove our root handler, restore structlog's defaults and
    the stdlib root level (WARNING). Used by tests so configuration never leaks between them."""
    root = logging.getLogger()
    _remove_jobq_handlers(root)
    root.setLevel(logging.WARNING)
    structlog.reset_defaults()


def get_logger(name: str | None = None) -> FilteringBoundLogger:
    """Return a logger named `name` (default `jobq`); conventionally `get_logger(__name__)`.

    Safe to call at import time, before `configure_logging`: the logger resolves the current
    configuration whenever it is used.
    """
    return cast(FilteringBoundLogger, structlog.get_logger(name or DEFAULT_LOGGER_NAME))
