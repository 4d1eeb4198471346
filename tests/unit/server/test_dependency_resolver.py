"""The dependency resolver's bookkeeping, with a scripted store: who wakes it, what it asks
the store, when it sweeps (by the injected clock), and that a failed run loses nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import pytest

from jobq.domain.records import Transition
from jobq.domain.states import JobStatus, Reason
from jobq.server.dependency_resolver import DependencyResolver
from jobq.server.lifecycle import Lifecycle

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _ended(
    job_id: UUID, to_status: JobStatus = JobStatus.DONE, *, has_dependants: bool = True
) -> Transition:
    return Transition(
        job_id=job_id,
        queue_name="default",
        from_status=JobStatus.RUNNING,
        to_status=to_status,
        reason=Reason.COMPLETED,
        worker_id=None,
        attempt=1,
        created_at=NOW,
        started_at=NOW,
        occurred_at=NOW,
        has_dependants=has_dependants,
    )


class ScriptedStore:
    def __init__(self) -> None:
        self.calls: list[list[UUID] | None] = []
        self.answers: list[list[Transition]] = []
        self.fail = False

    async def dependants_resolve(
        self, ended: Sequence[UUID] | None, limit: int
    ) -> list[Transition]:
        self.calls.append(None if ended is None else list(ended))
        if self.fail:
            raise ConnectionError("database down")
        return self.answers.pop(0) if self.answers else []


def _resolver(store: ScriptedStore, now: list[float]) -> tuple[DependencyResolver, Lifecycle]:
    lifecycle = Lifecycle()
    resolver = DependencyResolver(
        store,  # type: ignore[arg-type]
        lifecycle,
        sweep_interval_s=10,
        clock=lambda: now[0],
    )
    return resolver, lifecycle


def _publish(lifecycle: Lifecycle, transitions: list[Transition]) -> None:
    with lifecycle.write() as changes:
        changes.applied(transitions)


async def test_only_ended_jobs_with_dependants_are_resolved() -> None:
    store, now = ScriptedStore(), [0.0]
    resolver, lifecycle = _resolver(store, now)
    await resolver.run_once()  # the first run sweeps
    assert store.calls == [None]
    with_dependants, lone, dead = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _publish(
        lifecycle,
        [
            _ended(with_dependants),
            _ended(lone, has_dependants=False),
            _ended(dead, JobStatus.DEAD_LETTERED),
            _ended(uuid.uuid4(), JobStatus.RUNNING),  # not ended
        ],
    )
    await resolver.run_once()
    assert store.calls[1] == sorted([with_dependants, dead])
    assert len(store.calls) == 2  # no sweep before its interval


async def test_the_sweep_follows_the_clock_whatever_the_wake_ups() -> None:
    store, now = ScriptedStore(), [0.0]
    resolver, lifecycle = _resolver(store, now)
    await resolver.run_once()
    for second in (3.0, 6.0, 9.9):
        now[0] = second
        _publish(lifecycle, [_ended(uuid.uuid4())])
        await resolver.run_once()
    assert store.calls.count(None) == 1
    now[0] = 10.0
    await resolver.run_once()
    assert store.calls.count(None) == 2


async def test_a_failed_run_keeps_the_ended_jobs_for_the_next() -> None:
    store, now = ScriptedStore(), [0.0]
    resolver, lifecycle = _resolver(store, now)
    await resolver.run_once()
    job_id = uuid.uuid4()
    _publish(lifecycle, [_ended(job_id)])
    store.fail = True
    with pytest.raises(ConnectionError):
        await resolver.run_once()
    store.fail = False
    await resolver.run_once()
    assert store.calls[-1] == [job_id]


async def test_a_dead_lettered_dependant_resolves_its_own_dependants_next() -> None:
    store, now = ScriptedStore(), [0.0]
    resolver, lifecycle = _resolver(store, now)
    await resolver.run_once()
    prerequisite, dependant = uuid.uuid4(), uuid.uuid4()
    store.answers.append([_ended(dependant, JobStatus.DEAD_LETTERED)])
    _publish(lifecycle, [_ended(prerequisite, JobStatus.DEAD_LETTERED)])
    await resolver.run_once()
    await resolver.run_once()
    assert store.calls[1:] == [[prerequisite], [dependant]]
