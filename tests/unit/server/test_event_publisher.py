"""The publisher's rules (server/event_publisher.py, server/event_capture.py), with a fake
outbox and a fake broker: only acknowledged events leave the outbox, in id order, only the
lease holder publishes, an unreachable broker makes Kafka degraded and the batches small, and
capture is turned off only when nobody has published for a long time."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest

from jobq.domain.errors import Unavailable
from jobq.domain.records import OutboxEvent, OutboxLag
from jobq.domain.states import JobStatus, Reason
from jobq.events.kafka_producer import Message
from jobq.observability.metrics import ServerMetrics
from jobq.rpc._gen import common_pb2
from jobq.server.admin_service import DEGRADED
from jobq.server.event_capture import IDLE_OFF_S, CaptureSwitch, capture_on
from jobq.server.event_publisher import (
    BATCH_LIMIT,
    PROBE_LIMIT,
    EventPublisher,
    MetricsObserver,
    event_message,
    heartbeat_message,
    job_topics_by_status,
)
from jobq.server.readiness import kafka_health, readiness_note

JOB = uuid.UUID("01890000-0000-7000-8000-000000000001")


def item(
    event_id: int, to: JobStatus = JobStatus.PENDING, cid: str | None = "c-1", batch: int = 0
) -> OutboxEvent:
    """An event of outbox row `batch` (by default a row of its own: its id)."""
    return OutboxEvent(
        batch_id=batch or event_id,
        event_id=event_id,
        job_id=str(JOB),
        queue_name="default",
        from_status=None,
        to_status=to.value,
        worker_id=None,
        reason=Reason.SUBMITTED.value,
        detail=None,
        attempt=2,
        occurred_us=1_767_225_600_000_000,
        correlation_id=cid,
    )


def gone(event_id: int) -> OutboxEvent:
    """An outbox row whose job (and its history) was deleted."""
    return OutboxEvent(event_id, event_id, None, "", None, "", None, "", None, None, 0, None)


class FakeOutbox:
    def __init__(self, items: list[OutboxEvent]) -> None:
        self.items = items
        self.owner: str | None = None
        self.reads: list[int] = []
        self.capturing = True
        self.idle_s = 0.0

    async def lease_take(self, owner: str, ttl_s: float) -> tuple[bool, str | None]:
        if self.owner in (None, owner):
            previous, self.owner = self.owner, owner
            return True, previous
        return False, None

    async def lease_release(self, owner: str) -> None:
        if self.owner == owner:
            self.owner = None

    async def outbox_read(self, limit: int) -> list[OutboxEvent]:
        self.reads.append(limit)
        return sorted(self.items, key=lambda i: i.event_id)[:limit]

    async def outbox_delete(self, batch_ids: Sequence[int]) -> None:
        gone = set(batch_ids)
        self.items = [i for i in self.items if i.batch_id not in gone]

    async def outbox_lag(self) -> OutboxLag:
        oldest = 3.0 if self.items else None
        return OutboxLag(len(self.items), oldest, 0, self.owner, self.idle_s)

    async def capture_on(self) -> bool:
        return self.capturing

    async def capture_set(self, on: bool) -> bool:
        changed, self.capturing = self.capturing != on, on
        return changed


class FakeBroker:
    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.refuse: set[int] = set()  # event ids not acknowledged
        self.up = True

    async def send(self, messages: Sequence[Message]) -> list[bool]:
        acked = []
        for message in messages:
            event_id = int(dict(message.headers)["jobq-event-id"])
            ok = self.up and event_id not in self.refuse
            if ok:
                self.sent.append(message)
            acked.append(ok)
        return acked

    @property
    def last_error(self) -> str:
        return "" if self.up else "1/1 brokers are down"

    async def reachable(self) -> tuple[bool, str]:
        return (True, "1 broker(s)") if self.up else (False, "1/1 brokers are down")


class Observed:
    """A PublishObserver that remembers what it heard."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.states: list[tuple[bool, str | None]] = []

    def published(self, counts: Mapping[str, int]) -> None:
        self.counts.update(counts)

    def state(self, holding: bool, degraded: str | None) -> None:
        self.states.append((holding, degraded))


