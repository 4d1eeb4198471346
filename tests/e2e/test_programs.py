"""The three console scripts answer --help and --version, and reject bad configuration."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.processes import program

from jobq import __version__

# Nothing here reaches a PostgreSQL of the tests' choosing (none, or make run's embedded
# one): `make test` runs it, `make test-system-pg` leaves it out (tests/conftest.py).
pytestmark = pytest.mark.postgres_independent

PROGRAMS = ["jq-server", "jq-worker", "jq-ctl"]


@pytest.mark.parametrize("name", PROGRAMS)
def test_version_prints_one_version_string(name: str) -> None:
    result = subprocess.run([program(name), "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.strip() == f"{name} {__version__}"


@pytest.mark.parametrize("name", PROGRAMS)
def test_help_exits_zero_and_describes_usage(name: str) -> None:
    result = subprocess.run([program(name), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "Usage" in result.stdout or "usage" in result.stdout
    assert "--version" in result.stdout


@pytest.mark.parametrize(
    ("env", "flags", "field"),
    [
        ({"JQ_SCHEDULER_INTERVAL_MS": "-5"}, [], "scheduler.interval_ms"),
        ({}, ["--grpc-port", "70000"], "grpc.port"),
        ({"JQ_LOGGING_LEVEL": "chatty"}, [], "logging.level"),
        ({"JQ_DB_POOL_MIN_SIZE": "50"}, [], "db.pool_max_size"),
    ],
)
def test_server_config_errors_name_the_field_and_start_nothing(
    tmp_path: Path, env: dict[str, str], flags: list[str], field: str
) -> None:
    data_dir = tmp_path / "pg"
    result = subprocess.run(
        [program("jq-server"), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "JQ_DB_EMBEDDED_DATA_DIR": str(data_dir), **env},
        timeout=30,
    )
    assert result.returncode == 2
    assert field in result.stderr
    assert "Traceback" not in result.stderr
    assert not data_dir.exists()  # nothing was started


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [program("jq-server"), "--config", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
