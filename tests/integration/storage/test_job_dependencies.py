"""Job dependencies (issue 18) on a real PostgreSQL: submits with depends_on, the resolver's
promotions and dead-letterings, the sweep after a crash, cancel of a WAITING job."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable

import asyncpg
import pytest

from jobq.domain.errors import PrerequisiteNotFound, Unavailable
from jobq.domain.ids import uuid7
from jobq.domain.records import Failure, NewJob, ReportOutcome, Success
from jobq.domain.retry import RetryPolicy
from jobq.domain.shards import shard_of
from jobq.domain.states import JobStatus, Reason
from jobq.server.dependency_resolver import DependencyResolver
from jobq.server.lifecycle import Lifecycle
from jobq.storage.postgres import jobs as jobs_module
from jobq.storage.postgres.job_events import PgJobEventStore
from jobq.storage.postgres.jobs import PgJobStore
from jobq.storage.postgres.maintenance import PgMaintenanceStore
from jobq.storage.postgres.queues import PgQueueStore
from jobq.storage.postgres.workers import PgWorkerStore
from jobq.storage.queries import query

NO_JITTER = RetryPolicy(base_delay_s=5.0, max_delay_s=300.0, random_source=lambda: 0.0)


class Harness:
    """A store, a lifecycle stream and the resolver subscribed to it, as jq-server wires them;
    a worker that claims every runnable job and reports the outcomes a test chooses."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.jobs = PgJobStore(pool)
        self.lifecycle = Lifecycle()
        self.promoted = 0
        self.resolver = DependencyResolver(
            self.jobs, self.lifecycle, sweep_interval_s=3600, on_promoted=self._promoted
        )
        self.worker_id = uuid.uuid4()

    def _promoted(self) -> None:
        self.promoted += 1

    async def start(self) -> Harness:
        await PgWorkerStore(self.pool).worker_register(self.worker_id, "host", 100, ["default"])
        await self.resolver.run_once(sweep=True)  # the first run's sweep, out of the way
        return self

    async def submit(
        self,
        *depends_on: uuid.UUID,
        max_retries: int | None = None,
        job_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        job = NewJob(
            job_id or uuid7(),
            "default",
            b"{}",
            max_retries=max_retries,
            depends_on=tuple(depends_on),
            id_from_client=job_id is not None,
        )
        with self.lifecycle.write() as changes:
            [submitted] = await self.jobs.jobs_insert([job])
            changes.submitted_waiting([job], [submitted])
        return submitted.job_id

    async def status(self, job_id: uuid.UUID) -> JobStatus:
        return (await self.jobs.job_get(job_id)).status

    async def run(
        self,
        expected: Iterable[uuid.UUID],
        *,
        fail: Iterable[uuid.UUID] = (),
        publish: bool = True,
    ) -> None:
        """Claim every runnable job (they must be exactly `expected`), complete them (those in
        `fail`: fail, dead-lettered when out of retries), publish the outcomes (unless not
        `publish`: a server that crashed after the commit) and run the resolver woken by them."""
        incarnation = (await PgWorkerStore(self.pool).worker_get(self.worker_id)).incarnation
        assert incarnation is not None
        claimed = await self.jobs.jobs_claim(
            self.worker_id, ["default"], 100, incarnation=incarnation
        )
        assert {a.job.job_id for a in claimed} == set(expected)
        failing = set(fail)
        outcomes: list[ReportOutcome] = []
        for a in claimed:
            if a.job.job_id in failing:
                await self.jobs.jobs_start([a.ref])
                failure = Failure(
                    a.job.job_id, a.job.attempt, self.worker_id, "boom", claim_id=a.claim_id
                )
                outcomes.append(await self.jobs.jobs_fail([failure], NO_JITTER))
            else:
                success = Success(
                    a.job.job_id, a.job.attempt, self.worker_id, b"1", claim_id=a.claim_id
                )
                outcomes.append(await self.jobs.jobs_complete([success]))
        if publish:
            for outcome in outcomes:
                with self.lifecycle.write() as changes:
                    changes.applied(outcome.transitions)
            while await self.resolver.run_once(sweep=False):
                pass  # each level of a chain wakes the next

    async def reasons(self, job_id: uuid.UUID) -> list[tuple[JobStatus | None, JobStatus, Reason]]:
        events = await PgJobEventStore(self.pool).job_events_list(job_id)
        return [(e.from_status, e.to_status, e.reason) for e in events]


@pytest.fixture
async def h(pool: asyncpg.Pool) -> Harness:
    return await Harness(pool).start()


async def test_a_diamond_runs_in_order(h: Harness) -> None:
    a = await h.submit()
    b = await h.submit(a)
    c = await h.submit(a)
    d = await h.submit(c, b)
    assert [await h.status(j) for j in (a, b, c, d)] == [
        JobStatus.PENDING,
        JobStatus.WAITING,
        JobStatus.WAITING,
        JobStatus.WAITING,
    ]
    assert (await h.jobs.job_get(d)).depends_on == tuple(sorted((b, c)))
    assert (await h.jobs.job_get(a)).depends_on == ()

    await h.run([a])
    assert await h.status(b) is JobStatus.PENDING
    assert await h.status(d) is JobStatus.WAITING
    assert h.promoted == 1
    await h.run([b, c])
    assert await h.status(d) is JobStatus.PENDING
    await h.run([d])
    assert await h.status(d) is JobStatus.DONE
    assert await h.reasons(d) == [
        (None, JobStatus.WAITING, Reason.SUBMITTED),
        (JobStatus.WAITING, JobStatus.PENDING, Reason.DEPENDENCIES_MET),
        (JobStatus.PENDING, JobStatus.ASSIGNED, Reason.ASSIGNED),
        (JobStatus.ASSIGNED, JobStatus.RUNNING, Reason.STARTED),
        (JobStatus.RUNNING, JobStatus.DONE, Reason.COMPLETED),
    ]


async def test_d_waits_for_the_last_of_its_prerequisites(h: Harness) -> None:
    a = await h.submit()
    b = await h.submit(a)
    c = await h.submit(a)
    d = await h.submit(b, c)
    await h.run([a])
    # B done alone: C is still to run, so D waits on.
    incarnation = (await PgWorkerStore(h.pool).worker_get(h.worker_id)).incarnation
    assert incarnation is not None
    claimed = await h.jobs.jobs_claim(h.worker_id, ["default"], 100, incarnation=incarnation)
    by_id = {x.job.job_id: x for x in claimed}
    first = by_id[b]
    outcome = await h.jobs.jobs_complete(
        [Success(b, first.job.attempt, h.worker_id, b"1", claim_id=first.claim_id)]
    )
    with h.lifecycle.write() as changes:
        changes.applied(outcome.transitions)
    assert await h.resolver.run_once(sweep=False) == []
    assert await h.status(d) is JobStatus.WAITING
    second = by_id[c]
    outcome = await h.jobs.jobs_complete(
        [Success(c, second.job.attempt, h.worker_id, b"1", claim_id=second.claim_id)]
    )
    with h.lifecycle.write() as changes:
        changes.applied(outcome.transitions)
    [moved] = await h.resolver.run_once(sweep=False)
    assert (moved.job_id, moved.to_status, moved.reason) == (
        d,
        JobStatus.PENDING,
        Reason.DEPENDENCIES_MET,
    )


async def test_a_failing_branch_dead_letters_its_dependants_transitively(h: Harness) -> None:
    a = await h.submit()
    b = await h.submit(a, max_retries=0)
    c = await h.submit(a)
    d = await h.submit(b, c)
    e = await h.submit(d)
    await h.run([a])
    await h.run([b, c], fail=[b])
    assert await h.status(b) is JobStatus.DEAD_LETTERED
    assert await h.status(c) is JobStatus.DONE  # the other branch is unaffected
    d_job, e_job = await h.jobs.job_get(d), await h.jobs.job_get(e)
    assert d_job.status is JobStatus.DEAD_LETTERED
    assert d_job.error_message == f"dependency {b} was dead-lettered"
    assert d_job.completed_at is not None
    assert e_job.status is JobStatus.DEAD_LETTERED
    assert e_job.error_message == f"dependency {d} was dead-lettered"
    assert (await h.reasons(d))[-1] == (
        JobStatus.WAITING,
        JobStatus.DEAD_LETTERED,
        Reason.DEPENDENCY_FAILED,
    )
    await h.run([])  # nothing else runs


async def test_a_retry_of_the_failed_prerequisite_revives_no_dependant(h: Harness) -> None:
    a = await h.submit(max_retries=0)
    b = await h.submit(a)
    await h.run([a], fail=[a])
    assert await h.status(b) is JobStatus.DEAD_LETTERED
    await h.jobs.job_retry_manual(a)
    await h.run([a])
    await h.resolver.run_once(sweep=True)
    assert await h.status(b) is JobStatus.DEAD_LETTERED


async def test_prerequisites_already_done_or_dead_at_submit(h: Harness) -> None:
    a = await h.submit()
    await h.run([a])
    ready = await h.submit(a)
    assert await h.status(ready) is JobStatus.PENDING
    assert await h.reasons(ready) == [(None, JobStatus.PENDING, Reason.SUBMITTED)]

    dead = await h.submit()
    await h.jobs.job_cancel(dead)
    doomed = await h.submit(ready, dead)
    job = await h.jobs.job_get(doomed)
    assert job.status is JobStatus.DEAD_LETTERED
    assert job.error_message == f"dependency {dead} was dead-lettered"
    assert await h.reasons(doomed) == [
        (None, JobStatus.WAITING, Reason.SUBMITTED),
        (JobStatus.WAITING, JobStatus.DEAD_LETTERED, Reason.DEPENDENCY_FAILED),
    ]
    await h.run([ready])


async def _counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    return (
        await pool.fetchval("SELECT count(*) FROM jobs"),
        await pool.fetchval("SELECT count(*) FROM job_dependencies"),
        await pool.fetchval("SELECT count(*) FROM job_events"),
    )


async def test_an_unknown_prerequisite_is_refused_and_nothing_written(h: Harness) -> None:
    a = await h.submit()
    before = await _counts(h.pool)
    unknown = uuid7()
    with pytest.raises(PrerequisiteNotFound, match=str(unknown)):
        await h.submit(a, unknown)
    # in a batch with a plain job: all or nothing
    plain = NewJob(uuid7(), "default", b"{}")
    dependant = NewJob(uuid7(), "default", b"{}", depends_on=(unknown,))
    with pytest.raises(PrerequisiteNotFound):
        await h.jobs.jobs_insert([plain, dependant])
    assert await _counts(h.pool) == before
    assert not await h.pool.fetchval("SELECT has_dependants FROM jobs WHERE job_id = $1", a)


async def test_a_batch_may_name_a_job_before_it(h: Harness) -> None:
    first = NewJob(uuid7(), "default", b"{}")
    second = NewJob(uuid7(), "default", b"{}", depends_on=(first.job_id,))
    results = await h.jobs.jobs_insert([first, second])
    assert [r.status for r in results] == [JobStatus.PENDING, JobStatus.WAITING]
    await h.run([first.job_id])
    assert await h.status(second.job_id) is JobStatus.PENDING


async def test_a_self_dependency_is_refused_by_the_table(h: Harness) -> None:
    job_id = uuid7()
    with pytest.raises(asyncpg.CheckViolationError):
        await h.pool.execute(
            "INSERT INTO job_dependencies (job_id, depends_on) VALUES ($1, $1)", job_id
        )


async def test_a_resubmit_with_the_same_client_id_is_the_same_job(h: Harness) -> None:
    a = await h.submit()
    job_id = uuid7()
    assert await h.submit(a, job_id=job_id) == job_id
    before = await _counts(h.pool)
    job = NewJob(job_id, "default", b"{}", depends_on=(a,), id_from_client=True)
    [again] = await h.jobs.jobs_insert([job])
    assert again.existing
    assert again.job_id == job_id
    assert await _counts(h.pool) == before


async def test_cancel_of_a_waiting_job_dead_letters_it_and_its_dependants(h: Harness) -> None:
    a = await h.submit()
    b = await h.submit(a)
    c = await h.submit(b)
    with h.lifecycle.write() as changes:
        change = await h.jobs.job_cancel(b)
        changes.operator_changed(change, Reason.CANCELLED)
    assert change.was is JobStatus.WAITING
    assert change.job.status is JobStatus.DEAD_LETTERED
    assert change.has_dependants
    await h.resolver.run_once(sweep=False)
    job = await h.jobs.job_get(c)
    assert job.status is JobStatus.DEAD_LETTERED
    assert job.error_message == f"dependency {b} was dead-lettered"
    await h.run([a])  # A itself is unaffected


async def test_the_sweep_resolves_what_a_crash_left_waiting(h: Harness) -> None:
    a = await h.submit()
    b = await h.submit(a)
    failing = await h.submit(max_retries=0)
    c = await h.submit(failing)
    await h.run([a, failing], fail=[failing], publish=False)  # committed, never published
    assert await h.resolver.run_once(sweep=False) == []
    assert await h.status(b) is JobStatus.WAITING
    # a restarted server (a new resolver) sweeps at its first run
    restarted = DependencyResolver(h.jobs, Lifecycle(), sweep_interval_s=3600)
    moved = await restarted.run_once()
    assert {(t.job_id, t.to_status) for t in moved} == {
        (b, JobStatus.PENDING),
        (c, JobStatus.DEAD_LETTERED),
    }
    assert await restarted.run_once(sweep=True) == []


async def test_the_sweep_runs_on_the_injected_clock(h: Harness) -> None:
    now = [0.0]
    resolver = DependencyResolver(h.jobs, Lifecycle(), sweep_interval_s=10, clock=lambda: now[0])
    await resolver.run_once()  # the first run sweeps
    a = await h.submit()
    b = await h.submit(a)
    await h.run([a], publish=False)
    now[0] = 9.0
    assert await resolver.run_once() == []
    now[0] = 10.0
    [moved] = await resolver.run_once()
    assert (moved.job_id, moved.to_status) == (b, JobStatus.PENDING)


async def test_a_waiting_job_is_never_claimed_nor_expired_by_ttl(h: Harness) -> None:
    await h.pool.execute("UPDATE queues SET ttl_seconds = 1 WHERE name = 'default'")
    a = await h.submit()
    b = await h.submit(a)
    await h.pool.execute("UPDATE jobs SET created_at = created_at - interval '1 hour'")
    with h.lifecycle.write() as changes:
        expired = await PgMaintenanceStore(h.pool).jobs_expire_ttl(None, 100)
        changes.applied(expired)
    assert [(t.job_id, t.has_dependants) for t in expired] == [(a, True)]  # not B
    await h.resolver.run_once(sweep=False)
    assert await h.status(b) is JobStatus.DEAD_LETTERED  # A's expiry is a dead-lettering


async def test_the_completion_reports_who_has_dependants(h: Harness) -> None:
    a = await h.submit()
    lone = await h.submit()
    await h.submit(a)
    incarnation = (await PgWorkerStore(h.pool).worker_get(h.worker_id)).incarnation
    assert incarnation is not None
    claimed = await h.jobs.jobs_claim(h.worker_id, ["default"], 10, incarnation=incarnation)
    outcome = await h.jobs.jobs_complete(
        [
            Success(x.job.job_id, x.job.attempt, h.worker_id, b"", claim_id=x.claim_id)
            for x in claimed
        ]
    )
    flags = {
        t.job_id: t.has_dependants for t in outcome.transitions if t.to_status is JobStatus.DONE
    }
    assert flags == {a: True, lone: False}


async def test_a_retry_of_a_dependency_failed_job_runs_it_at_once(h: Harness) -> None:
    a = await h.submit(max_retries=0)
    b = await h.submit(a)
    await h.run([a], fail=[a])
    assert await h.status(b) is JobStatus.DEAD_LETTERED
    change = await h.jobs.job_retry_manual(b)
    assert change.job.status is JobStatus.PENDING  # the operator's override
    await h.run([b])


async def test_a_prerequisite_deleted_with_its_queue_fails_its_dependants(h: Harness) -> None:
    queues = PgQueueStore(h.pool)
    await queues.queue_create("other")
    elsewhere = NewJob(uuid7(), "other", b"{}")
    await h.jobs.jobs_insert([elsewhere])
    b = await h.submit(elsewhere.job_id)
    c = await h.submit(b)
    await queues.queue_delete("other", force=True)
    moved = await h.resolver.run_once(sweep=True)
    assert [(t.job_id, t.reason) for t in moved] == [(b, Reason.DEPENDENCY_FAILED)]
    job = await h.jobs.job_get(b)
    assert job.error_message == f"dependency {elsewhere.job_id} no longer exists"
    await h.resolver.run_once(sweep=False)  # C, woken by B's publication
    assert await h.status(c) is JobStatus.DEAD_LETTERED


async def test_a_completion_racing_a_dependants_submit_still_wakes_the_resolver(
    h: Harness,
) -> None:
    """The race the has_dependants lock closes: A completes while a dependant naming it is
    being submitted. The submit locked A first, so the completion waits for its commit and
    then reports has_dependants (read from the row after the submit's update), so the resolver
    it wakes runs after the edge is committed and sees it: B is promoted, not stranded."""
    a = await h.submit()
    incarnation = (await PgWorkerStore(h.pool).worker_get(h.worker_id)).incarnation
    assert incarnation is not None
    [claim] = await h.jobs.jobs_claim(h.worker_id, ["default"], 1, incarnation=incarnation)
    b = uuid7()
    async with h.pool.acquire() as conn:
        submit = conn.transaction()
        await submit.start()
        [row] = await conn.fetch(query("job_prerequisites_lock"), [a], shard_of(a))
        assert row["status"] == "ASSIGNED"  # not DONE: B will be WAITING
        completing = asyncio.create_task(
            h.jobs.jobs_complete(
                [Success(a, claim.job.attempt, h.worker_id, b"1", claim_id=claim.claim_id)]
            )
        )
        await _until_a_backend_waits_for_a_lock(h.pool)  # the completion, on A's row
        assert not completing.done()
        await conn.fetchrow(
            query("job_insert_dependent"),
            b, "default", b"{}", 0, None, None, None, None, "WAITING", [a], None, False, None,
            None, shard_of(b),
        )  # fmt: skip
        await submit.commit()
    outcome = await completing
    [done] = [t for t in outcome.transitions if t.to_status is JobStatus.DONE]
    assert done.has_dependants
    with h.lifecycle.write() as changes:
        changes.applied(outcome.transitions)
    await h.resolver.run_once(sweep=False)
    assert await h.status(b) is JobStatus.PENDING


async def _until_a_backend_waits_for_a_lock(pool: asyncpg.Pool, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ):
            await asyncio.sleep(0.01)


async def test_two_replicas_resolving_the_same_jobs_move_each_once(
    h: Harness, replicas: tuple[asyncpg.Pool, asyncpg.Pool]
) -> None:
    a = await h.submit()
    failing = await h.submit(max_retries=0)
    dependants = [await h.submit(a) for _ in range(20)]
    doomed = [await h.submit(failing, a) for _ in range(20)]
    await h.run([a, failing], fail=[failing], publish=False)
    stores = [PgJobStore(pool) for pool in replicas]
    moved = await asyncio.gather(
        *(store.dependants_resolve([a, failing], 1000) for store in stores for _ in range(3))
    )
    assert sorted(t.job_id for batch in moved for t in batch) == sorted(dependants + doomed)
    for job_id in dependants:
        assert await h.status(job_id) is JobStatus.PENDING
        assert [r for _, _, r in await h.reasons(job_id)].count(Reason.DEPENDENCIES_MET) == 1
    for job_id in doomed:
        assert await h.status(job_id) is JobStatus.DEAD_LETTERED
        assert [r for _, _, r in await h.reasons(job_id)].count(Reason.DEPENDENCY_FAILED) == 1


def _scans(plan: object) -> list[tuple[str, str, str]]:
    """(node type, relation, index) of every scan in an EXPLAIN (FORMAT JSON) plan."""
    found: list[tuple[str, str, str]] = []
    if isinstance(plan, dict):
        if "Scan" in plan.get("Node Type", "") and "Relation Name" in plan:
            found.append((plan["Node Type"], plan["Relation Name"], plan.get("Index Name", "")))
        for value in plan.values():
            found += _scans(value)
    elif isinstance(plan, list):
        for value in plan:
            found += _scans(value)
    return found


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
async def test_the_resolver_reads_no_job_of_the_backlog(h: Harness, generic: bool) -> None:
    """With 20,000 jobs and no dependencies, the sweep reads waiting_jobs (empty) and a
    wake-up probes job_dependencies by depends_on: neither reads the jobs table through."""
    await h.jobs.jobs_insert([NewJob(uuid7(), "default", b"{}") for _ in range(20_000)])
    await h.pool.execute("ANALYZE jobs; ANALYZE job_dependencies")
    async with h.pool.acquire() as conn, conn.transaction():
        if generic:
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        for ended in (None, [uuid7() for _ in range(100)]):
            plan = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {query('dependants_resolve')}", ended, 1000, 0
            )
            scans = _scans(json.loads(plan))
            assert not [s for s in scans if s[0] == "Seq Scan" and s[1] == "jobs"], scans
            if ended is None:
                # the sweep's candidates come from waiting_jobs (V22), empty here
                assert [s for s in scans if s[1] == "waiting_jobs"], scans


async def test_a_submit_never_waits_for_a_prerequisites_lock_while_holding_one(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prerequisites are locked NOWAIT and retried: a submit whose prerequisite stays
    locked answers UNAVAILABLE with nothing written (it never queued behind the lock, so it
    could never close a deadlock); one whose prerequisite is freed goes through."""
    monkeypatch.setattr(jobs_module, "LOCK_ATTEMPTS_WITHIN_S", 0.3)
    a, other = await h.submit(), await h.submit()
    before = await _counts(h.pool)
    async with h.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT FROM jobs WHERE job_id = $1 FOR UPDATE", a)
        with pytest.raises(Unavailable, match="depends_on stay locked"):
            await h.submit(other, a)
        assert await _counts(h.pool) == before
        submitting = asyncio.create_task(h.submit(other, a))
        await asyncio.sleep(0.05)  # a few refused attempts while the lock is held
        assert not submitting.done()
    b = await submitting
    assert await h.status(b) is JobStatus.WAITING
