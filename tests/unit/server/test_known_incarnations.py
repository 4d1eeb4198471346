"""A replica's memory of workers' incarnations: bounded, and trusted only while fresh (another
replica may register a newer process under the same worker id at any moment)."""

from __future__ import annotations

import uuid

from jobq.server.incarnations import KnownIncarnations


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_confirmed_incarnation_is_trusted_until_it_is_too_old() -> None:
    clock = Clock()
    known = KnownIncarnations(limit=10, max_age_s=5.0, clock=clock)
    worker, current, older = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert not known.confirmed(worker, current)  # never seen: look it up
    known.remember(worker, current)
    assert known.confirmed(worker, current)
    assert not known.confirmed(worker, older)  # another process: look it up
    clock.now += 4.9
    assert known.confirmed(worker, current)
    clock.now += 0.2  # the database may have changed meanwhile: look it up again
    assert not known.confirmed(worker, current)
    known.remember(worker, current)  # confirmed again (a heartbeat, a lookup)
    assert known.confirmed(worker, current)


def test_a_newer_incarnation_replaces_the_older_and_forget_drops_it() -> None:
    known = KnownIncarnations(limit=10)
    worker, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    known.remember(worker, first)
    known.remember(worker, second)
    assert not known.confirmed(worker, first)
    assert known.confirmed(worker, second)
    known.forget(worker)
    known.forget(worker)  # twice is harmless
    assert worker not in known
    assert not known.confirmed(worker, second)


def test_keeps_the_most_recently_confirmed_workers_only() -> None:
    workers = [uuid.uuid4() for _ in range(5)]
    incarnation = uuid.uuid4()
    known = KnownIncarnations(limit=3)
    for worker in workers:
        known.remember(worker, incarnation)
    assert len(known) == 3
    assert [w in known for w in workers] == [False, False, True, True, True]
    known.remember(workers[2], incarnation)  # now the newest: workers[3] goes first
    known.remember(uuid.uuid4(), incarnation)
    assert [w in known for w in workers[2:]] == [True, False, True]
