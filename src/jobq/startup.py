"""Start-up shared by jq-server, jq-worker and jq-ctl: common flags, config, logging.

Each program declares its own flags and maps them to dotted setting names; this module parses
the common ones, loads the settings (defaults < file < env < flags), and turns a configuration
problem into one line on stderr and exit code 2 before anything starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from jobq import __version__
from jobq.config import LoadedSettings, Settings, load_settings
from jobq.domain.errors import ConfigError
from jobq.observability import tracing
from jobq.observability.logging_setup import configure_logging, get_logger

EXIT_CONFIG_ERROR = 2


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every program takes (SPEC §9)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML configuration file (SPEC §9)"
    )
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="debug, info, warning, error or critical (logging.level)",
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        help="json lines (default) or human-readable console lines (logging.format)",
    )
    return parser


def fail(prog: str, message: str, code: int = EXIT_CONFIG_ERROR) -> NoReturn:
    """Print `prog: message` on stderr (one line per problem) and exit."""
    for line in message.splitlines() or [message]:
        print(f"{prog}: {line}", file=sys.stderr)
    raise SystemExit(code)


def load_program_settings(
    prog: str, args: argparse.Namespace, flag_overrides: Mapping[str, object]
) -> LoadedSettings:
    """Settings from the file named by --config, the environment and the flags."""
    overrides: dict[str, object] = {
        "logging.level": args.log_level,
        "logging.format": args.log_format,
        **flag_overrides,
    }
    try:
        return load_settings(args.config, overrides=overrides)
    except ConfigError as exc:
        fail(prog, str(exc))


def start_logging(service: str, loaded: LoadedSettings) -> None:
    """Configure logging from the settings and log the configuration's warnings."""
    settings: Settings = loaded.settings
    configure_logging(service, settings.logging.level, settings.logging.format)
    log = get_logger("jobq.config")
    for warning in loaded.warnings:
        log.warning(warning, action="config.warning")


def start_tracing(prog: str) -> None:
    """Turn OpenTelemetry tracing on when the OTEL_* environment asks for it (off by default;
    jobq.observability.tracing); a request this installation cannot serve is refused as a
    configuration problem, before anything starts."""
    try:
        on = tracing.configure(prog)
    except ConfigError as exc:
        fail(prog, str(exc))
    if on:
        get_logger("jobq.tracing").info("tracing on", action="tracing.enabled")


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    return parser.parse_args(None if argv is None else list(argv))
