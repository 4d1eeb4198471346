"""The live feed's coalescing: whatever the rate of committed changes, an open stream gets at
most one `change` event per tick, and only keep-alives while nothing changes."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from jobq.domain.records import Transition
from jobq.domain.states import JobStatus, Reason
from jobq.server.lifecycle import Lifecycle
from jobq.server.web.live import KEEPALIVE, Coalescer, LiveFeed, StreamsFull

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def submitted(queue: str = "default") -> Transition:
    return Transition.submitted(uuid.uuid4(), queue, NOW)


def moved(to: JobStatus, queue: str = "default", reason: Reason = Reason.STARTED) -> Transition:
    return replace(submitted(queue), from_status=JobStatus.ASSIGNED, to_status=to, reason=reason)


def change(message: bytes | None) -> dict[str, object]:
    assert message is not None
    assert message.startswith(b"event: change\ndata: ")
    assert message.endswith(b"\n\n")
    decoded: dict[str, object] = json.loads(message.split(b"data: ", 1)[1])
    return decoded


def test_a_burst_of_ten_thousand_changes_is_one_event_per_tick() -> None:
    coalescer = Coalescer(keepalive_s=5.0)
    clock = 100.0
    events = 0
    for tick in range(4):
        for _ in range(2_500):  # 10,000 transitions in bursts between ticks 0..3
            coalescer.add([submitted(), moved(JobStatus.DONE, reason=Reason.COMPLETED)])
        clock += 0.5
        message = coalescer.tick(clock)
        summary = change(message)
        assert summary["counts"] == {"finished": 2_500, "submitted": 2_500}, tick
        events += 1
    assert events == 4
    # Nothing since: the next ticks have nothing to send until the keep-alive is due.
    assert coalescer.tick(clock + 0.5) is None


def test_counts_by_kind_and_the_queues_touched_capped() -> None:
    coalescer = Coalescer(max_queue_names=3)
    coalescer.add(
        [
            moved(JobStatus.RUNNING, "a"),
            moved(JobStatus.DONE, "b", Reason.COMPLETED),
            moved(JobStatus.FAILED, "c", Reason.FAILED),
            moved(JobStatus.DEAD_LETTERED, "d", Reason.RETRIES_EXHAUSTED),
            moved(JobStatus.PENDING, "a", Reason.RETRY),
        ]
    )
    summary = change(coalescer.tick(1.0))
    assert summary["counts"] == {
        "dead_lettered": 1,
        "failed": 1,
        "finished": 1,
        "requeued": 1,
        "started": 1,
    }
    assert summary["queues"] == ["a", "b", "c"]
    assert summary["queues_truncated"] is True


def test_nothing_changed_means_only_keepalives() -> None:
    coalescer = Coalescer(keepalive_s=5.0)
    sent = [coalescer.tick(t * 0.5) for t in range(41)]  # 20 s of ticks
    assert all(message in (None, KEEPALIVE) for message in sent)
    # The first tick, then one every 5 s: 0, 5, 10, 15, 20.
    assert sent.count(KEEPALIVE) == 5


def test_a_mark_from_another_replica_is_a_change() -> None:
    coalescer = Coalescer()
    coalescer.tick(0.0)
    coalescer.mark()
    summary = change(coalescer.tick(0.5))
    assert summary == {"counts": {}, "queues": [], "elsewhere": True}


async def read(stream: object, until: float) -> list[bytes]:
    """What a stream yields before `until` (loop time)."""
    received: list[bytes] = []
    iterator = stream.__aiter__()  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    while True:
        left = until - loop.time()
        if left <= 0:
            return received
        try:
            received.append(await asyncio.wait_for(iterator.__anext__(), left))
        except (TimeoutError, StopAsyncIteration):
            return received


async def test_streams_get_at_most_one_event_per_tick_while_changes_pour_in() -> None:
    lifecycle = Lifecycle()
    feed = LiveFeed(lifecycle, tick_s=0.05, keepalive_s=10.0)
    stream = feed.stream()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def pour() -> None:
        while loop.time() - start < 0.5:
            feed._seen([submitted() for _ in range(100)])
            await asyncio.sleep(0.001)

    received, _ = await asyncio.gather(read(stream, start + 0.5), pour())
    changes = [m for m in received if m.startswith(b"event: change")]
    assert received[0] == b"retry: 3000\n\n"
    assert 2 <= len(changes) <= 0.5 / 0.05 + 2, len(changes)
    assert sum(change(m)["counts"]["submitted"] for m in changes) > 1_000  # type: ignore[index]
    await feed.close()


async def test_close_ends_every_stream_promptly() -> None:
    feed = LiveFeed(Lifecycle(), tick_s=0.05)
    streams = [feed.stream() for _ in range(3)]
    readers = [
        asyncio.create_task(read(s, asyncio.get_running_loop().time() + 30)) for s in streams
    ]
    await asyncio.sleep(0.1)
    assert feed.streams == 3
    await feed.close()
    done, _ = await asyncio.wait(readers, timeout=1.0)
    assert len(done) == 3
    assert feed.streams == 0


async def test_changes_are_ignored_while_no_stream_is_open() -> None:
    feed = LiveFeed(Lifecycle(), tick_s=0.05)
    feed._seen([submitted()])
    feed.mark()
    assert not feed.coalescer.changed


async def test_the_number_of_streams_is_capped() -> None:
    feed = LiveFeed(Lifecycle(), tick_s=0.05, max_streams=2)
    streams = [feed.stream() for _ in range(2)]
    readers = [asyncio.create_task(read(s, asyncio.get_running_loop().time() + 5)) for s in streams]
    await asyncio.sleep(0.05)
    with pytest.raises(StreamsFull):
        feed.check_room()
    await feed.close()
    await asyncio.gather(*readers)
    with pytest.raises(StreamsFull, match="stopping"):
        feed.check_room()
