"""Which PostgreSQL the tests run against (JQ_TEST_POSTGRES, see tests/conftest.py), and a
server of a test's own of that kind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobq.storage.embedded import EmbeddedPostgres, system_bin_dir
from support.processes import free_port

TARGETS = ("embedded", "system")


def postgres_target() -> str:
    """JQ_TEST_POSTGRES: which PostgreSQL the tests start (see the module docstring)."""
    target = os.environ.get("JQ_TEST_POSTGRES", "embedded") or "embedded"
    if target not in TARGETS:
        raise pytest.UsageError(
            f"JQ_TEST_POSTGRES must be one of {', '.join(TARGETS)}, got {target!r}"
        )
    return target


def local_postgres(data_dir: Path, target: str) -> EmbeddedPostgres:
    """An unstarted server for `target` in `data_dir`, on a free loopback port."""
    if target == "system":
        binaries = system_bin_dir()
        if binaries is None:
            raise pytest.UsageError(
                "JQ_TEST_POSTGRES=system needs the distribution's PostgreSQL server: "
                "apt-get install postgresql"
            )
        # The package's defaults, JIT included: exactly what a team's server runs.
        return EmbeddedPostgres(data_dir, port=free_port(), tcp=True, binaries=binaries)
    # Durability off: test data is thrown away, and fsyncs would dominate the run time.
    return EmbeddedPostgres(
        data_dir,
        port=free_port(),
        tcp=True,
        settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
    )
