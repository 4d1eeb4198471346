"""Which submits this replica's connected workers can take at once (then no NOTIFY is sent)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from jobq.domain.records import NewJob, Transition
from jobq.domain.states import JobStatus, Reason
from jobq.server.worker_registry import WorkerRegistry


def _jobs(queue: str, n: int) -> list[NewJob]:
    return [NewJob(uuid.uuid4(), queue, b"{}") for _ in range(n)]


def test_no_connected_worker_takes_nothing() -> None:
    assert not WorkerRegistry().can_take(_jobs("default", 1))


def test_free_slots_of_the_workers_serving_each_queue_must_cover_its_jobs() -> None:
    registry = WorkerRegistry()
    registry.attach(uuid.uuid4(), ["default"], concurrency=2, incarnation=uuid.uuid4())
    registry.attach(uuid.uuid4(), ["default", "emails"], concurrency=1, incarnation=uuid.uuid4())
    assert registry.can_take(_jobs("default", 3))
    assert not registry.can_take(_jobs("default", 4))
    assert registry.can_take(_jobs("emails", 1))
    assert not registry.can_take(_jobs("emails", 2))
    assert not registry.can_take(_jobs("reports", 1))  # nobody serves it
    assert not registry.can_take([*_jobs("default", 1), *_jobs("reports", 1)])


def test_held_slots_and_draining_workers_do_not_count() -> None:
    registry = WorkerRegistry()
    busy, _ = registry.attach(
        uuid.uuid4(),
        ["default"],
        concurrency=2,
        held=[(uuid.uuid4(), 1)],
        incarnation=uuid.uuid4(),
    )
    assert registry.can_take(_jobs("default", 1))
    assert not registry.can_take(_jobs("default", 2))
    busy.draining = True
    assert not registry.can_take(_jobs("default", 1))


def test_a_stream_of_a_superseded_process_is_closed_and_takes_nothing() -> None:
    registry = WorkerRegistry()
    worker_id, old, new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    stream, _ = registry.attach(worker_id, ["default"], concurrency=2, incarnation=old)
    assert not registry.close_superseded(worker_id, old)  # its own process: left alone
    assert not stream.closed
    assert registry.close_superseded(worker_id, new)
    assert stream.closed
    assert stream.free_slots == 0
    assert not registry.can_take(_jobs("default", 1))
    assert not registry.close_superseded(uuid.uuid4(), new)  # no stream here: nothing to do


def _transition(
    job: tuple[uuid.UUID, int], worker: uuid.UUID, to: JobStatus, reason: Reason
) -> Transition:
    now = datetime.now(UTC)
    return Transition(
        job[0], "default", JobStatus.RUNNING, to, reason, worker, job[1], now, now, now
    )


def test_a_job_leaving_its_worker_frees_its_slot_once_and_staying_frees_nothing() -> None:
    registry = WorkerRegistry()
    worker_id = uuid.uuid4()
    done, running = (uuid.uuid4(), 1), (uuid.uuid4(), 1)
    worker, _ = registry.attach(
        worker_id, ["default"], concurrency=2, held=[done, running], incarnation=uuid.uuid4()
    )
    assert worker.free_slots == 0
    started = _transition(running, worker_id, JobStatus.RUNNING, Reason.STARTED)
    assert not registry.free_left([started])  # still held: ASSIGNED -> RUNNING
    completed = _transition(done, worker_id, JobStatus.DONE, Reason.COMPLETED)
    assert registry.free_left([completed])
    assert worker.free_slots == 1
    assert not registry.free_left([completed])  # the same news twice frees nothing more
    rescued = _transition(running, worker_id, JobStatus.PENDING, Reason.WORKER_LOST)
    assert registry.free_left([rescued])
    assert worker.free_slots == 2