def publisher(
    outbox: FakeOutbox, broker: FakeBroker, owner: str = "me", observer: object = None
) -> EventPublisher:
    return EventPublisher(
        outbox,
        broker,
        observer or MetricsObserver(ServerMetrics()),  # type: ignore[arg-type]
        owner=owner,
        topic_prefix="p.",
    )


class State:
    """server.readiness.KafkaState over the fakes, as KafkaEvents is over the real parts."""

    def __init__(self, events: EventPublisher, broker: FakeBroker, outbox: FakeOutbox) -> None:
        self._events, self._broker, self._outbox = events, broker, outbox

    async def reachable(self) -> tuple[bool, str]:
        return await self._broker.reachable()

    def publish_problem(self) -> str | None:
        return (
            None if self._events.degraded is None else f"not acknowledged: {self._events.degraded}"
        )

    async def outbox_lag(self) -> OutboxLag:
        return await self._outbox.outbox_lag()


def sent_ids(broker: FakeBroker) -> list[int]:
    return [int(dict(m.headers)["jobq-event-id"]) for m in broker.sent]


async def test_events_go_out_in_id_order_and_leave_the_outbox_once_acknowledged() -> None:
    outbox = FakeOutbox([item(3), item(1, JobStatus.DONE), item(2, JobStatus.RUNNING)])
    broker = FakeBroker()
    observed = Observed()
    assert await publisher(outbox, broker, observer=observed).run_once() == 3
    assert observed.counts == {"p.job.completed": 1, "p.job.started": 1, "p.job.submitted": 1}
    assert observed.states == [(True, None)]
    assert sent_ids(broker) == [1, 2, 3]
    assert [m.topic for m in broker.sent] == ["p.job.completed", "p.job.started", "p.job.submitted"]
    assert outbox.items == []


async def test_an_event_the_broker_did_not_acknowledge_stays_and_is_sent_again() -> None:
    outbox = FakeOutbox([item(1), item(2), item(3)])
    broker = FakeBroker()
    broker.refuse = {2}
    events = publisher(outbox, broker)
    assert await events.run_once() == 2
    assert [i.event_id for i in outbox.items] == [2]
    assert events.degraded == "the broker did not acknowledge"
    broker.refuse = set()
    assert await events.run_once() == 1
    assert sent_ids(broker) == [1, 3, 2]
    assert outbox.items == []
    assert events.degraded is None


async def test_a_row_with_one_event_not_acknowledged_stays_whole() -> None:
    outbox = FakeOutbox([item(1, batch=7), item(2, batch=7), item(3, batch=8)])
    broker = FakeBroker()
    broker.refuse = {2}
    observed = Observed()
    assert await publisher(outbox, broker, observer=observed).run_once() == 1
    assert [i.event_id for i in outbox.items] == [1, 2]  # event 1 is sent again with 2
    assert observed.counts == {"p.job.submitted": 1}  # only what left the outbox counts
    broker.refuse = set()
    assert await publisher(outbox, broker).run_once() == 2
    assert sent_ids(broker) == [1, 3, 1, 2]
    assert outbox.items == []


async def test_without_the_lease_nothing_is_read_or_sent() -> None:
    outbox = FakeOutbox([item(1)])
    outbox.owner = "other replica"
    broker = FakeBroker()
    events = publisher(outbox, broker)
    assert await events.run_once() == 0
    assert outbox.reads == []
    assert broker.sent == []
    outbox.owner = None  # the other one's lease ran out
    assert await events.run_once() == 1
    assert events.holding
    await events.stop()
    assert outbox.owner is None  # given back at once


async def test_a_broker_that_is_away_gets_small_probe_batches_and_kafka_is_degraded() -> None:
    outbox = FakeOutbox([item(i) for i in range(1, 200)])
    broker = FakeBroker()
    broker.up = False
    events = publisher(outbox, broker)
    assert await events.run_once() == 0
    assert await events.run_once() == 0
    assert outbox.reads == [BATCH_LIMIT, PROBE_LIMIT]
    assert len(outbox.items) == 199  # nothing lost
    state = State(events, broker, outbox)
    health, detail = await kafka_health(state)
    assert health == DEGRADED
    assert "199 event(s) waiting" in detail
    assert "in PostgreSQL" in detail
    note = await readiness_note(state)
    assert note is not None
    assert note.startswith("kafka degraded: broker unreachable")
    broker.up = True
    assert await events.run_once() == 199
    assert await kafka_health(state) == (True, "1 broker(s); 0 event(s) waiting")
    assert await readiness_note(state) is None
    assert await readiness_note(None) is None


