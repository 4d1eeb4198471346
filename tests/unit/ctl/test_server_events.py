"""`jq-ctl events tail` from jq-server: the first lines, then every later event exactly once,
including an event whose id was taken before an event already printed but that committed
after it (the reason a follower reads again from a little before its last id)."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobq.ctl.server_events import GRACE_S, PAGE, POLL_S, WINDOW_IDS, ServerEvents
from jobq.rpc._gen import common_pb2 as cpb
from jobq.rpc._gen import job_service_pb2 as jpb


@dataclass
class FakeServer:
    """ListJobEvents over events that become visible when committed, in any id order: the
    server's rules (oldest first, newest, last_id) on a dictionary."""

    visible: dict[int, cpb.JobEvent] = field(default_factory=dict)
    calls: list[tuple[int, int, bool]] = field(default_factory=list)

    def commit(self, *ids: int, job: str = "job-a") -> None:
        for event_id in ids:
            self.visible[event_id] = cpb.JobEvent(id=event_id, job_id=job, reason="SUBMITTED")

    def list_job_events(
        self, job_id: str, queue: str, after_id: int, limit: int, newest: bool
    ) -> jpb.ListJobEventsResponse:
        self.calls.append((after_id, limit, newest))
        head = max(self.visible, default=0)
        matching = [
            self.visible[i]
            for i in sorted(self.visible)
            if i > after_id and (not job_id or self.visible[i].job_id == job_id)
        ]
        page = matching[-limit:] if newest else matching[:limit]
        if len(page) == limit and not newest:
            last_id = page[-1].id
        else:
            last_id = max(after_id, head, page[-1].id if page else 0)
        return jpb.ListJobEventsResponse(events=page, last_id=last_id)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _ids(events: list[cpb.JobEvent]) -> list[int]:
    return [event.id for event in events]


def _follower(server: FakeServer, clock: Clock, **filters: str) -> ServerEvents:
    return ServerEvents(server, follow=True, clock=clock, sleep=clock.sleep, **filters)


def test_without_follow_one_call_asks_for_the_last_lines() -> None:
    server = FakeServer()
    server.commit(*range(1, 31))
    events = ServerEvents(server, job_id="", queue="").first(5)
    assert _ids(events) == [26, 27, 28, 29, 30]
    assert server.calls == [(0, 5, True)]


def test_following_prints_each_later_event_once_in_id_order() -> None:
    server, clock = FakeServer(), Clock()
    server.commit(*range(1, 11))
    tail = _follower(server, clock)
    assert _ids(tail.first(3)) == [8, 9, 10]
    assert tail.poll() == []
    server.commit(11, 12)
    assert _ids(tail.poll()) == [11, 12]
    assert tail.poll() == []
    server.commit(13)
    assert _ids(tail.poll()) == [13]
    assert clock.now == 1000.0 + 4 * POLL_S  # each poll waited once


def test_an_event_committed_after_a_larger_id_was_read_is_still_printed() -> None:
    server, clock = FakeServer(), Clock()
    server.commit(1, 2)
    tail = _follower(server, clock)
    assert _ids(tail.first(20)) == [1, 2]
    server.commit(4)  # id 3 was taken first, but its transaction is still open
    assert _ids(tail.poll()) == [4]
    server.commit(3)
    assert _ids(tail.poll()) == [3]  # a follower asking only after 4 would never see it
    assert tail.poll() == []


def test_a_late_event_from_before_the_tail_started_is_printed_too() -> None:
    server, clock = FakeServer(), Clock()
    server.commit(1, 2, 4)
    tail = _follower(server, clock)
    assert _ids(tail.first(2)) == [2, 4]
    server.commit(3)
    assert _ids(tail.poll()) == [3]
    # Events older than the lines printed were seen, not new: never printed by a poll.
    assert 1 not in _ids(tail.poll())


def test_a_quiet_tail_stops_reading_again_once_the_grace_time_passed() -> None:
    server, clock = FakeServer(), Clock()
    server.commit(*range(1, 101))
    tail = _follower(server, clock)
    tail.first(5)
    server.calls.clear()
    while clock.now < 1000.0 + GRACE_S + 2 * POLL_S:
        assert tail.poll() == []
    # Early polls read from before the start (ids may still commit there); later ones from
    # the newest id, which had GRACE_S to commit everything below it.
    assert server.calls[0][0] == 0
    assert server.calls[-1][0] == 100
    server.commit(101)
    assert _ids(tail.poll()) == [101]


def test_under_load_a_poll_reads_at_most_a_window_again() -> None:
    server, clock = FakeServer(), Clock()
    tail = _follower(server, clock)
    assert tail.first(20) == []
    printed: list[int] = []
    for poll in range(6):
        server.commit(*range(poll * 1500 + 1, poll * 1500 + 1501))
        server.calls.clear()
        printed += _ids(tail.poll())
        # Pages of PAGE from WINDOW_IDS before the newest id the last poll saw, not from 0.
        assert server.calls[0] == (max(0, poll * 1500 - WINDOW_IDS), PAGE, False)
        assert all(limit == PAGE and not newest for _, limit, newest in server.calls)
    assert printed == list(range(1, 6 * 1500 + 1))


def test_first_lines_when_following_are_the_last_of_a_whole_window() -> None:
    server, clock = FakeServer(), Clock()
    server.commit(*range(1, 2001))
    tail = _follower(server, clock)
    assert _ids(tail.first(3)) == [1998, 1999, 2000]
    assert server.calls == [(0, PAGE, True)]
    # The 1000 events before the window were there already: never printed as new.
    assert tail.poll() == []
    server.commit(2001)
    assert _ids(tail.poll()) == [2001]


def test_the_job_filter_is_passed_to_the_server() -> None:
    server, clock = FakeServer(), Clock()
    server.commit(1, 2, job="job-a")
    server.commit(3, job="job-b")
    tail = _follower(server, clock, job_id="job-b")
    assert _ids(tail.first(20)) == [3]
    server.commit(4, job="job-a")
    server.commit(5, job="job-b")
    assert _ids(tail.poll()) == [5]
