"""Cancel notifications reach the stream of the worker they name, on the replica holding it."""

from __future__ import annotations

import uuid

from jobq.server.cancels import CancelRelay, parse_cancel
from jobq.server.worker_capacity import CancelOrder, WorkerCapacity


def test_a_notification_is_parsed_or_refused() -> None:
    worker, job = uuid.uuid4(), uuid.uuid4()
    assert parse_cancel(f"cancel:{worker}:{job}:3") == (worker, job, 3)
    for bad in ("", "enqueued", "cancel:", f"cancel:{worker}:{job}", f"cancel:x:{job}:1",
                f"cancel:{worker}:{job}:one"):  # fmt: skip
        assert parse_cancel(bad) is None


def test_the_stream_held_here_gets_the_cancel_and_others_nothing() -> None:
    capacity = WorkerCapacity()
    here, elsewhere, job = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    connected = capacity.attach(here, ["default"], 2, incarnation=uuid.uuid4())
    relay = CancelRelay(capacity)
    relay.on_notification(f"cancel:{elsewhere}:{job}:1")  # another replica's worker
    assert connected.outbox.empty()
    relay.on_notification(f"cancel:{here}:{job}:1")
    assert connected.outbox.get_nowait() == CancelOrder(job, 1)
    relay.on_notification("cancel:garbage")  # logged, nothing queued
    assert connected.outbox.empty()


def test_a_cancel_takes_no_slot_and_is_not_given_back_when_the_stream_ends() -> None:
    capacity = WorkerCapacity()
    worker = uuid.uuid4()
    connected = capacity.attach(worker, ["default"], 2, incarnation=uuid.uuid4())
    assert capacity.cancel(worker, uuid.uuid4(), 1)
    assert connected.free_slots == 2
    assert capacity.detach(connected) == []  # nothing to give back
    assert not capacity.cancel(worker, uuid.uuid4(), 1)  # no stream here any more
