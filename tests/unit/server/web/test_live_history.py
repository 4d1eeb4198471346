"""The overview's History sampler with a fake store and clock: the first sample only finds
where job_events ends, later ones become per-second points, an hour of them is kept, and a
sample that saw new events (any replica's) tells the live feed."""

from __future__ import annotations

from jobq.server.web.history import PENDING_CAP, SAMPLES, History
from jobq.storage.stores import ActivitySample


class FakeStore:
    def __init__(self) -> None:
        self.head = 100
        self.calls: list[tuple[int, int]] = []
        self.next = ActivitySample(100, 0, 0, 0, 0, 0)

    async def dashboard_head(self) -> int:
        return self.head

    async def dashboard_activity(self, after_id: int, pending_cap: int) -> ActivitySample:
        self.calls.append((after_id, pending_cap))
        return self.next


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_the_first_sample_records_the_head_and_adds_no_point() -> None:
    store, clock = FakeStore(), Clock()
    history = History(store, clock=clock)
    await history.loop.run_once()
    assert list(history.points) == []
    assert store.calls == []


async def test_later_samples_are_rates_per_second_over_the_interval() -> None:
    store, clock = FakeStore(), Clock()
    history = History(store, clock=clock)
    await history.loop.run_once()
    clock.now += 5.0
    store.next = ActivitySample(
        last_id=180, submitted=20, started=20, finished=15, failed=5, pending=7
    )
    await history.loop.run_once()
    assert store.calls == [(100, PENDING_CAP)]
    [point] = history.points
    assert (point.started_per_s, point.finished_per_s, point.failed_per_s) == (4.0, 3.0, 1.0)
    assert point.pending == 7
    # The next sample goes on from the last id read.
    clock.now += 5.0
    store.next = ActivitySample(180, 0, 0, 0, 0, 7)
    await history.loop.run_once()
    assert store.calls[-1] == (180, PENDING_CAP)
    body = history.as_json()
    assert body["columns"] == ["at", "started_per_s", "finished_per_s", "failed_per_s", "pending"]
    assert body["points"] == [[1005.0, 4.0, 3.0, 1.0, 7], [1010.0, 0.0, 0.0, 0.0, 7]]


async def test_an_hour_of_samples_is_kept() -> None:
    store, clock = FakeStore(), Clock()
    history = History(store, clock=clock)
    await history.loop.run_once()
    for n in range(SAMPLES + 10):
        clock.now += 5.0
        store.next = ActivitySample(100 + n, 0, 0, 0, 0, n)
        await history.loop.run_once()
    assert len(history.points) == SAMPLES == 720
    assert history.points[-1].pending == SAMPLES + 9
    assert history.points[0].pending == 10


async def test_a_sample_with_new_events_tells_the_listeners() -> None:
    store, clock = FakeStore(), Clock()
    history = History(store, clock=clock)
    told: list[int] = []
    history.on_activity(lambda: told.append(1))
    await history.loop.run_once()
    clock.now += 5.0
    await history.loop.run_once()  # no event above 100: nothing to tell
    assert told == []
    store.next = ActivitySample(101, 0, 0, 0, 0, 1)  # one event, e.g. another replica's
    clock.now += 5.0
    await history.loop.run_once()
    assert told == [1]
