"""What wakes the dispatcher from the lifecycle stream: jobs that wait in PENDING, and not a
submit that was assigned in the same write (Dispatcher.submit_assigned), whose cycle would
claim nothing and delay the job's delivery."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from jobq.domain.records import Transition
from jobq.domain.states import JobStatus, Reason
from jobq.server.dispatcher import Dispatcher
from jobq.server.lifecycle import Lifecycle
from jobq.server.worker_capacity import WorkerCapacity

NOW = datetime.now(UTC)


def _move(job_id: uuid.UUID, frm: JobStatus | None, to: JobStatus, reason: Reason) -> Transition:
    worker = uuid.uuid4() if to in (JobStatus.ASSIGNED, JobStatus.RUNNING) else None
    return Transition(job_id, "default", frm, to, reason, worker, 1, NOW, None, NOW)


@pytest.fixture
def woken() -> tuple[Lifecycle, list[int]]:
    """A dispatcher on a real lifecycle stream and capacity (a worker with free slots), its
    store and loop never used: what it is woken for is counted."""
    lifecycle, capacity = Lifecycle(), WorkerCapacity()
    capacity.attach(uuid.uuid4(), ["default"], concurrency=4, incarnation=uuid.uuid4())
    unused: Any = None
    dispatcher = Dispatcher(
        unused,
        capacity,
        lifecycle,
        unused,
        batch_size=10,
        interval_s=60,
        assignment_timeout_s=30,
        locker=unused,
    )
    wakes: list[int] = []
    dispatcher._wake = lambda: wakes.append(1)  # type: ignore[method-assign]
    return lifecycle, wakes


def _publish(lifecycle: Lifecycle, transitions: list[Transition]) -> None:
    with lifecycle.write() as changes:
        changes.applied(transitions)


def test_a_submitted_job_wakes_it(woken: tuple[Lifecycle, list[int]]) -> None:
    lifecycle, wakes = woken
    _publish(lifecycle, [Transition.submitted(uuid.uuid4(), "default", NOW)])
    assert wakes == [1]


def test_a_job_submitted_and_assigned_in_one_write_does_not(
    woken: tuple[Lifecycle, list[int]],
) -> None:
    lifecycle, wakes = woken
    job = uuid.uuid4()
    assigned = _move(job, JobStatus.PENDING, JobStatus.ASSIGNED, Reason.ASSIGNED)
    _publish(lifecycle, [Transition.submitted(job, "default", NOW), assigned])
    assert wakes == []
    # Beside another job that does wait, it wakes.
    other = Transition.submitted(uuid.uuid4(), "default", NOW)
    _publish(lifecycle, [Transition.submitted(job, "default", NOW), assigned, other])
    assert wakes == [1]


def test_released_jobs_wake_it_and_retries_in_backoff_do_not(
    woken: tuple[Lifecycle, list[int]],
) -> None:
    lifecycle, wakes = woken
    retry = _move(uuid.uuid4(), JobStatus.FAILED, JobStatus.PENDING, Reason.RETRY)
    _publish(lifecycle, [retry])
    assert wakes == []
    released = _move(uuid.uuid4(), JobStatus.RUNNING, JobStatus.PENDING, Reason.WORKER_LOST)
    _publish(
        lifecycle,
        [released, _move(uuid.uuid4(), JobStatus.RUNNING, JobStatus.DONE, Reason.COMPLETED)],
    )
    assert wakes == [1]
