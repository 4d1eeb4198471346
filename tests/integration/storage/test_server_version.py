"""The supported-versions rule (jobq.storage.server_version): the verdicts for each kind of
version, and the check against the real server of this test run (15 or 18)."""

from __future__ import annotations

import os

import asyncpg
import pytest

from jobq.storage import server_version as rule
from jobq.storage.server_version import (
    MINIMUM_MAJOR,
    TESTED_MAJORS,
    ServerVersion,
    UnsupportedServer,
    require_supported,
    server_version,
)


def test_the_decision_in_numbers() -> None:
    assert MINIMUM_MAJOR == 15
    assert TESTED_MAJORS == (15, 18)


@pytest.mark.parametrize(
    ("text", "number"),
    [("15.8 (Debian 15.8-0+deb12u1)", 150008), ("15.0", 150000), ("18.1", 180001)],
)
def test_tested_versions_start_silently(text: str, number: int) -> None:
    version = ServerVersion(text, number)
    assert version.supported
    assert version.tested
    assert version.warning() == ""


@pytest.mark.parametrize(
    ("text", "number"),
    [("16.4", 160004), ("17.2 (Ubuntu 17.2-1)", 170002), ("19devel", 190000), ("20.1", 200001)],
)
def test_untested_versions_start_with_one_warning(text: str, number: int) -> None:
    version = ServerVersion(text, number)
    assert version.supported
    assert not version.tested
    short = text.split(" ")[0]
    assert version.warning() == f"PostgreSQL {short} is untested: jobq is tested on 15 and 18"


@pytest.mark.parametrize(
    ("text", "number"),
    [("14.13", 140013), ("13.16 (Debian 13.16-0+deb11u1)", 130016), ("9.6.24", 90624)],
)
def test_older_versions_are_refused_naming_the_version_and_the_minimum(
    text: str, number: int
) -> None:
    version = ServerVersion(text, number)
    assert not version.supported
    assert version.warning() == ""
    short = text.split(" ")[0]
    assert version.refusal() == (
        f"PostgreSQL {short} is not supported: jobq needs PostgreSQL 15 or newer "
        "(tested: 15 and 18)"
    )


async def test_the_server_of_this_run_is_supported_and_tested(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        version = await require_supported(conn)
        shown = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    assert version.text == shown
    if not os.environ.get("JQ_TEST_DSN"):  # a server the tests started: the wheel's or Debian's
        target = os.environ.get("JQ_TEST_POSTGRES") or "embedded"
        assert version.major == {"embedded": 18, "system": 15}[target]
    assert version.tested
    assert version.warning() == ""


async def test_an_unsupported_server_is_refused_with_the_message(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rule, "MINIMUM_MAJOR", 99)  # every real server is "too old" now
    conn = await asyncpg.connect(db_dsn)
    try:
        found = await server_version(conn)
        with pytest.raises(UnsupportedServer) as caught:
            await require_supported(conn)
    finally:
        await conn.close()
    assert str(caught.value).startswith(
        f"PostgreSQL {found.short} is not supported: jobq needs PostgreSQL 99 or newer"
    )
