"""WorkerCapacity, the one owner of worker slots: which submits this replica's workers can take
at once, and, driven by random sequences of every event that takes or frees a slot, its
invariants: never more held than slots, and each assignment's slot freed exactly once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from jobq.domain.records import Assignment, Job, NewJob, Transition
from jobq.domain.states import JobStatus, Reason
from jobq.server.worker_capacity import AttemptKey, ConnectedWorker, WorkerCapacity


def _jobs(queue: str, n: int) -> list[NewJob]:
    return [NewJob(uuid.uuid4(), queue, b"{}") for _ in range(n)]


def _assignment(worker_id: uuid.UUID, attempt: int = 1) -> Assignment:
    now = datetime.now(UTC)
    job = Job(
        job_id=uuid.uuid4(),
        queue_name="default",
        payload=b"{}",
        status=JobStatus.ASSIGNED,
        priority=0,
        max_retries=3,
        retry_count=0,
        attempt=attempt,
        worker_id=worker_id,
        result=None,
        error_message=None,
        not_before=None,
        created_at=now,
        started_at=None,
        completed_at=None,
        updated_at=now,
    )
    return Assignment(job, timeout_s=None, claim_id=uuid.uuid4())


def _transition(key: AttemptKey, worker: uuid.UUID, to: JobStatus, reason: Reason) -> Transition:
    now = datetime.now(UTC)
    return Transition(
        key[0], "default", JobStatus.RUNNING, to, reason, worker, key[1], now, now, now
    )


def test_no_connected_worker_takes_nothing() -> None:
    assert not WorkerCapacity().can_take(_jobs("default", 1))


def test_free_slots_of_the_workers_serving_each_queue_must_cover_its_jobs() -> None:
    capacity = WorkerCapacity()
    capacity.attach(uuid.uuid4(), ["default"], concurrency=2, incarnation=uuid.uuid4())
    capacity.attach(uuid.uuid4(), ["default", "emails"], concurrency=1, incarnation=uuid.uuid4())
    assert capacity.can_take(_jobs("default", 3))
    assert not capacity.can_take(_jobs("default", 4))
    assert capacity.can_take(_jobs("emails", 1))
    assert not capacity.can_take(_jobs("emails", 2))
    assert not capacity.can_take(_jobs("reports", 1))  # nobody serves it
    assert not capacity.can_take([*_jobs("default", 1), *_jobs("reports", 1)])


def test_held_slots_and_draining_workers_do_not_count() -> None:
    capacity = WorkerCapacity()
    worker_id = uuid.uuid4()
    capacity.attach(
        worker_id, ["default"], concurrency=2, held=[(uuid.uuid4(), 1)], incarnation=uuid.uuid4()
    )
    assert capacity.can_take(_jobs("default", 1))
    assert not capacity.can_take(_jobs("default", 2))
    capacity.drain(worker_id)
    assert not capacity.can_take(_jobs("default", 1))


def test_a_lone_submit_goes_to_the_roomiest_worker_serving_its_queue() -> None:
    """The worker a submit is written straight to (Dispatcher.submit_assigned)."""
    capacity = WorkerCapacity()
    assert capacity.roomiest_for("default") is None
    small = capacity.attach(uuid.uuid4(), ["default"], concurrency=1, incarnation=uuid.uuid4())
    big = capacity.attach(
        uuid.uuid4(),
        ["default", "emails"],
        concurrency=3,
        held=[(uuid.uuid4(), 1)],
        incarnation=uuid.uuid4(),
    )
    assert capacity.roomiest_for("default") is big  # 2 free against 1
    assert capacity.roomiest_for("emails") is big
    assert capacity.roomiest_for("reports") is None  # nobody serves it
    capacity.drain(big.worker_id)
    assert capacity.roomiest_for("default") is small
    assert capacity.roomiest_for("emails") is None  # its only worker drains
    capacity.assign(small, [_assignment(small.worker_id)])
    assert capacity.roomiest_for("default") is None  # every slot held


def test_a_stream_of_a_superseded_process_is_closed_and_takes_nothing() -> None:
    capacity = WorkerCapacity()
    worker_id, old, new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    stream = capacity.attach(worker_id, ["default"], concurrency=2, incarnation=old)
    assert not capacity.close_superseded(worker_id, old)  # its own process: left alone
    assert not stream.closed
    assert capacity.close_superseded(worker_id, new)
    assert stream.closed
    assert stream.free_slots == 0
    assert not capacity.can_take(_jobs("default", 1))
    assert not capacity.close_superseded(uuid.uuid4(), new)  # no stream here: nothing to do


def test_a_job_leaving_its_worker_frees_its_slot_once_and_staying_frees_nothing() -> None:
    capacity = WorkerCapacity()
    freed: list[AttemptKey] = []
    capacity.on_room(lambda _w, keys: freed.extend(keys))
    worker_id = uuid.uuid4()
    done, running = (uuid.uuid4(), 1), (uuid.uuid4(), 1)
    worker = capacity.attach(
        worker_id, ["default"], concurrency=2, held=[done, running], incarnation=uuid.uuid4()
    )
    assert worker.free_slots == 0
    capacity.left([_transition(running, worker_id, JobStatus.RUNNING, Reason.STARTED)])
    assert freed == []  # still held: ASSIGNED -> RUNNING
    completed = _transition(done, worker_id, JobStatus.DONE, Reason.COMPLETED)
    capacity.left([completed])
    assert worker.free_slots == 1
    capacity.left([completed])  # the same news twice frees nothing more
    capacity.reported({worker_id: [done]})  # nor does the worker's own report of it
    assert freed == [done]
    capacity.left([_transition(running, worker_id, JobStatus.PENDING, Reason.WORKER_LOST)])
    assert worker.free_slots == 2
    assert freed == [done, running]


def test_assignments_beyond_the_free_slots_or_to_a_draining_worker_come_back() -> None:
    capacity = WorkerCapacity()
    worker_id = uuid.uuid4()
    worker = capacity.attach(worker_id, ["default"], concurrency=2, incarnation=uuid.uuid4())
    claimed = [_assignment(worker_id) for _ in range(3)]
    assert capacity.assign(worker, claimed) == claimed[2:]
    assert worker.outbox.qsize() == 2
    capacity.reported({worker_id: [(claimed[0].job.job_id, 1)]})
    capacity.drain(worker_id)
    another = [_assignment(worker_id)]
    assert capacity.assign(worker, another) == another


def test_a_heartbeat_frees_what_the_worker_does_not_hold_once_the_grace_has_passed() -> None:
    now = [100.0]
    capacity = WorkerCapacity(clock=lambda: now[0], grace_s=10.0)
    worker_id, incarnation = uuid.uuid4(), uuid.uuid4()
    worker = capacity.attach(worker_id, ["default"], concurrency=3, incarnation=incarnation)
    kept, lost = _assignment(worker_id), _assignment(worker_id)
    capacity.assign(worker, [kept, lost])
    running = {(kept.job.job_id, 1)}
    now[0] += 9.0
    assert capacity.reconcile(worker_id, incarnation, running) == []  # may not have arrived
    now[0] += 2.0
    assert capacity.reconcile(worker_id, uuid.uuid4(), running) == []  # another process
    assert capacity.reconcile(worker_id, incarnation, running) == [(lost.job.job_id, 1)]
    assert (kept.job.job_id, 1) in worker.held
    assert worker.free_slots == 2


def test_a_stream_ending_returns_what_it_had_queued_and_frees_everything() -> None:
    capacity = WorkerCapacity()
    worker_id = uuid.uuid4()
    worker = capacity.attach(worker_id, ["default"], concurrency=3, incarnation=uuid.uuid4())
    claimed = [_assignment(worker_id) for _ in range(2)]
    capacity.assign(worker, claimed)
    worker.outbox.get_nowait()  # the first was written to the worker
    assert capacity.detach(worker) == claimed[1:]
    assert worker.held == {}
    assert capacity.get(worker_id) is None
    assert capacity.assign(worker, [_assignment(worker_id)])  # a closed stream takes nothing


class CapacityMachine(RuleBasedStateMachine):
    """Random sequences of every cause that takes or frees a slot, on a few workers whose
    streams come and go. The model is the set of assignments that hold a slot, per stream."""

    streams = Bundle("streams")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.capacity = WorkerCapacity(clock=lambda: self.now, grace_s=10.0)
        self.freed: dict[tuple[int, AttemptKey], int] = {}
        self.taken: dict[tuple[int, AttemptKey], int] = {}
        self.capacity.on_room(self._on_room)
        self.worker_ids = [uuid.uuid4() for _ in range(3)]
        self.attached: list[ConnectedWorker] = []
        self.initially_held: dict[int, int] = {}

    def _on_room(self, worker: ConnectedWorker, keys: list[AttemptKey]) -> None:
        for key in keys:
            mark = (id(worker), key)
            self.freed[mark] = self.freed.get(mark, 0) + 1

    @rule(
        target=streams,
        index=st.integers(0, 2),
        concurrency=st.integers(1, 4),
        held=st.integers(0, 5),
    )
    def open_stream(self, index: int, concurrency: int, held: int) -> ConnectedWorker:
        keys = [(uuid.uuid4(), 1) for _ in range(held)]
        worker = self.capacity.attach(
            self.worker_ids[index], ["default"], concurrency, held=keys, incarnation=uuid.uuid4()
        )
        for key in keys:
            self.taken[(id(worker), key)] = 1
        self.attached.append(worker)
        self.initially_held[id(worker)] = held
        return worker

    @rule(worker=streams, n=st.integers(1, 6))
    def dispatch(self, worker: ConnectedWorker, n: int) -> None:
        before = len(worker.held)
        room = worker.free_slots
        claimed = [_assignment(worker.worker_id) for _ in range(n)]
        refused = self.capacity.assign(worker, claimed)
        taken = [a for a in claimed if a not in refused]
        assert len(taken) == min(n, room)
        assert len(worker.held) == before + len(taken)
        for a in taken:
            self.taken[(id(worker), (a.job.job_id, a.job.attempt))] = 1

    @rule(worker=streams, data=st.data())
    def report(self, worker: ConnectedWorker, data: st.DataObject) -> None:
        keys = list(worker.held)
        chosen = data.draw(st.lists(st.sampled_from(keys), unique=True)) if keys else []
        unknown = [(uuid.uuid4(), 1)]  # a late report of something it no longer holds
        self.capacity.reported({worker.worker_id: chosen + unknown})

    @rule(worker=streams, data=st.data(), to=st.sampled_from(list(JobStatus)))
    def transitions_committed(
        self, worker: ConnectedWorker, data: st.DataObject, to: JobStatus
    ) -> None:
        keys = list(worker.held)
        chosen = data.draw(st.lists(st.sampled_from(keys), unique=True)) if keys else []
        before = set(worker.held)
        self.capacity.left([_transition(k, worker.worker_id, to, Reason.FAILED) for k in chosen])
        if to in (JobStatus.ASSIGNED, JobStatus.RUNNING):
            assert set(worker.held) == before

    @rule(worker=streams, seconds=st.floats(0, 20), data=st.data())
    def heartbeat(self, worker: ConnectedWorker, seconds: float, data: st.DataObject) -> None:
        self.now += seconds
        keys = list(worker.held)
        listed = set(data.draw(st.lists(st.sampled_from(keys), unique=True))) if keys else set()
        stale = self.capacity.reconcile(worker.worker_id, worker.incarnation, listed)
        assert not set(stale) & listed

    @rule(worker=streams, data=st.data())
    def write_failed(self, worker: ConnectedWorker, data: st.DataObject) -> None:
        queued: list[Assignment] = []
        while not worker.outbox.empty():
            item = worker.outbox.get_nowait()
            if item is not None:
                queued.append(item)
        lost = data.draw(st.lists(st.sampled_from(queued), unique=True)) if queued else []
        self.capacity.undelivered(worker, lost)

    @rule(worker=streams)
    def drain(self, worker: ConnectedWorker) -> None:
        self.capacity.drain(worker.worker_id)

    @rule(worker=consumes(streams))
    def stream_ends(self, worker: ConnectedWorker) -> None:
        self.capacity.detach(worker)
        assert worker.held == {}
        assert worker.free_slots == 0

    @precondition(lambda self: bool(self.attached))
    @rule()
    def server_stops(self) -> None:
        self.capacity.close_all()
        assert self.capacity.ready() == []

    @invariant()
    def never_more_held_than_slots_taken_by_assignment(self) -> None:
        for worker in self.attached:
            # Dispatch never fills a stream beyond its slots (it may open holding more, when
            # the worker came back with a lower concurrency).
            limit = max(worker.concurrency, self.initially_held[id(worker)])
            assert len(worker.held) <= limit
            assert 0 <= worker.free_slots <= worker.concurrency
            assert all(self.taken.get((id(worker), key)) == 1 for key in worker.held)

    @invariant()
    def each_slot_freed_at_most_once_and_only_if_taken(self) -> None:
        for mark, count in self.freed.items():
            assert count == 1, mark
            assert mark in self.taken, mark
            worker = next(w for w in self.attached if id(w) == mark[0])
            assert mark[1] not in worker.held

    def teardown(self) -> None:
        # Every stream ends: then every slot ever taken was freed exactly once.
        for worker in self.attached:
            self.capacity.detach(worker)
        assert set(self.freed) == set(self.taken)
        assert all(count == 1 for count in self.freed.values())


CapacityMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40)
test_worker_capacity_state_machine = CapacityMachine.TestCase
