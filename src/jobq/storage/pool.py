"""The asyncpg connection pools that the PostgreSQL stores share, and their session settings.

Session settings are applied with SET when a connection opens (`init`), not as startup
parameters (`server_settings`): PgBouncer refuses startup parameters it does not know, and
these are per-session choices of jobq's, not the server's configuration.

Every jobq session runs with `jit = off`. jobq's statements are short OLTP statements; LLVM
JIT (on by default in the distributions' packages) compiles a statement whose estimated cost
is above `jit_above_cost`, and the claim's estimate is huge on purpose (`enable_sort = off`
adds 1e10 to any plan that sorts, see create_claim_pool): on Debian's PostgreSQL 15 every claim
spent about 270 ms compiling itself for 0.3 ms of work. Even where a count over a large table
might gain from JIT, a predictable few milliseconds beat a compile of hundreds.

Every jobq session also sets `search_path` to the configured schema (`db.schema`) and only it,
so the named queries and the migrations name no schema and still find and create jobq's
objects there; nothing of another schema (an application's `jobs` table in `public`) can be
picked up by mistake, and the role's own schema (`"$user"`, first in the server's default path)
cannot capture jobq's tables. The default is `public`, not `jobq`: installations made before
the setting existed (the embedded default's data, servers deployed so far) keep their tables
where they are without a data migration, Flyway's default is the same, and people and tools
find the tables without a search_path. A team that shares an application's database sets
`db.schema: jobq`. The schema name is validated by the settings and quoted here anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import asyncpg

from jobq.storage.queries import query

SESSION_SETTINGS: Mapping[str, str] = {"jit": "off"}
"""What every jobq session sets (see the module docstring)."""

DEFAULT_SCHEMA = "public"
NOTIFY_CHANNEL = "jobq_jobs"


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of submits in `schema`. Notifications are database-wide, so
    jobq installations in two schemas of one database would otherwise wake each other's
    dispatchers for nothing. `public`, the default, keeps the channel's old name `jobq_jobs`, so
    replicas of an older jobq still wake these during a rolling upgrade; another schema's is
    `jobq_jobs_<schema>` (`jobs_insert` in storage/sql/jobs.sql names it from its session's
    `current_schema()` by the same rule). db.schema is limited to 53 characters, so the name
    fits PostgreSQL's 63 bytes."""
    return NOTIFY_CHANNEL if schema == DEFAULT_SCHEMA else f"{NOTIFY_CHANNEL}_{schema}"


"""The schema jobq's objects live in unless `db.schema` says otherwise (see the module
docstring)."""

CLAIM_SESSION_SETTINGS: Mapping[str, str] = {
    **SESSION_SETTINGS,
    "enable_sort": "off",
    "synchronous_commit": "off",
    "plan_cache_mode": "force_generic_plan",
}
"""The claim pool's sessions (see create_claim_pool)."""


def settings_statement(settings: Mapping[str, str], *, local: bool = False) -> str:
    """`SET name = value; ...` (SET LOCAL with `local`) for `settings` (our own constants)."""
    verb = "SET LOCAL" if local else "SET"
    return "; ".join(f"{verb} {name} = {value}" for name, value in settings.items())


def quote_identifier(name: str) -> str:
    """`name` as a quoted SQL identifier (a schema, database or role name), safe whatever it
    holds: double quotes around it, each double quote inside doubled."""
    return '"' + name.replace('"', '""') + '"'


def session_statement(schema: str, settings: Mapping[str, str] = SESSION_SETTINGS) -> str:
    """What opens a jobq session: `settings`, and `search_path` set to `schema` alone."""
    return settings_statement({**settings, "search_path": quote_identifier(schema)})


async def configure_session(connection: asyncpg.Connection, schema: str) -> None:
    """Give a connection opened outside the pools (the migration runner's, --dry-run's) the
    session settings of the pools' connections."""
    await connection.execute(session_statement(schema))


def _initialiser(
    settings: Mapping[str, str], schema: str
) -> Callable[[asyncpg.Connection], Coroutine[Any, Any, None]]:
    statement = session_statement(schema, settings)

    async def init(connection: asyncpg.Connection) -> None:
        await connection.execute(statement)

    return init


async def create_pool(
    dsn: str,
    *,
    schema: str = DEFAULT_SCHEMA,
    min_size: int = 2,
    max_size: int = 10,
    connect_timeout_s: float = 5.0,
    command_timeout_s: float = 10.0,
) -> asyncpg.Pool:
    """A pool of connections to `dsn` whose sessions work in `schema`, opened eagerly so
    start-up fails fast when PostgreSQL is unreachable."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=connect_timeout_s,
        command_timeout=command_timeout_s,
        # The server runs every statement through named, prepared queries; keep them cached.
        max_inactive_connection_lifetime=300.0,
        # asyncpg's default reset runs one more statement (RESET ALL, UNLISTEN *, ...) on every
        # release, a round trip per pool use. Our pool connections keep no session state: no
        # LISTEN (the notifier has its own connection), no SET but the fixed ones of `init`
        # (which a reset would undo), no session advisory locks, and every transaction is
        # closed by its context manager.
        reset=_no_reset,
        init=_initialiser(SESSION_SETTINGS, schema),
    )
    assert pool is not None  # asyncpg types the result as optional for its legacy API
    return pool


async def create_claim_pool(
    dsn: str, *, schema: str = DEFAULT_SCHEMA, connect_timeout_s: float = 5.0
) -> asyncpg.Pool:
    """A small pool for claims only, with `enable_sort = off` for the whole session: the claim
    then gets its ordered index scan in one round trip (see PgJobStore.jobs_claim). Other
    queries must not run here: for them a sort is often the right plan.

    Claims also commit without waiting for the WAL flush (`synchronous_commit = off`, for these
    sessions only; the server's setting stays on for everything else). A claim is a lease, not
    an accepted job or a result: if PostgreSQL crashes within the fraction of a second before
    the flush, the claim is forgotten and the job is PENDING again with its previous attempt,
    so it runs again (at least once, as after a lost worker). Nothing accepted is lost: the
    submit that created the job and every later report (start, result) commit synchronously,
    and a synchronous commit flushes the earlier claim's WAL with its own. What it saves is an
    fsync wait between a submit and the job's start, on every dispatch cycle.

    The claim statement is planned once per session (`plan_cache_mode = force_generic_plan`):
    PostgreSQL otherwise re-plans it on every execution, because its generic plan's estimate
    never beats the custom plans', and planning took 0.4 ms of an idle claim's 1.1 ms (measured
    with one job to claim). The generic plan has the same shape: per queue, the claim index in
    claim order up to the limit, then the update by primary key."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=2,
        timeout=connect_timeout_s,
        reset=_no_reset,
        init=_initialiser(CLAIM_SESSION_SETTINGS, schema),
    )
    assert pool is not None
    return pool


async def _no_reset(connection: asyncpg.Connection) -> None:
    """Pool connections carry no session state to reset (see create_pool)."""


async def ping(pool: asyncpg.Pool) -> None:
    """One round trip on a pool connection; raises what asyncpg raises when the server does not
    answer. The readiness check and the heartbeat monitor's probe use it."""
    await pool.fetchval(query("db_ping"))
