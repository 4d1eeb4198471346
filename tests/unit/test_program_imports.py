"""jq-server and jq-worker import only what they run (issue 17: resident memory).

Each module a program imports stays resident for its whole life. The optional integrations
(Redis, Kafka), the YAML parser (only for --config), rich (jq-ctl's tables, and structlog's
console tracebacks on a terminal) and the server's storage (asyncpg) cost megabytes a program
without them never uses; they are imported where they are configured. Measured in a fresh
interpreter, as the programs start.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

OPTIONAL = {"redis", "confluent_kafka", "rich", "pygments", "yaml"}
"""Imported only when configured (Redis, Kafka, a config file) or on a developer's terminal."""
DASHBOARD = {"starlette", "uvicorn", "jinja2", "multipart", "jobq.server.web"}
"""The dashboard's web stack: imported only when dashboard.port is set."""
TRACING = {"opentelemetry", "jobq.observability.otel_spans", "jobq.observability.otel_context"}
"""OpenTelemetry: imported only when OTEL_TRACES_EXPORTER asks for traces (issue 20)."""


def modules_imported_by(module: str) -> set[str]:
    """The modules `import <module>` leaves in sys.modules of a new interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", f"import sys, {module}; print(*sys.modules, sep='\\n')"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(done.stdout.split())


@pytest.mark.parametrize(
    ("program", "never"),
    [
        (
            "jobq.server.cli",
            {
                *OPTIONAL,
                *DASHBOARD,
                *TRACING,
                "jobq.server.dry_run",
                "jobq.events.kafka_producer",
            },
        ),
        (
            "jobq.worker.cli",
            {
                *OPTIONAL,
                *DASHBOARD,
                *TRACING,
                "asyncpg",
                "jobq.storage",
                "jobq.server",
                "jobq.coordination",
            },
        ),
    ],
)
def test_programs_do_not_import_what_they_do_not_run(program: str, never: set[str]) -> None:
    imported = modules_imported_by(program)
    assert program in imported
    assert sorted(imported & never) == []


def test_tracing_off_imports_no_opentelemetry_in_the_programs_or_the_sdk() -> None:
    """Without OTEL_TRACES_EXPORTER, starting tracing and building the SDK's submits import
    nothing of OpenTelemetry (installed here: the dev dependencies include it), and with it,
    the same start imports it (so the first half can fail)."""
    code = (
        "import sys, jobq\n"
        "from jobq.observability import tracing\n"
        "from jobq.client.job_spec import command_job\n"
        "assert tracing.configure('jq-test', {}) is False\n"
        "command_job(['true']).to_request()\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
        "assert tracing.configure('jq-test', {'OTEL_TRACES_EXPORTER': 'console'}) is True\n"
        "assert 'opentelemetry.sdk.trace' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], timeout=120, check=True)


def test_structlog_is_imported_without_rich_and_rich_still_imports() -> None:
    """structlog comes without rich (jobq.observability), and rich stays importable after
    (jq-ctl's tables), with the console renderer's coloured tracebacks built on demand."""
    code = (
        "import sys, jobq.observability.logging_setup as ls, structlog.dev\n"
        "assert structlog.dev.rich is None and 'rich' not in sys.modules\n"
        "import rich.table\n"
        "render = ls._rich_traceback()\n"
        "import io\n"
        "try:\n"
        "    raise RuntimeError('kaput')\n"
        "except RuntimeError:\n"
        "    out = io.StringIO(); render(out, sys.exc_info())\n"
        "assert 'RuntimeError' in out.getvalue() and 'kaput' in out.getvalue(), out.getvalue()\n"
    )
    subprocess.run([sys.executable, "-c", code], timeout=120, check=True)