async def test_events_of_deleted_jobs_are_dropped_without_a_message() -> None:
    outbox = FakeOutbox([item(1), gone(2), item(3)])
    broker = FakeBroker()
    assert await publisher(outbox, broker).run_once() == 2
    assert sent_ids(broker) == [1, 3]
    assert outbox.items == []


def test_a_message_carries_the_event_proto_keyed_by_job_with_its_headers() -> None:
    message = event_message(item(42, JobStatus.DONE), job_topics_by_status("prod."))
    assert message.topic == "prod.job.completed"
    assert message.key == str(JOB).encode()
    event = common_pb2.JobEvent()
    event.ParseFromString(message.value)
    assert (event.id, event.job_id, event.attempt) == (42, str(JOB), 2)
    assert event.to_status == common_pb2.JOB_STATUS_DONE
    assert dict(message.headers) == {"jobq-event-id": b"42", "jobq-correlation-id": b"c-1"}
    # A job submitted outside any correlation scope: its id stands in.
    plain = event_message(item(43, cid=None), job_topics_by_status(""))
    assert dict(plain.headers)["jobq-correlation-id"] == str(JOB).encode()


def test_a_heartbeat_message_is_keyed_by_worker() -> None:
    worker = uuid.uuid4()
    message = heartbeat_message(worker, 2, [JOB], "p.")
    assert (message.topic, message.key) == ("p.worker.heartbeat", str(worker).encode())
    beat = common_pb2.WorkerHeartbeatEvent()
    beat.ParseFromString(message.value)
    assert (beat.worker_id, beat.active_job_count, list(beat.job_ids)) == (
        str(worker),
        2,
        [str(JOB)],
    )
    assert beat.occurred_at.seconds > 0


@pytest.mark.parametrize(
    ("owner", "idle_s", "turned_off"),
    [
        (None, IDLE_OFF_S + 1, True),
        (None, IDLE_OFF_S - 1, False),  # a publisher stopped recently: maybe a restart
        ("other", -3.0, False),  # someone publishes
    ],
)
async def test_capture_goes_off_only_when_nobody_has_published_for_long(
    owner: str | None, idle_s: float, turned_off: bool
) -> None:
    outbox = FakeOutbox([item(1)])
    outbox.owner, outbox.idle_s = owner, idle_s
    assert await CaptureSwitch(outbox).run_once() is turned_off
    assert outbox.capturing is not turned_off
    assert len(outbox.items) == 1  # waiting events are kept either way


class LockedOutbox(FakeOutbox):
    def __init__(self, busy: int) -> None:
        super().__init__([])
        self.capturing = False
        self.busy = busy

    async def capture_set(self, on: bool) -> bool:
        if self.busy:
            self.busy -= 1
            raise Unavailable("cannot switch event capture: a long transaction holds job_events")
        return await super().capture_set(on)


async def test_switching_capture_on_at_start_waits_out_a_long_transaction() -> None:
    outbox = LockedOutbox(busy=2)
    await capture_on(outbox, attempts=3)
    assert outbox.capturing


async def test_a_start_gives_up_with_a_clear_error_when_the_lock_never_comes() -> None:
    outbox = LockedOutbox(busy=5)
    with pytest.raises(Unavailable, match="cannot start publishing kafka events"):
        await capture_on(outbox, attempts=3)
    assert not outbox.capturing
    locked = LockedOutbox(busy=1)
    locked.capturing, locked.idle_s = True, IDLE_OFF_S + 1
    switch = CaptureSwitch(locked)
    assert await switch.run_once() is False  # locked: stays on, tries again next time
    assert locked.capturing
    assert await switch.run_once() is True
    assert not locked.capturing
