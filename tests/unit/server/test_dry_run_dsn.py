"""How `jq-server --dry-run` names the PostgreSQL it checks: every host of a failover DSN,
never the user name or password."""

from __future__ import annotations

import pytest

from jobq.server.dry_run import _describe_dsn


@pytest.mark.parametrize(
    ("dsn", "described"),
    [
        ("postgresql://jobq:pw@db:5433/jobq", "db:5433/jobq"),
        ("postgres://jobq:pw@db/jobq", "db:5432/jobq"),
        (
            "postgresql://jobq:pw@/jobq?host=db1:5432,db2:5433&target_session_attrs=read-write",
            "db1:5432,db2:5433/jobq (target_session_attrs=read-write)",
        ),
        ("postgresql://jobq:pw@db1:5432,db2:5433/jobq", "db1:5432,db2:5433/jobq"),
        ("postgresql://jobq:pw@/jobq?host=db1,db2&port=5432,6432", "db1:5432,db2:6432/jobq"),
        ("postgresql://jobq:pw@/jobq?host=db1,db2&port=6432", "db1:6432,db2:6432/jobq"),
        ("postgresql://postgres:@/postgres?host=/tmp/pgdata", "/tmp/pgdata:5432/postgres"),
        ("postgresql://jobq@[::1]:5433/jobq", "[::1]:5433/jobq"),
        ("postgresql://jobq:pw@db", "db:5432/(default database)"),
    ],
)
def test_every_host_is_named(dsn: str, described: str) -> None:
    assert _describe_dsn(dsn) == described


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://jobq:pw@db:notaport/jobq",
        "postgresql://jobq:pw@/jobq?host=db1:x,db2",
        "mysql://jobq:pw@db/jobq",
        "host=db user=jobq password=pw",
    ],
)
def test_what_cannot_be_read_is_not_guessed(dsn: str) -> None:
    assert _describe_dsn(dsn) == "the configured DSN"


def test_no_secret_is_named() -> None:
    described = _describe_dsn("postgresql://jobq:s3cr3t@/jobq?host=a,b&password=s3cr3t")
    assert "s3cr3t" not in described
    assert "jobq:" not in described
